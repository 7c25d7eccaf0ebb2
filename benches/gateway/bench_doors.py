#!/usr/bin/env python3
"""Gateway doors (issue 18): trivial-query latency at one caller through each
door, beside POST /v1/query, in the same run.

One gateway on its embedded default (SQLite store in a temp folder,
in-memory local DuckDB), every door on loopback (PostgreSQL plain from
loopback, no TLS: the protocol's cost, not the cipher's), one user. One
caller sends `SELECT <n>` (a new literal each time, so no cache hides the
policy path) one after another for --seconds per door, doors alternating for
--rounds rounds:

  http   : POST /v1/query on one keep-alive connection (http.client)
  pgwire : psycopg, one connection, autocommit (extended protocol)
  flight : ADBC Flight SQL driver, one connection (GetFlightInfo + DoGet)

Reports per door the median over rounds of p50 and p99 latency and the
ratio of its p50 to /v1/query's p50 in the same round. Needs psycopg and
adbc-driver-flightsql (pip).

Usage: python3 benches/gateway/bench_doors.py [--rounds 3] [--seconds 3]
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import adbc_driver_flightsql.dbapi as flightsql
import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent"))
import benchlib as b  # noqa: E402

ADMIN = "bench-admin-token"






def call(conn, method, path, body=None, token=ADMIN):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {token}"})
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data!r}")
    return json.loads(data) if data else None


def measure(run_one, seconds):
    lat = []
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
        t = time.perf_counter()
        run_one(n)
        lat.append(time.perf_counter() - t)
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], len(lat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-doors-")
    http_port, pg_port, flight_port = b.free_port(), b.free_port(), b.free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LISTEN_ADDR": f"127.0.0.1:{http_port}",
        "PGWIRE_ADDR": f"127.0.0.1:{pg_port}",
        "PGWIRE_PLAIN_LOOPBACK": "true",
        "FLIGHT_ADDR": f"127.0.0.1:{flight_port}",
        "DATABASE_URL": f"sqlite:{tmp}/gateway.db",
        "GATEWAY_ADMIN_TOKEN": ADMIN,
        "LOG_LEVEL": "warn",
    }
    gw = subprocess.Popen([os.environ.get("COMPUTE_GATEWAY_BIN", os.path.join(b.TARGET, "release", "compute-gateway"))], env=env, stdout=subprocess.DEVNULL,
                          stderr=open(f"{tmp}/gateway.log", "w"))
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", flight_port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        h = http.client.HTTPConnection("127.0.0.1", http_port)
        call(h, "PUT", "/admin/users/bench", {})
        token = call(h, "POST", "/admin/tokens", {"user": "bench"})["token"]
        time.sleep(2.5)  # the store's refresh, for the other doors' logins

        def http_one(n):
            r = call(h, "POST", "/v1/query", {"sql": f"SELECT {n}"}, token)
            assert r["rows"] == [[n]], r

        pg = psycopg.connect(host="127.0.0.1", port=pg_port, user="bench", password=token,
                             dbname="memory", autocommit=True)
        pg_cur = pg.cursor()

        def pg_one(n):
            pg_cur.execute(f"SELECT {n}")
            assert pg_cur.fetchall() == [(n,)]

        fl = flightsql.connect(f"grpc://127.0.0.1:{flight_port}",
                               db_kwargs={"username": "bench", "password": token}, autocommit=True)
        fl_cur = fl.cursor()

        def flight_one(n):
            fl_cur.execute(f"SELECT {n}")
            assert fl_cur.fetchall() == [(n,)]

        doors = [("http", http_one), ("pgwire", pg_one), ("flight", flight_one)]
        for _, one in doors:  # warm up
            measure(one, 0.5)
        results = {name: [] for name, _ in doors}
        for r in range(args.rounds):
            base = None
            for name, one in doors:
                p50, p99, n = measure(one, args.seconds)
                if name == "http":
                    base = p50
                results[name].append((p50, p99, n, p50 / base))
                print(f"round {r + 1} {name:7s} p50 {p50 * 1e6:8.0f} us  p99 {p99 * 1e6:8.0f} us  "
                      f"({n} queries)  p50/http {p50 / base:.2f}x", flush=True)
        print()
        print("door     median p50   median p99   p50 / POST /v1/query (median of rounds)")
        for name, _ in doors:
            rs = results[name]
            print(f"{name:8s} {statistics.median(x[0] for x in rs) * 1e6:8.0f} us  "
                  f"{statistics.median(x[1] for x in rs) * 1e6:8.0f} us   "
                  f"{statistics.median(x[3] for x in rs):.2f}x")
        fl_cur.close()
        fl.close()
        pg.close()
    finally:
        gw.terminate()
        gw.wait(timeout=10)


if __name__ == "__main__":
    main()
