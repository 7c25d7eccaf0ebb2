#!/usr/bin/env python3
"""Benchmark 1: POST /execute of trivial SQL vs DuckDB in-process.

Measures requests/s of the agent's POST /execute under wrk (64 connections,
2 threads) for the same statement repeated (`SELECT 1`) and for a unique
statement per request (`SELECT <n>`), against the same statements run
in-process with one connection per core: (a) the Rust C-API bench in
inproc/ (prepare+execute per statement, duckdb_query per statement, and a
reused prepared statement), (b) Python's duckdb package, one process per
core. nginx answering a fixed JSON body under the same wrk settings gives
the raw-HTTP ceiling. Sides alternate A B A B for --rounds rounds; the
script prints per-side rates, per-round ratios (median, min-max).
Goal (issue 3): agent unique >= 0.95x Python unique.

Usage: python3 benches/agent/bench_execute.py [--rounds 3] [--seconds 5] [--no-inproc] [--no-nginx]
"""
import argparse
import itertools
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

UNIQUE_BASE = itertools.count(100_000_000, 100_000_000)  # a fresh range of n for every wrk run


def agent_side(agent, kind, seconds):
    if kind == "repeat":
        r = b.run_wrk(agent.url, "execute_repeat.lua", seconds=seconds)
    else:
        r = b.run_wrk(agent.url, "execute_unique.lua", script_args=(next(UNIQUE_BASE),), seconds=seconds)
    if r["errors"]:
        print(f"  !! agent {kind}: {r['errors']} errors (status {r['err_status']}, timeouts {r['err_timeout']})")
    return r["rate"], r


def nginx_side(seconds):
    with b.Nginx() as n:
        r = b.run_wrk(n.url, "execute_repeat.lua", seconds=seconds)
    return r["rate"], r


def py_side(kind, seconds):
    out = subprocess.run([sys.executable, os.path.join(b.HERE, "py_ref.py"), kind, "--procs", "2",
                          "--seconds", str(seconds)], capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"py_ref failed: {out.stderr[-1000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["rate"], r


def rust_side(mode, kind, seconds):
    out = subprocess.run([b.INPROC_BIN, mode, kind, "--threads", "2", "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"inproc bench failed: {out.stderr[-1000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["rate"], r


def check_agent(agent):
    """The agent must answer correctly before its rate means anything."""
    c = b.Client(agent.port)
    for n in (1, 123456789):
        got = c.json("POST", "/execute", {"sql": f"SELECT {n} AS v"})
        if got.get("rows") != [[n]] or got.get("row_count") != 1:
            raise SystemExit(f"agent answered SELECT {n} with {got}")
    c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--no-inproc", action="store_true", help="skip the Rust in-process sides")
    ap.add_argument("--no-nginx", action="store_true")
    a = ap.parse_args()
    inproc = not a.no_inproc
    if inproc and not os.path.exists(b.INPROC_BIN):
        print(f"(Rust in-process bench not built at {b.INPROC_BIN}; skipping it. Build: see docs/benchmarks.md, section Agent end to end)")
        inproc = False

    b.header("Benchmark 1: POST /execute of trivial SQL (wrk -t2 -c64) vs DuckDB in-process, 2 connections")
    sides = {}
    with b.Agent(shards=2) as agent:
        check_agent(agent)
        # warm-up: first requests open pages, fill caches, grow buffers
        b.run_wrk(agent.url, "execute_repeat.lua", seconds=2)
        order = [("agent repeat", lambda: agent_side(agent, "repeat", a.seconds)),
                 ("python repeat", lambda: py_side("repeat", a.seconds)),
                 ("agent unique", lambda: agent_side(agent, "unique", a.seconds)),
                 ("python unique", lambda: py_side("unique", a.seconds))]
        if inproc:
            order += [("rust prepare+execute repeat", lambda: rust_side("prepare", "repeat", a.seconds)),
                      ("rust prepare+execute unique", lambda: rust_side("prepare", "unique", a.seconds)),
                      ("rust duckdb_query repeat", lambda: rust_side("query", "repeat", a.seconds)),
                      ("rust duckdb_query unique", lambda: rust_side("query", "unique", a.seconds)),
                      ("rust reused prepared repeat", lambda: rust_side("reuse", "repeat", a.seconds))]
        if not a.no_nginx:
            order += [("nginx fixed body (HTTP ceiling)", lambda: nginx_side(a.seconds))]
        idle_cpu = 0.0
        for rnd in range(a.rounds):
            for name, fn in order:
                before = agent.cpu_seconds()
                rate, raw = fn()
                if not name.startswith("agent"):
                    idle_cpu += agent.cpu_seconds() - before
                sides.setdefault(name, []).append(rate)
                extra = ""
                if "lat_p99_us" in raw:
                    extra = f"  p50 {raw['lat_p50_us']/1000:.2f} ms, p99 {raw['lat_p99_us']/1000:.2f} ms"
                print(f"  round {rnd + 1}: {name:34s} {b.fmt_rate(rate):>9s} /s{extra}", flush=True)
        health = agent.health()
    print(f"  (agent CPU while the other sides ran: {idle_cpu:.2f} s in total; "
          f"agent completed_jobs {health.get('completed_jobs')})")

    print("\n| side | median /s | min | max |\n|---|---:|---:|---:|")
    for name, rates in sides.items():
        print(f"| {name} | {b.fmt_rate(b.median(rates))} | {b.fmt_rate(min(rates))} | {b.fmt_rate(max(rates))} |")

    pairs = [("agent unique", "python unique"), ("agent repeat", "python repeat")]
    if inproc:
        pairs += [("agent unique", "rust duckdb_query unique"), ("agent unique", "rust prepare+execute unique"),
                  ("agent repeat", "rust reused prepared repeat"), ("agent repeat", "rust duckdb_query repeat"),
                  ("rust duckdb_query unique", "python unique"), ("rust prepare+execute unique", "python unique")]
    if not a.no_nginx:
        pairs += [("agent repeat", "nginx fixed body (HTTP ceiling)")]
    print("\n| ratio (per round) | median | min | max |\n|---|---:|---:|---:|")
    for x, y in pairs:
        med, lo, hi = b.ratio_summary(sides[x], sides[y])
        print(f"| {x} / {y} | {med:.3f} | {lo:.3f} | {hi:.3f} |")
    med, _, _ = b.ratio_summary(sides["agent unique"], sides["python unique"])
    print(f"\nGoal: agent unique >= 0.95x Python unique: {'MET' if med >= 0.95 else 'NOT MET'} ({med:.3f}x)")
    print(b.SHARED_CORES_NOTE + "; the in-process sides have both cores to themselves")


if __name__ == "__main__":
    main()
