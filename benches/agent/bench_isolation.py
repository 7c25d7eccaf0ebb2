#!/usr/bin/env python3
"""Benchmark 5: GET /health latency while every shard runs a long query.

A: idle agent. B: the same agent while each of its shards runs a CPU-bound
query (jobs submitted until /health shows running_jobs >= shards). In both,
a paced open-loop prober sends GET /health at --rate per second over four
keep-alive connections (round robin, so both shards' reactors are probed)
for --seconds, timing each answer from its intended send time. Alternates
A B for --rounds rounds; the long jobs are deleted (interrupting DuckDB)
after each B. C (reference for the OS scheduler alone): nginx probed the same way while a
separate Python DuckDB process runs the same long query. Goal (issue 3): p99 under 1 ms while busy.

Usage: python3 benches/agent/bench_isolation.py [--rounds 3] [--seconds 8] [--rate 500]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

LONG_SQL = "SELECT sum(i % 7) FROM range(1000000000000) t(i) WHERE {salt} = {salt}"
REQ = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"


def probe(port, rate, seconds):
    return b.paced_probe(port, rate, seconds, lambda _i: REQ)


def start_long_jobs(agent, shards, salt0):
    """Submits long jobs, each on a fresh connection, until every shard runs one.

    A fresh connection per submit because the agent keeps a job on the shard
    whose reactor accepted the submit (the kernel spreads connections over the
    shards), so one keep-alive connection would queue every job on one shard.
    """
    ids = []
    for k in range(16):
        c = b.Client(agent.port)
        st, raw = c.request("POST", "/queries", {"sql": LONG_SQL.format(salt=salt0 + k)})
        c.close()
        if st != 202:
            raise RuntimeError(f"submit long query: HTTP {st} {raw[:200]!r}")
        ids.append(__import__("json").loads(raw)["query_id"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            h = agent.health()
            if h["running_jobs"] >= min(len(ids), shards):
                break
            time.sleep(0.05)
        if h["running_jobs"] >= shards:
            return ids, h
    raise RuntimeError(f"could not get {shards} shards busy: {h}")


def nginx_under_hog(rate, seconds):
    """Reference: the same prober against nginx while a separate DuckDB process runs the
    same long query (DuckDB's default 2 threads): what the OS scheduler alone costs."""
    import subprocess
    hog = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; duckdb.connect().execute(sys.argv[1])",
                            LONG_SQL.format(salt=7)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with b.Nginx() as n:
            time.sleep(0.5)
            r = probe(n.port, rate, seconds)
    finally:
        hog.kill()
        hog.wait()
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rate", type=int, default=500)
    a = ap.parse_args()
    shards = 2
    b.header(f"Benchmark 5: GET /health latency, idle vs every shard running a long query "
             f"({a.rate}/s open loop, {a.seconds:g} s per side)")
    res = {"idle": [], "busy": [], "nginx + DuckDB hog process": []}
    with b.Agent(shards=shards) as agent:
        c = b.Client(agent.port)
        probe(agent.port, a.rate, 1)  # warm-up
        for rnd in range(a.rounds):
            idle = probe(agent.port, a.rate, a.seconds)
            res["idle"].append(idle)
            ids, h = start_long_jobs(agent, shards, rnd * 100)
            time.sleep(0.3)  # let DuckDB's threads get going
            cpu0, t0 = agent.cpu_seconds(), time.monotonic()
            busy = probe(agent.port, a.rate, a.seconds)
            cpu = (agent.cpu_seconds() - cpu0) / (time.monotonic() - t0)
            h2 = agent.health()
            res["busy"].append(busy)
            t_del = time.perf_counter()
            for q in ids:
                c.json("DELETE", f"/queries/{q}")
            while agent.health()["active_queries"] > 0:
                if time.perf_counter() - t_del > 30:
                    raise RuntimeError("long queries did not stop within 30 s of DELETE")
                time.sleep(0.005)
            stop_ms = (time.perf_counter() - t_del) * 1e3
            ref = nginx_under_hog(a.rate, a.seconds)
            res["nginx + DuckDB hog process"].append(ref)
            print(f"  round {rnd + 1}: idle p50 {idle['p50']:.3f} p99 {idle['p99']:.3f} max {idle['max']:.2f} ms | "
                  f"busy ({h['running_jobs']} running, {len(ids)} submitted, agent CPU {cpu:.2f} cores, still "
                  f"running at end: {h2['running_jobs']}) p50 {busy['p50']:.3f} p99 {busy['p99']:.3f} max "
                  f"{busy['max']:.2f} ms | DELETE -> active_queries 0 in {stop_ms:.0f} ms | nginx under a DuckDB hog: p50 "
                  f"{ref['p50']:.3f} p99 {ref['p99']:.3f} max {ref['max']:.2f} ms"
                  + (f" | non-200: {idle['bad'] + busy['bad']}" if idle["bad"] + busy["bad"] else ""), flush=True)
        c.close()
    print("\n| side | p50 ms (median) | p99 ms (median, min-max) | max ms (worst) | probes/round |")
    print("|---|---:|---:|---:|---:|")
    for side in res:
        rs = res[side]
        p99 = [r["p99"] for r in rs]
        print(f"| {side} | {b.median([r['p50'] for r in rs]):.3f} | {b.median(p99):.3f} ({min(p99):.3f}-{max(p99):.3f}) "
              f"| {max(r['max'] for r in rs):.2f} | {rs[0]['n']} |")
    m, lo, hi = b.ratio_summary([r["p99"] for r in res["busy"]], [r["p99"] for r in res["idle"]])
    m2, lo2, hi2 = b.ratio_summary([r["p99"] for r in res["busy"]], [r["p99"] for r in res["nginx + DuckDB hog process"]])
    print(f"\nbusy agent / nginx-under-hog p99 ratio: median {m2:.2f} (min {lo2:.2f}, max {hi2:.2f})")
    print(f"busy/idle p99 ratio: median {m:.2f} (min {lo:.2f}, max {hi:.2f})")
    med = b.median([r["p99"] for r in res["busy"]])
    print(f"goal busy p99 < 1 ms: {'MET' if med < 1 else 'NOT MET'} ({med:.3f} ms)")
    print(b.SHARED_CORES_NOTE + " (the prober is one Python process; its own scheduling delay is included)")


if __name__ == "__main__":
    main()
