#!/usr/bin/env python3
"""Gateway (issue 11): the overhead of the gateway in front of an agent.

One agent, one gateway routing a user to that agent (SQLite store in a temp
folder). The same closed-loop load generator (N caller threads, each with its
own keep-alive connection, a request as soon as the previous answer is in)
sends a trivial query for --seconds:

  direct : POST /execute {"sql": "SELECT <n>"} straight to the agent
  gateway: POST /v1/query {"sql": "SELECT <n>"} to the gateway (bearer token),
           which authenticates, routes, rewrites and calls the agent

at 1 and 16 concurrent callers, alternating direct/gateway for --rounds rounds
in the same run. Reports p50/p99 latency and throughput of each side and the
median ratio gateway/direct of p50 (goal: <= 1.3x), and the CPU each server
process spent per query (from /proc: steadier than latency on a loaded
machine, since it does not count time spent waiting for a core). The gateway talks to the
agent with /execute (FEATURE_CURSOR_MODE=false) so both sides make one agent
call per query; --cursor also measures the job lifecycle (submit, poll,
page, delete: four agent calls per query).

--variant LABEL[:K=V,...][@BINARY] adds another gateway (its own settings or
binary) measured in the same rounds, e.g. `--variant mt2:WORKER_THREADS=2`
or `--variant old@/tmp/old/compute-gateway`, so a change is compared with
what it replaces under the same load.

Usage: python3 benches/gateway/bench_overhead.py [--rounds 3] [--seconds 4] [--cursor] [--variant ...]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent"))
import benchlib as b  # noqa: E402

GATEWAY_BIN = os.environ.get("GATEWAY_BIN", os.path.join(b.TARGET, "release", "compute-gateway"))
ADMIN = "bench-admin-token"
USER_TOKEN = "bench-user-token-0001"


class Gateway:
    def __init__(self, agent_url, cursor_mode, binary=GATEWAY_BIN, extra_env=None):
        if not os.path.exists(binary):
            raise SystemExit(f"gateway binary not found at {binary} (build it, or set GATEWAY_BIN)")
        self.dir = tempfile.mkdtemp(prefix="bench-gw-")
        self.port = b.free_port()
        env = dict(os.environ)
        env.update({
            "LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "DATABASE_URL": f"sqlite:{self.dir}/gateway.db",
            "GATEWAY_ADMIN_TOKEN": ADMIN,
            "FEATURE_REMOTE_ROUTING": "true",
            "FEATURE_CURSOR_MODE": "true" if cursor_mode else "false",
            "CATALOG_TTL": "1h",
            "LOG_LEVEL": "warn",
        })
        env.update(extra_env or {})
        self._log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([binary], env=env, stdout=self._log, stderr=subprocess.STDOUT)
        b.wait_port(self.port, proc=self.proc)
        c = b.Client(self.port)
        h = {"Authorization": f"Bearer {ADMIN}"}
        c.json("PUT", "/admin/users/bench", {}, headers=h)
        c.json("POST", "/admin/tokens", {"user": "bench", "token": USER_TOKEN}, expect=(201,), headers=h)
        c.json("POST", "/compute-endpoints", {"name": "a1", "url": agent_url, "type": "REMOTE",
                                              "auth_token": b.TOKEN}, expect=(201,), headers=h)
        c.json("POST", "/compute-endpoints/a1/assignments", {"principal": "bench", "principal_type": "user",
                                                             "is_default": True}, expect=(201,), headers=h)
        c.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def request_bytes(path, headers, sql):
    body = json.dumps({"sql": sql}).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\n{headers}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def load(port, path, headers, callers, seconds, base):
    """Closed loop: `callers` threads; returns (p50 ms, p99 ms, requests/s, errors)."""
    lat = [[] for _ in range(callers)]
    errors = [0] * callers
    stop_at = time.perf_counter() + seconds

    def worker(i):
        conn = b.RawConn(port)
        n = base + i * 10_000_000
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            if conn.send(request_bytes(path, headers, f"SELECT {n}")) != 200:
                errors[i] += 1
            lat[i].append(time.perf_counter() - t0)
            n += 1
        conn.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(callers)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    all_lat = sorted(x for l in lat for x in l)
    pick = lambda p: all_lat[min(len(all_lat) - 1, int(p / 100 * len(all_lat)))] * 1e3  # noqa: E731
    load.requests = len(all_lat)
    return pick(50), pick(99), len(all_lat) / wall, sum(errors)


def cpu_us_per_request(pid, run):
    """Runs `run()` (a load call); the CPU microseconds process `pid` spent per request meanwhile."""
    c0 = b.proc_cpu_seconds(pid)
    out = run()
    return out, (b.proc_cpu_seconds(pid) - c0) * 1e6 / max(1, load.requests)


def parse_variant(text):
    """LABEL[:K=V,...][@BINARY] -> (label, binary, env)."""
    binary = GATEWAY_BIN
    if "@" in text:
        text, binary = text.split("@", 1)
    label, _, kvs = text.partition(":")
    env = dict(kv.split("=", 1) for kv in kvs.split(",") if kv)
    return label, binary, env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--cursor", action="store_true", help="also measure the gateway in cursor (lifecycle) mode")
    ap.add_argument("--variant", action="append", default=[], help="LABEL[:K=V,...][@BINARY]: another gateway, same rounds")
    args = ap.parse_args()
    b.header("Gateway overhead: POST /v1/query through the gateway vs POST /execute to the agent")
    modes = [False, True] if args.cursor else [False]
    variants = [("gateway", GATEWAY_BIN, {})] + [parse_variant(v) for v in args.variant]
    with b.Agent(shards=2) as agent:
        for cursor in modes:
            gws = []
            try:
                for label, binary, env in variants:
                    gws.append((label, Gateway(agent.url, cursor, binary, env)))
                direct_h = f"X-Agent-Token: {b.TOKEN}\r\n"
                gw_h = f"Authorization: Bearer {USER_TOKEN}\r\n"
                # Warm both (connections, the gateway's catalog of the agent).
                load(agent.port, "/execute", direct_h, 1, 0.5, 1)
                for _, gw in gws:
                    load(gw.port, "/v1/query", gw_h, 1, 0.5, 2)
                described = ", ".join(f"{l}={bn} {e}" if e else f"{l}={bn}" for l, bn, e in variants)
                print(f"## gateway -> agent via {'the job lifecycle' if cursor else '/execute'}; {described}")
                for callers in (1, 16):
                    d50, d99, drate, dcpu = [], [], [], []
                    g = {label: ([], [], [], []) for label, _ in gws}
                    for r in range(args.rounds):
                        base = 100 + r * 1000 + callers
                        (p50, p99, rate, err), acpu = cpu_us_per_request(agent.pid, lambda: load(
                            agent.port, "/execute", direct_h, callers, args.seconds, base))
                        assert err == 0, f"direct: {err} errors"
                        d50.append(p50), d99.append(p99), drate.append(rate), dcpu.append(acpu)
                        line = (f"  callers={callers:2d} round {r + 1}: direct p50 {p50:.3f} ms p99 {p99:.3f} ms "
                                f"{b.fmt_rate(rate)}/s agent {acpu:.0f} us CPU/q")
                        for k, (label, gw) in enumerate(gws):
                            (p50, p99, rate, err), gcpu = cpu_us_per_request(gw.proc.pid, lambda: load(
                                gw.port, "/v1/query", gw_h, callers, args.seconds, base + 500 + k * 100))
                            assert err == 0, f"{label}: {err} errors"
                            g50, g99, grate, gcpus = g[label]
                            g50.append(p50), g99.append(p99), grate.append(rate), gcpus.append(gcpu)
                            line += (f" | {label} p50 {p50:.3f} ms p99 {p99:.3f} ms {b.fmt_rate(rate)}/s "
                                     f"gateway {gcpu:.0f} us CPU/q")
                        print(line)
                    print(f"callers={callers:2d}: direct p50 {b.median(d50):.3f} ms p99 {b.median(d99):.3f} ms "
                          f"{b.fmt_rate(b.median(drate))}/s; agent CPU {b.median(dcpu):.0f} us per query")
                    for label, _ in gws:
                        g50, g99, grate, gcpus = g[label]
                        m, lo, hi = b.ratio_summary(g50, d50)
                        m99, _, _ = b.ratio_summary(g99, d99)
                        mr, _, _ = b.ratio_summary(grate, drate)
                        print(f"callers={callers:2d}: {label} p50 {b.median(g50):.3f} ms p99 {b.median(g99):.3f} ms "
                              f"{b.fmt_rate(b.median(grate))}/s; RATIO {label}/direct p50 {m:.2f}x "
                              f"(min {lo:.2f}, max {hi:.2f}), p99 {m99:.2f}x, throughput {mr:.2f}x; "
                              f"goal p50 <= 1.3x: {'met' if m <= 1.3 else 'NOT met'}; gateway CPU "
                              f"{b.median(gcpus):.0f} us per query ({min(gcpus):.0f}-{max(gcpus):.0f}), "
                              f"{b.median(gcpus) / b.median(dcpu):.2f}x the agent's")
            finally:
                for _, gw in gws:
                    gw.stop()


if __name__ == "__main__":
    main()
