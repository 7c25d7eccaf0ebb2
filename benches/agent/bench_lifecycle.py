#!/usr/bin/env python3
"""Benchmark 2: full job lifecycle of a trivial query.

Each wrk connection loops: POST /queries -> GET /queries/{id}?wait_ms=5000
(long-poll until terminal) -> GET /queries/{id}/results -> DELETE. Reports
jobs/s, completion latency (submit sent -> terminal status received) and
cycle latency (submit sent -> DELETE answered), p50/p99/max, at 1 and at
--conns connections. Reference in the same run, alternating A B: POST
/execute of the same SQL with the same wrk layout (one request per job
instead of four), so the ratio shows what the lifecycle costs over the
synchronous route.

Usage: python3 benches/agent/bench_lifecycle.py [--rounds 3] [--seconds 5] [--conns 16]
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

SQL = "SELECT 1 AS v"


def wrk_raw(url, script, conns, seconds, args=()):
    cmd = ["wrk", f"-t{conns}", f"-c{conns}", f"-d{seconds}s", "--timeout=10s",
           "-s", os.path.join(b.LUA_DIR, script), url]
    if args:
        cmd += ["--"] + list(args)
    env = dict(os.environ, BENCH_LUA_DIR=b.LUA_DIR, BENCH_TOKEN=b.TOKEN, BENCH_SQL=SQL)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        for tag in ("LIFEJSON ", "WRKJSON "):
            if line.startswith(tag):
                return json.loads(line[len(tag):])
    raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-1500:]} {out.stderr[-1500:]}")


def lifecycle(agent, conns, seconds):
    r = wrk_raw(agent.url, "lifecycle.lua", conns, seconds, (SQL,))
    r["rate"] = r["jobs"] / (r["duration_us"] / 1e6)
    if r["bad"] or r["socket_errors"]:
        print(f"  !! lifecycle: {r['bad']} unexpected responses, {r['socket_errors']} socket errors; "
              f"first: {r['bad_sample']}")
    return r


def execute(agent, conns, seconds):
    r = wrk_raw(agent.url, "execute_threads.lua", conns, seconds)
    r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
    errs = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    if errs:
        print(f"  !! execute: {errs} errors")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=16)
    a = ap.parse_args()
    b.header(f"Benchmark 2: job lifecycle (submit, long-poll, fetch, delete) of `{SQL}` vs POST /execute")
    levels = [1, a.conns]
    rows = {}
    with b.Agent(shards=2) as agent:
        lifecycle(agent, 2, 2)  # warm-up
        for rnd in range(a.rounds):
            for conns in levels:
                life = lifecycle(agent, conns, a.seconds)
                ex = execute(agent, conns, a.seconds)
                rows.setdefault(conns, []).append((life, ex))
                print(f"  round {rnd + 1}, {conns:2d} conns: lifecycle {b.fmt_rate(life['rate']):>7s} jobs/s "
                      f"(completion p50 {life['completion_p50_us']/1000:.2f} ms p99 "
                      f"{life['completion_p99_us']/1000:.2f} ms; cycle p50 {life['cycle_p50_us']/1000:.2f} ms "
                      f"p99 {life['cycle_p99_us']/1000:.2f} ms) | execute {b.fmt_rate(ex['rate']):>7s} req/s "
                      f"(p50 {ex['lat_p50_us']/1000:.2f} ms p99 {ex['lat_p99_us']/1000:.2f} ms)", flush=True)
        h = agent.health()
    print(f"  after the run: stored_jobs {h.get('stored_jobs')}, active_queries {h.get('active_queries')}, "
          f"completed_jobs {h.get('completed_jobs')}")

    print("\n| conns | lifecycle jobs/s (median, min-max) | completion p50 / p99 / max ms | cycle p50 / p99 ms "
          "| /execute req/s | /execute p50 / p99 ms | jobs/s ÷ execute req/s (median, min-max) |")
    print("|---:|---|---|---|---|---|---|")
    for conns, rr in rows.items():
        lr = [l["rate"] for l, _ in rr]
        er = [e["rate"] for _, e in rr]
        med = lambda k, src: b.median([x[k] for x in src]) / 1000  # noqa: E731
        lives = [l for l, _ in rr]
        exs = [e for _, e in rr]
        m, lo, hi = b.ratio_summary(lr, er)
        print(f"| {conns} | {b.fmt_rate(b.median(lr))} ({b.fmt_rate(min(lr))}-{b.fmt_rate(max(lr))}) "
              f"| {med('completion_p50_us', lives):.2f} / {med('completion_p99_us', lives):.2f} / "
              f"{max(x['completion_max_us'] for x in lives)/1000:.2f} "
              f"| {med('cycle_p50_us', lives):.2f} / {med('cycle_p99_us', lives):.2f} "
              f"| {b.fmt_rate(b.median(er))} | {med('lat_p50_us', exs):.2f} / {med('lat_p99_us', exs):.2f} "
              f"| {m:.3f} ({lo:.3f}-{hi:.3f}) |")
    print("(latency percentiles: median over rounds of each round's percentile; max: over all rounds; "
          "closed loop, measured from each request's send)")
    print(b.SHARED_CORES_NOTE)


if __name__ == "__main__":
    main()
