#!/usr/bin/env python3
"""Arrow results (issue 12): three measures, ratios from one run.

 1. 1M rows (BIGINT, VARCHAR, DOUBLE, TIMESTAMP), submit to last byte as
    Arrow, against DuckDB exporting the same rows to Arrow in-process
    (benches/arrow_ref.rs: duckdb-rs query_arrow, same DuckDB build and
    default settings). Agent side measured two ways: POST /execute with
    "format":"arrow" (one answer), and the lifecycle (POST /queries, long-poll,
    every page of 5000 rows, one keep-alive connection). Goal <= 1.3x.
 2. The same result as JSON and as Arrow, through the lifecycle and
    /execute: bytes on the wire (bodies) and time.
 3. Resident bytes per retained Arrow result byte (as bench_memory.py
    measures JSON): warm up, read VmRSS, submit --mem-jobs Arrow jobs of the
    1M-row result, wait, read VmRSS: delta / (jobs x IPC bytes of one
    result). Goal <= 1.2.
Rounds alternate agent and reference; medians with min-max.

Usage: python3 benches/agent/bench_arrow.py [--rounds 5] [--rows 1000000] [--mem-jobs 4]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

MiB = 2 ** 20


def result_sql(rows, salt=0):
    return (f"SELECT i::BIGINT AS id, 'name-' || i::VARCHAR AS name, i * 0.25 + {salt} AS score, "
            f"TIMESTAMP '2024-01-01' + to_seconds(i) AS ts FROM range({rows}) t(i)")


def ref_bin():
    cands = sorted(glob.glob(os.path.join(b.TARGET, "release", "deps", "arrow_ref-*")),
                   key=os.path.getmtime)
    cands = [c for c in cands if os.access(c, os.X_OK) and not c.endswith(".d")]
    if not cands:
        raise SystemExit("arrow_ref bench binary not found (cargo build --release --workspace --all-targets)")
    return cands[-1]


def reference(sql, runs):
    out = subprocess.run([ref_bin(), "--sql", sql, "--runs", str(runs)], capture_output=True, text=True,
                         timeout=600)
    line = next(l for l in out.stdout.splitlines() if l.startswith("ARROWREF "))
    return json.loads(line[len("ARROWREF "):])


def execute(c, sql, arrow):
    body = {"sql": sql}
    if arrow:
        body["format"] = "arrow"
    t0 = time.perf_counter()
    status, raw = c.request("POST", "/execute", body)
    dt = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"/execute: HTTP {status}: {raw[:300]!r}")
    return dt, len(raw)


def lifecycle(c, sql, arrow):
    """Submit, long-poll, every page of 5000; returns (seconds, body bytes of the pages)."""
    body = {"sql": sql}
    if arrow:
        body["format"] = "arrow"
    t0 = time.perf_counter()
    qid = c.json("POST", "/queries", body, expect=(202,))["query_id"]
    while True:
        st = c.json("GET", f"/queries/{qid}?wait_ms=30000")
        if st["status"] == "SUCCEEDED":
            break
        if st["status"] in ("FAILED", "CANCELED"):
            raise RuntimeError(st)
    total, token = 0, None
    while True:
        path = f"/queries/{qid}/results?max_results=5000" + (f"&page_token={token}" if token else "")
        c.conn.request("GET", path, headers={"X-Agent-Token": b.TOKEN})
        resp = c.conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"page: HTTP {resp.status}: {raw[:300]!r}")
        total += len(raw)
        token = (resp.getheader("X-Next-Page-Token") if arrow
                 else json.loads(raw).get("next_page_token"))
        if not token:
            break
    dt = time.perf_counter() - t0
    c.json("DELETE", f"/queries/{qid}")
    return dt, total


def wait_all(c, ids):
    for qid in ids:
        while True:
            st = c.json("GET", f"/queries/{qid}?wait_ms=30000")
            if st["status"] == "SUCCEEDED":
                break
            if st["status"] in ("FAILED", "CANCELED"):
                raise RuntimeError(st)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--mem-jobs", type=int, default=4)
    a = ap.parse_args()
    b.header(f"Arrow results (issue 12): {a.rows:,} rows (BIGINT, VARCHAR, DOUBLE, TIMESTAMP)")
    sql = result_sql(a.rows)
    m = {k: [] for k in ("ref", "ex_arrow", "ex_json", "lc_arrow", "lc_json")}
    sizes = {}
    with b.Agent(shards=2, extra_env={"MAX_RESULT_BYTES": str(4 << 30), "MAX_RETAINED_BYTES": "0"}) as agent:
        c = b.Client(agent.port, timeout=600)
        # warm up both sides once
        execute(c, sql, True)
        execute(c, sql, False)
        reference(sql, 1)
        for _ in range(a.rounds):
            r = reference(sql, 1)
            assert r["rows"] == a.rows, r
            m["ref"].append(r["seconds"][0])
            dt, n = execute(c, sql, True)
            m["ex_arrow"].append(dt)
            sizes["ex_arrow"] = n
            dt, n = execute(c, sql, False)
            m["ex_json"].append(dt)
            sizes["ex_json"] = n
            dt, n = lifecycle(c, sql, True)
            m["lc_arrow"].append(dt)
            sizes["lc_arrow"] = n
            dt, n = lifecycle(c, sql, False)
            m["lc_json"].append(dt)
            sizes["lc_json"] = n
        c.close()

    def row(label, xs):
        return f"| {label} | {b.median(xs) * 1e3:,.1f} | {min(xs) * 1e3:,.1f} | {max(xs) * 1e3:,.1f} |"

    print("\n| path | median ms | min | max |\n|---|---:|---:|---:|")
    print(row("DuckDB in-process export to Arrow (duckdb-rs query_arrow, reference)", m["ref"]))
    print(row("agent POST /execute, format arrow (to last byte)", m["ex_arrow"]))
    print(row("agent lifecycle, format arrow (submit, long-poll, pages of 5000)", m["lc_arrow"]))
    print(row("agent POST /execute, JSON", m["ex_json"]))
    print(row("agent lifecycle, JSON (pages of 5000)", m["lc_json"]))
    r1 = b.ratio_summary(m["ex_arrow"], m["ref"])
    r1l = b.ratio_summary(m["lc_arrow"], m["ref"])
    r2 = b.ratio_summary(m["ex_json"], m["ex_arrow"])
    r2l = b.ratio_summary(m["lc_json"], m["lc_arrow"])
    print("\n| ratio | median | min | max |\n|---|---:|---:|---:|")
    print(f"| 1. /execute Arrow / in-process export (goal <= 1.3) | {r1[0]:.2f} | {r1[1]:.2f} | {r1[2]:.2f} |")
    print(f"| 1. lifecycle Arrow / in-process export | {r1l[0]:.2f} | {r1l[1]:.2f} | {r1l[2]:.2f} |")
    print(f"| 2. time JSON / Arrow, /execute | {r2[0]:.2f} | {r2[1]:.2f} | {r2[2]:.2f} |")
    print(f"| 2. time JSON / Arrow, lifecycle | {r2l[0]:.2f} | {r2l[1]:.2f} | {r2l[2]:.2f} |")
    print(f"| 2. bytes JSON / Arrow, /execute | {sizes['ex_json'] / sizes['ex_arrow']:.2f} "
          f"({sizes['ex_json']:,} / {sizes['ex_arrow']:,}) | | |")
    print(f"| 2. bytes JSON / Arrow, lifecycle pages | {sizes['lc_json'] / sizes['lc_arrow']:.2f} "
          f"({sizes['lc_json']:,} / {sizes['lc_arrow']:,}) | | |")

    # 3. resident bytes per retained Arrow byte
    per = []
    for rnd in range(max(1, a.rounds // 2)):
        with b.Agent(shards=2, extra_env={"MAX_RESULT_BYTES": str(4 << 30), "MAX_RETAINED_BYTES": "0"}) as agent:
            c = b.Client(agent.port, timeout=600)
            _, ipc = execute(c, result_sql(a.rows, 999), True)  # warm-up, and one result's IPC bytes
            time.sleep(0.5)
            m0 = agent.memory()["VmRSS"]
            ids = [c.json("POST", "/queries", {"sql": result_sql(a.rows, k + 1), "format": "arrow"},
                          expect=(202,))["query_id"] for k in range(a.mem_jobs)]
            wait_all(c, ids)
            time.sleep(0.5)
            m1 = agent.memory()["VmRSS"]
            held = agent.health()["result_bytes"]
            per.append((m1 - m0) / (a.mem_jobs * ipc))
            print(f"  memory round {rnd + 1}: {a.mem_jobs} x {ipc:,} IPC bytes retained; RSS +{(m1 - m0) / MiB:.1f} MiB"
                  f" = {per[-1]:.3f} B per Arrow byte; accounted result_bytes {held:,}"
                  f" ({held / (a.mem_jobs * ipc):.3f} per Arrow byte)")
            c.close()
    print(f"\n| 3. resident bytes per retained Arrow byte (goal <= 1.2) | {b.median(per):.3f} | {min(per):.3f} | {max(per):.3f} |")
    print(f"\ngoal 1 (<= 1.3): {'MET' if r1[0] <= 1.3 else 'NOT MET'} ({r1[0]:.2f}); "
          f"goal 3 (<= 1.2): {'MET' if b.median(per) <= 1.2 else 'NOT MET'} ({b.median(per):.3f})")
    print(b.SHARED_CORES_NOTE)


if __name__ == "__main__":
    main()
