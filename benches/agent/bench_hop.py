#!/usr/bin/env python3
"""Executor v2, benchmark 2: the agent's CPU per trivial unique /execute against
DuckDB's CPU per fresh statement in-process.

A: the agent under wrk (unique `SELECT <n>`, -t2 -c64, --seconds): the agent
process's CPU time (every thread: reactors, workers, DuckDB's pool) divided by
the requests it answered. R: Python's duckdb (the same engine version), one
connection in one process, fresh `SELECT <n>` in a loop for --seconds: that
process's CPU time (DuckDB's pool threads included) divided by statements.
Alternates A R for --rounds rounds; reports the median ratio A/R with min-max.
Goal (issue 8): <= 1.3x; moonshot 1.05x.

wrk shares the 2 cores with the agent; its own CPU is not counted on either side.

Usage: python3 benches/agent/bench_hop.py [--rounds 3] [--seconds 5] [--shards 2] [--env K=V ...]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

REF = r"""
import sys, time, duckdb
con = duckdb.connect()
con.execute("SELECT 1").fetchall()
n, deadline, ops = 10, time.perf_counter() + float(sys.argv[1]), 0
while True:
    rows = con.execute(f"SELECT {n}").fetchall()
    n += 1
    ops += 1
    if ops % 64 == 0 and time.perf_counter() >= deadline:
        break
print(ops)
"""


def reference(seconds):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", REF, str(seconds)], capture_output=True, text=True,
                         check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ops = int(out.stdout.strip())
    return cpu / ops * 1e6, ops / seconds


def agent_side(agent, seconds, start):
    c0 = agent.cpu_seconds()
    r = b.run_wrk(agent.url, "execute_unique.lua", script_args=(start,), seconds=int(seconds))
    c1 = agent.cpu_seconds()
    if r["errors"]:
        raise RuntimeError(f"wrk errors: {r['stdout'][-500:]}")
    return (c1 - c0) / r["requests"] * 1e6, r["rate"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--env", action="append", default=[], help="extra agent setting, K=V")
    a = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in a.env)
    b.header(f"Executor v2 benchmark 2: agent CPU per unique /execute vs DuckDB in-process "
             f"({a.seconds:g} s per side, {a.rounds} rounds, agent settings {extra or 'default'})")
    agent_us, ref_us, rates = [], [], []
    with b.Agent(shards=a.shards, extra_env=extra) as agent:
        b.run_wrk(agent.url, "execute_unique.lua", script_args=(500_000_000,), seconds=2)  # warm-up
        for r in range(a.rounds):
            us, rate = agent_side(agent, a.seconds, 100_000_000 * (r + 1))
            ref, ref_rate = reference(a.seconds)
            agent_us.append(us)
            ref_us.append(ref)
            rates.append((rate, ref_rate))
            print(f"round {r + 1}: agent {us:6.1f} us CPU/request at {rate:,.0f}/s; "
                  f"in-process {ref:6.1f} us CPU/statement at {ref_rate:,.0f}/s; ratio {us / ref:.2f}")
    med, lo, hi = b.ratio_summary(agent_us, ref_us)
    print(json.dumps({"agent_us": statistics.median(agent_us), "inprocess_us": statistics.median(ref_us),
                      "ratio": round(med, 3), "min": round(lo, 3), "max": round(hi, 3)}))
    print(f"ratio (agent CPU / in-process CPU): {med:.2f} ({lo:.2f}-{hi:.2f}); goal <= 1.3: "
          f"{'met' if med <= 1.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
