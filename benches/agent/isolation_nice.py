#!/usr/bin/env python3
"""Diagnostic for benchmark 5: does thread priority explain the busy /health latency?

Owns: one agent (SHARDS=2) with a long query on every shard, probed like
bench_isolation.py for 5 s as is, then 5 s after renicing every agent thread
that is not a reactor (`net-shard-*`) to nice 19 from outside, per round.
An experiment to point at a fix, not a benchmark of the product as shipped.

Usage: python3 benches/agent/isolation_nice.py
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402
import bench_isolation as bi  # noqa: E402

with b.Agent(shards=2) as ag:
    bi.probe(ag.port, 500, 1)
    for rnd in range(3):
        ids, h = bi.start_long_jobs(ag, 2, 1000 + rnd * 100)
        time.sleep(0.3)
        tids = [t for t in os.listdir(f"/proc/{ag.pid}/task")]
        names = {t: open(f"/proc/{ag.pid}/task/{t}/comm").read().strip() for t in tids}
        r1 = bi.probe(ag.port, 500, 5)
        others = [t for t, n in names.items() if not n.startswith("net-shard")]
        for t in others: os.setpriority(os.PRIO_PROCESS, int(t), 19)
        r2 = bi.probe(ag.port, 500, 5)
        for t in others: os.setpriority(os.PRIO_PROCESS, int(t), 0)
        print(f"round {rnd+1}: busy default nice p50 {r1['p50']:.3f} p99 {r1['p99']:.3f} | non-reactor threads at nice 19 ({len(others)} threads: {sorted(set(names[t] for t in others))}) p50 {r2['p50']:.3f} p99 {r2['p99']:.3f} ms", flush=True)
        c = b.Client(ag.port)
        for q in ids: c.json("DELETE", f"/queries/{q}")
        c.close(); time.sleep(0.5)
