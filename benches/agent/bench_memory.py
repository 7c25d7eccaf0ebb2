#!/usr/bin/env python3
"""Benchmark 4: agent memory per retained job, per result byte, and under churn.

Per --rounds round, on a fresh agent (SHARDS=2):
 1. per retained job: warm up, read VmRSS, submit --jobs trivial jobs
    (`SELECT <n>`), wait until all are SUCCEEDED, read VmRSS again:
    (delta) / jobs.
 2. per result byte: warm up with one job of the same shape (then delete it),
    read VmRSS, submit --big-jobs jobs of --big-rows (BIGINT, VARCHAR) rows,
    wait until all are SUCCEEDED, read VmRSS: (delta) / (jobs x JSON size of
    one result's rows). The JSON size is the compact `[[id,"name"],...]` text
    of the rows as the agent serves them (measured by fetching one result).
    Goal (issue 3): <= 1.3x.
 3. steady churn: wrk lifecycle.lua (submit, long-poll, fetch, delete) of a
    1000-row query on 4 connections for --churn-periods periods of
    --churn-seconds; VmRSS after every period must stay flat (no growth
    with the number of jobs served) and stored_jobs must end at 0.
Memory from /proc/<pid>/status (VmRSS, VmHWM) of the agent process.

Usage: python3 benches/agent/bench_memory.py [--rounds 3] [--jobs 5000] [--big-jobs 10] [--big-rows 200000]
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

MiB = 2 ** 20


def big_sql(rows, salt):
    # salt makes every statement's text unique; the rows are the same shape and size
    return f"SELECT i::BIGINT AS id, 'row-' || i::VARCHAR AS name FROM range({rows}) t(i) WHERE {salt} = {salt}"


def submit(c, sql):
    while True:
        status, raw = c.request("POST", "/queries", {"sql": sql})
        if status == 202:
            return json.loads(raw)["query_id"]
        if status == 429:  # MAX_QUEUED_JOBS reached: back off as the agent asks
            time.sleep(0.05)
            continue
        raise RuntimeError(f"submit: HTTP {status}: {raw[:300]!r}")


def wait_all(c, ids, timeout=600):
    deadline = time.monotonic() + timeout
    for qid in ids:
        while True:
            st = c.json("GET", f"/queries/{qid}?wait_ms=30000")
            if st["status"] == "SUCCEEDED":
                break
            if st["status"] in ("FAILED", "CANCELED"):
                raise RuntimeError(f"job {qid}: {st}")
            if time.monotonic() > deadline:
                raise RuntimeError("jobs did not finish")


def rows_json_size(c, qid):
    """Bytes of the compact JSON rows array of one result, fetched page by page."""
    rows, token = [], None
    while True:
        path = f"/queries/{qid}/results?max_results=5000" + (f"&page_token={token}" if token else "")
        page = c.json("GET", path)
        rows.extend(page["rows"])
        token = page.get("next_page_token")
        if not token:
            break
    return len(json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()), len(rows)


def settle(agent):
    time.sleep(0.5)  # let worker threads return freed pages and the background refresh run
    return agent.memory()


def one_round(a, rnd):
    out = {}
    extra = dict(kv.split("=", 1) for kv in a.env)
    with b.Agent(shards=2, extra_env=extra) as agent:
        c = b.Client(agent.port, timeout=300)
        # 1. per retained job
        warm = [submit(c, f"SELECT {i} AS v") for i in range(200)]
        wait_all(c, warm)
        for q in warm:
            c.json("DELETE", f"/queries/{q}")
        m0 = settle(agent)
        ids = [submit(c, f"SELECT {1_000_000 + rnd * a.jobs + i} AS v") for i in range(a.jobs)]
        wait_all(c, ids)
        m1 = settle(agent)
        h = agent.health()
        out["per_job"] = (m1["VmRSS"] - m0["VmRSS"]) / a.jobs
        out["stored_after_small"] = h.get("stored_jobs")
        for q in ids:
            c.json("DELETE", f"/queries/{q}")
        m2 = settle(agent)
        out["rss_after_delete_small"] = m2["VmRSS"]
        # 2. per result byte
        q = submit(c, big_sql(a.big_rows, 0))
        wait_all(c, [q])
        json_size, nrows = rows_json_size(c, q)
        assert nrows == a.big_rows, nrows
        c.json("DELETE", f"/queries/{q}")
        m3 = settle(agent)
        ids = [submit(c, big_sql(a.big_rows, k + 1)) for k in range(a.big_jobs)]
        wait_all(c, ids)
        m4 = settle(agent)
        delta = m4["VmRSS"] - m3["VmRSS"]
        out["json_size"] = json_size
        out["per_result_byte"] = delta / (a.big_jobs * json_size)
        out["big_delta"] = delta
        out["hwm_big"] = m4["VmHWM"]
        for q in ids:
            c.json("DELETE", f"/queries/{q}")
        m5 = settle(agent)
        out["rss_after_delete_big"] = m5["VmRSS"]
        # 3. churn
        env = dict(os.environ, BENCH_LUA_DIR=b.LUA_DIR, BENCH_TOKEN=b.TOKEN)
        churn_sql = "SELECT i::BIGINT AS id, 'row-' || i::VARCHAR AS name FROM range(1000) t(i)"
        samples, jobs = [], 0
        for _ in range(a.churn_periods):
            r = subprocess.run(["wrk", "-t4", "-c4", f"-d{a.churn_seconds}s", "--timeout=10s", "-s",
                                os.path.join(b.LUA_DIR, "lifecycle.lua"), agent.url, "--", churn_sql],
                               env=env, capture_output=True, text=True, timeout=a.churn_seconds + 60)
            line = next(l for l in r.stdout.splitlines() if l.startswith("LIFEJSON "))
            life = json.loads(line[len("LIFEJSON "):])
            if life["bad"]:
                print(f"  !! churn: {life['bad']} unexpected responses; first: {life['bad_sample']}")
            jobs += life["jobs"]
            m = settle(agent)
            samples.append((jobs, m["VmRSS"]))
        h = agent.health()
        out["churn"] = samples
        out["churn_stored_end"] = h.get("stored_jobs")
        out["churn_hwm"] = agent.memory()["VmHWM"]
        out["base_rss"] = m0["VmRSS"]
        c.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--big-jobs", type=int, default=10)
    ap.add_argument("--big-rows", type=int, default=200_000)
    ap.add_argument("--churn-periods", type=int, default=5)
    ap.add_argument("--churn-seconds", type=int, default=4)
    ap.add_argument("--env", action="append", default=[], help="extra agent setting, K=V")
    a = ap.parse_args()
    b.header("Benchmark 4: agent memory (VmRSS/VmHWM) per retained job, per result byte, under churn")
    results = []
    for rnd in range(a.rounds):
        r = one_round(a, rnd)
        results.append(r)
        churn = ", ".join(f"{j} jobs: {rss / MiB:.1f}" for j, rss in r["churn"])
        print(f"  round {rnd + 1}: base RSS {r['base_rss'] / MiB:.1f} MiB; per retained trivial job "
              f"{r['per_job']:,.0f} B (stored_jobs {r['stored_after_small']}); after deleting them "
              f"{r['rss_after_delete_small'] / MiB:.1f} MiB", flush=True)
        print(f"           {a.big_jobs} x {a.big_rows:,}-row results, rows JSON {r['json_size']:,} B each: RSS "
              f"+{r['big_delta'] / MiB:.1f} MiB = {r['per_result_byte']:.3f} B per JSON byte (HWM "
              f"{r['hwm_big'] / MiB:.0f} MiB); after deleting them {r['rss_after_delete_big'] / MiB:.1f} MiB")
        print(f"           churn RSS MiB after each period ({churn}); stored_jobs at end (jobs cut off when wrk stops stay until TTL, <= 4 per period) "
              f"{r['churn_stored_end']}; HWM {r['churn_hwm'] / MiB:.0f} MiB", flush=True)
    pj = [r["per_job"] for r in results]
    pb = [r["per_result_byte"] for r in results]
    growth = [(r["churn"][-1][1] - r["churn"][0][1]) / MiB for r in results]
    print("\n| measure | median | min | max |\n|---|---:|---:|---:|")
    print(f"| RSS per retained trivial job (bytes) | {b.median(pj):,.0f} | {min(pj):,.0f} | {max(pj):,.0f} |")
    print(f"| RSS per result JSON byte (goal <= 1.3) | {b.median(pb):.3f} | {min(pb):.3f} | {max(pb):.3f} |")
    print(f"| churn: RSS change first -> last period (MiB) | {b.median(growth):+.1f} | {min(growth):+.1f} | {max(growth):+.1f} |")
    print(f"\nper-result-byte goal <= 1.3: {'MET' if b.median(pb) <= 1.3 else 'NOT MET'} ({b.median(pb):.3f})")
    print(b.SHARED_CORES_NOTE)


if __name__ == "__main__":
    main()
