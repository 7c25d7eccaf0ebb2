#!/usr/bin/env python3
"""Python duckdb reference for the /execute benchmark (issue 3, benchmark 1b).

Owns: running trivial statements through Python's duckdb package with one
connection per process (one process per core), and printing the summed rate
as one JSON line. Must never time process start-up or database open.

Usage: py_ref.py <repeat|unique> [--procs N] [--seconds S] [--api execute|sql]
"""
import argparse
import json
import multiprocessing as mp
import time


def worker(idx, procs, sql_kind, api, seconds, barrier, out):
    import duckdb

    con = duckdb.connect()  # in-memory, this process's own connection
    run = con.execute if api == "execute" else con.sql
    run("SELECT 1").fetchall()  # warm-up, untimed
    n = 1000 + idx
    barrier.wait()
    began = time.perf_counter()
    deadline = began + seconds
    ops = 0
    while True:
        if sql_kind == "repeat":
            rows = run("SELECT 1").fetchall()
        else:
            rows = run(f"SELECT {n}").fetchall()
            if rows[0][0] != n:
                raise SystemExit(f"SELECT {n} returned {rows}")
            n += procs
        ops += 1
        if ops % 64 == 0 and time.perf_counter() >= deadline:
            break
    out.put((ops, time.perf_counter() - began))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sql", choices=["repeat", "unique"])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--api", choices=["execute", "sql"], default="execute")
    a = ap.parse_args()
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(a.procs)
    out = ctx.Queue()
    ps = [ctx.Process(target=worker, args=(i, a.procs, a.sql, a.api, a.seconds, barrier, out)) for i in range(a.procs)]
    for p in ps:
        p.start()
    results = [out.get(timeout=a.seconds + 120) for _ in ps]
    for p in ps:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"worker exited {p.exitcode}")
    import duckdb

    rate = sum(ops / secs for ops, secs in results)
    print(json.dumps({"sql": a.sql, "procs": a.procs, "api": a.api, "ops": sum(o for o, _ in results),
                      "rate": round(rate, 1), "duckdb": duckdb.__version__}))


if __name__ == "__main__":
    main()
