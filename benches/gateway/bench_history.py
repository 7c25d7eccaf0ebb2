#!/usr/bin/env python3
"""Gateway (issue 19, item 4): what the query history costs.

One agent, one gateway with its store in a SQLite file, routing a user to the
agent; the closed-loop load of bench_overhead.py (N caller threads, keep-alive
connections, trivial `SELECT <n>`) for --seconds, at 1 and 16 callers:

  - the store's growth per query: the SQLite file's size after a run minus
    before, over the records written (gateway_history_written_total), the
    file checkpointed (WAL folded in) on both sides;
  - whether the writer keeps up at the gateway's full rate on this machine
    (gateway_history_lost_total stays 0);
  - what a day at that rate needs at the default retention.

The same run's throughput and CPU per query with the history on and off is
bench_overhead.py with `--variant nohist:QUERY_HISTORY=false`.

Usage: python3 benches/gateway/bench_history.py [--seconds 5]
"""
import argparse
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent"))
import benchlib as b  # noqa: E402
from bench_overhead import Gateway, USER_TOKEN, load  # noqa: E402


def metric(port, name):
    c = b.Client(port)
    _, body = c.request("GET", "/metrics")
    c.close()
    text = body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def store_bytes(path):
    """The database's size with its WAL folded in."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    rows = con.execute("SELECT count(*) FROM gw_query_history").fetchone()[0]
    con.close()
    return pages * size, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    b.header("Gateway query history: store growth per query, writer keeping up")
    with b.Agent(shards=2) as agent:
        run(agent, args)


def run(agent, args):
    gw = Gateway(agent.url, cursor_mode=False)
    db = os.path.join(gw.dir, "gateway.db")
    try:
        headers = f"Authorization: Bearer {USER_TOKEN}\r\n"
        for callers in (1, 16):
            time.sleep(0.5)
            before_bytes, before_rows = store_bytes(db)
            p50, p99, rate, errors = load(gw.port, "/v1/query", headers, callers, args.seconds, callers * 1000)
            time.sleep(0.5)  # the writer's gather interval, then its write
            after_bytes, after_rows = store_bytes(db)
            written = after_rows - before_rows
            lost = metric(gw.port, "gateway_history_lost_total")
            per = (after_bytes - before_bytes) / max(1, written)
            day = rate * 86400
            print(f"callers={callers:2}: {rate:,.0f} queries/s (p50 {p50:.3f} ms, p99 {p99:.3f} ms, {errors} errors); "
                  f"{written:,} records written of {load.requests:,} queries, lost (total) {lost:.0f}; "
                  f"store growth {per:.0f} bytes/query; a day at this rate: {day / 1e6:,.0f}M records, "
                  f"{day * per / 1e9:,.1f} GB (the default retention, 168h, holds 7 days)")
    finally:
        gw.stop()


if __name__ == "__main__":
    main()
