#!/usr/bin/env python3
"""Large `/execute` results: peak memory and time, this binary against another.

Per round, on a fresh agent (SHARDS=2) for each binary in turn (A B A B):
warm up with a small /execute, read VmRSS, POST /execute of
`SELECT i::BIGINT AS id, repeat('x', 200) AS s FROM range(--rows)` and read
the whole answer (timed, client-side), then read VmHWM. Reports the peak
growth (VmHWM after - VmRSS before) per byte of the answer, and the time.
With the result sent from the shared arena (no copy on the reactor), the
peak is about one result's arena; with a copy into a reply buffer it was
about two.

Usage: AGENT_BIN=... BASE_BIN=... python3 benches/agent/bench_execute_large.py [--rounds 3] [--rows 300000]
(without BASE_BIN only AGENT_BIN is measured)
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402


def one(binary, rows):
    b.AGENT_BIN = binary
    with b.Agent(shards=2) as agent:
        c = b.Client(agent.port, timeout=300)
        c.json("POST", "/execute", {"sql": "SELECT 1 AS x"})
        before = agent.memory()["VmRSS"]
        sql = f"SELECT i::BIGINT AS id, repeat('x', 200) AS s FROM range({rows}) t(i)"
        t0 = time.perf_counter()
        status, body = c.request("POST", "/execute", {"sql": sql})
        took = time.perf_counter() - t0
        if status != 200 or not body.endswith(b"}"):
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        peak = agent.memory()["VmHWM"]
        c.close()
        return (peak - before) / len(body), took, len(body), before, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=300_000)
    args = ap.parse_args()
    sides = [("agent", b.AGENT_BIN)]
    if os.environ.get("BASE_BIN"):
        sides.append(("base", os.environ["BASE_BIN"]))
    b.header(f"/execute of {args.rows} rows: peak memory per answer byte and time")
    res = {name: [] for name, _ in sides}
    for r in range(args.rounds):
        for name, binary in sides:
            per_byte, took, size, before, peak = one(binary, args.rows)
            res[name].append((per_byte, took))
            print(f"round={r + 1} side={name} answer_bytes={size} rss_before={before >> 20}MiB "
                  f"hwm_after={peak >> 20}MiB peak_growth_per_byte={per_byte:.2f} seconds={took:.3f}")
    for name, xs in res.items():
        pb = [x[0] for x in xs]
        ts = [x[1] for x in xs]
        print(f"SUMMARY side={name} peak_growth_per_byte median={b.median(pb):.2f} min={min(pb):.2f} "
              f"max={max(pb):.2f} seconds median={b.median(ts):.3f} min={min(ts):.3f} max={max(ts):.3f}")


if __name__ == "__main__":
    main()
