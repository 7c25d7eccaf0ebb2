#!/usr/bin/env python3
"""Benchmark 3: paging a 1M-row (BIGINT, VARCHAR) result with 5000-row pages.

A: the agent. Time from sending POST /queries to the last byte of the last
page: submit, long-poll until SUCCEEDED, then GET .../results?max_results=5000
following next_page_token over one keep-alive connection (the client only
reads the bytes and finds the token; it does not parse rows in the timed runs).
B: DuckDB (Python package, in-process) writing the same rows as one JSON
array file: COPY (<same query>) TO '<tmp>.json' (FORMAT JSON, ARRAY true).
Alternates A B for --rounds rounds after an untimed run that validates every
row of the agent's pages. Goal (issue 3): A <= 1.5x B.

Usage: python3 benches/agent/bench_paging.py [--rounds 3] [--rows 1000000]
"""
import argparse
import base64
import json
import os
import re
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

PAGE = 5000
TOKEN_RE = re.compile(rb'"next_page_token"\s*:\s*"([^"]*)"')


def query(rows):
    return f"SELECT i::BIGINT AS id, 'row-' || i::VARCHAR AS name FROM range({rows}) t(i)"


def agent_run(agent, sql, validate=False, rows=0):
    c = b.Client(agent.port, timeout=300)
    t0 = time.perf_counter()
    sub = c.json("POST", "/queries", {"sql": sql}, expect=(202,))
    qid = sub["query_id"]
    while True:
        st = c.json("GET", f"/queries/{qid}?wait_ms=30000")
        if st["status"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            break
    t_done = time.perf_counter()
    if st["status"] != "SUCCEEDED":
        raise SystemExit(f"paging query ended {st}")
    token, pages, nbytes, seen = None, 0, 0, 0
    ids = bytearray(rows) if validate else None
    while True:
        path = f"/queries/{qid}/results?max_results={PAGE}"
        if token is not None:
            path += "&page_token=" + urllib.parse.quote(token, safe="")
        status, body = c.request("GET", path)
        if status != 200:
            raise SystemExit(f"page {pages}: HTTP {status}: {body[:300]!r}")
        pages += 1
        nbytes += len(body)
        if validate and pages == 2:
            sample_page[0] = body
        if validate:
            page = json.loads(body)
            if page["row_count"] != rows or len(page["rows"]) > PAGE:
                raise SystemExit(f"page {pages}: row_count {page['row_count']}, {len(page['rows'])} rows")
            for rid, name in page["rows"]:
                if name != f"row-{rid}" or ids[rid]:
                    raise SystemExit(f"bad or repeated row {rid!r} {name!r}")
                ids[rid] = 1
            seen += len(page["rows"])
            token = page.get("next_page_token")
        else:
            m = TOKEN_RE.search(body)
            token = m.group(1).decode() if m else None
        if token is None:
            break
    t_end = time.perf_counter()
    c.json("DELETE", f"/queries/{qid}")
    c.close()
    if validate and (seen != rows or not all(ids)):
        raise SystemExit(f"validation: saw {seen} rows of {rows}")
    return {"total": t_end - t0, "to_done": t_done - t0, "paging": t_end - t_done, "pages": pages, "bytes": nbytes}


sample_page = [b""]


def client_floor(pages):
    """The paging client alone: the same loop fetching `pages` page-sized bodies from nginx."""
    path = os.path.join(tempfile.gettempdir(), f"bench-page-{os.getpid()}.json")
    with open(path, "wb") as f:
        f.write(sample_page[0])
    try:
        with b.Nginx(static_file=path) as n:
            c = b.Client(n.port)
            c.request("GET", "/static")
            t0 = time.perf_counter()
            for _ in range(pages):
                status, body = c.request("GET", "/static")
                assert status == 200 and len(body) == len(sample_page[0])
                m = TOKEN_RE.search(body)
                assert m is not None
            t = time.perf_counter() - t0
            c.close()
    finally:
        os.unlink(path)
    return t


def copy_run(con, sql, path):
    if os.path.exists(path):
        os.unlink(path)
    t0 = time.perf_counter()
    con.execute(f"COPY ({sql}) TO '{path}' (FORMAT JSON, ARRAY true)")
    t = time.perf_counter() - t0
    return {"total": t, "bytes": os.path.getsize(path)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    import duckdb

    sql = query(a.rows)
    b.header(f"Benchmark 3: paging {a.rows:,} rows (BIGINT, VARCHAR), {PAGE}-row pages, vs DuckDB COPY TO JSON array")
    print(f"  query: {sql}")
    out_path = os.path.join(tempfile.gettempdir(), f"bench-copy-{os.getpid()}.json")
    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    res = {"agent": [], "copy": []}
    try:
        with b.Agent(shards=2) as agent:
            v = agent_run(agent, sql, validate=True, rows=a.rows)
            print(f"  validation run: {v['pages']} pages, {v['bytes']:,} bytes, every row checked "
                  f"({v['total']:.3f} s incl. parsing)")
            copy_run(con, sql, out_path)  # warm-up
            for rnd in range(a.rounds):
                r = agent_run(agent, sql)
                res["agent"].append(r)
                c = copy_run(con, sql, out_path)
                res["copy"].append(c)
                fl = client_floor(r["pages"])
                res.setdefault("floor", []).append(fl)
                print(f"  round {rnd + 1}: agent {r['total']:.3f} s (to SUCCEEDED {r['to_done']:.3f} s, paging "
                      f"{r['paging']:.3f} s, {r['pages']} pages, {r['bytes']:,} B) | COPY {c['total']:.3f} s "
                      f"({c['bytes']:,} B) | client alone on nginx {fl:.3f} s", flush=True)
            mem = agent.memory()
    finally:
        if os.path.exists(out_path):
            os.unlink(out_path)
    at = [r["total"] for r in res["agent"]]
    ct = [r["total"] for r in res["copy"]]
    m, lo, hi = b.ratio_summary(at, ct)
    print("\n| side | median s | min | max | bytes |\n|---|---:|---:|---:|---:|")
    print(f"| agent: submit to last byte | {b.median(at):.3f} | {min(at):.3f} | {max(at):.3f} | {res['agent'][0]['bytes']:,} |")
    print(f"| - of which submit to SUCCEEDED | {b.median([r['to_done'] for r in res['agent']]):.3f} | | | |")
    print(f"| - of which paging | {b.median([r['paging'] for r in res['agent']]):.3f} | | | |")
    print(f"| DuckDB COPY TO JSON array (threads={threads}) | {b.median(ct):.3f} | {min(ct):.3f} | {max(ct):.3f} | {res['copy'][0]['bytes']:,} |")
    fl = res["floor"]
    print(f"| paging client alone: same loop, {res['agent'][0]['pages']} page-sized bodies from nginx | {b.median(fl):.3f} | {min(fl):.3f} | {max(fl):.3f} | |")
    print(f"\nratio agent / COPY: median {m:.3f} (min {lo:.3f}, max {hi:.3f}); goal <= 1.5: "
          f"{'MET' if m <= 1.5 else 'NOT MET'}")
    print(f"agent VmHWM after the run: {mem['VmHWM']/2**20:.0f} MiB, VmRSS {mem['VmRSS']/2**20:.0f} MiB")
    print(b.SHARED_CORES_NOTE + " (the paging client is Python http.client, one keep-alive connection)")


if __name__ == "__main__":
    main()
