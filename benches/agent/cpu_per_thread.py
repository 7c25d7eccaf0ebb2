#!/usr/bin/env python3
"""Where the agent's CPU goes per /execute request (companion to benchmark 1).

Owns: one agent, one wrk run per statement kind (unique `SELECT <n>`, repeated
`SELECT 1`, 5 s, -t2 -c64), and the per-thread CPU deltas of the agent from
/proc/<pid>/task/*/stat divided by the requests served, plus wrk's own CPU.
Never compares or asserts anything; it explains a ratio, it is not one.

Usage: python3 benches/agent/cpu_per_thread.py
"""
import collections
import os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b
def per_thread(pid):
    out = collections.Counter()
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{t}/comm").read().strip()
            f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
            out[name] += (int(f[11]) + int(f[12])) / b.CLK_TCK
        except OSError: pass
    return out
with b.Agent(shards=2) as ag:
    b.run_wrk(ag.url, "execute_repeat.lua", seconds=2)
    for script, args in (("execute_unique.lua", (900000000,)), ("execute_repeat.lua", ())):
        t0 = per_thread(ag.pid); w0 = os.times()
        r = b.run_wrk(ag.url, script, script_args=args, seconds=5)
        t1 = per_thread(ag.pid); w1 = os.times()
        wrk_cpu = (w1.children_user - w0.children_user) + (w1.children_system - w0.children_system)
        n = r["requests"]
        print(script, f"{r['rate']:.0f}/s", "wrk CPU us/req %.1f" % (wrk_cpu / n * 1e6))
        for k in sorted(t1, key=lambda k: -(t1[k] - t0.get(k, 0))):
            d = t1[k] - t0.get(k, 0)
            if d > 0.01: print(f"   {k:20s} {d:6.2f} s  {d / n * 1e6:7.1f} us/req")
