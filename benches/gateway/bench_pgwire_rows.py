#!/usr/bin/env python3
"""PostgreSQL door (issue 18): 1M rows x 4 columns read by `psql` through the
gateway's PostgreSQL door, against `psql` reading the same rows from a local
PostgreSQL server (a plain SELECT, no COPY), in the same run.

Both sides: the same 1M rows (integer, bigint, text, double), `psql -At -c
'SELECT a, b, c, d FROM t'` to /dev/null, wall time of the whole psql run
(connect, query, every row read and printed). The gateway serves from
local compute (its DuckDB file opened read-only), plain from loopback (no
TLS on either side). Sides alternate for --rounds rounds; the ratio is
gateway / PostgreSQL per round (goal: <= 2x).

Needs PostgreSQL's server binaries (initdb, pg_ctl: Debian's postgresql)
and psql, and the python duckdb module to write the gateway's file.

Usage: python3 benches/gateway/bench_pgwire_rows.py [--rounds 3] [--rows 1000000]
"""
import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import duckdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent"))
import benchlib as b  # noqa: E402

ADMIN = "bench-admin-token"






def as_postgres(args):
    return (["runuser", "-u", "postgres", "--"] + args) if os.geteuid() == 0 else args


def admin(port, method, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
        return json.loads(data) if data else None


def timed_psql(conninfo, password):
    env = dict(os.environ, PGPASSWORD=password or "")
    t = time.perf_counter()
    out = subprocess.run(["psql", conninfo, "-X", "-At", "-c", "SELECT a, b, c, d FROM t"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(out.stderr.decode())
    return elapsed, out.stdout.count(b"\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-pgwire-", dir="/tmp")
    os.chmod(tmp, 0o777)
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    data = os.path.join(tmp, "pgdata")
    os.makedirs(data)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(as_postgres([f"{bindir}/initdb", "-D", data, "-U", "bench", "--auth=trust",
                                "--no-sync", "-E", "UTF8", "--locale=C"]),
                   check=True, stdout=subprocess.DEVNULL)
    pg_port = b.free_port()
    subprocess.run(as_postgres([f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(data, "log"), "-w",
                                "-o", f"-c listen_addresses=127.0.0.1 -p {pg_port} -k {tmp} -c fsync=off",
                                "start"]), check=True, stdout=subprocess.DEVNULL)
    gw = None
    try:
        pg_conninfo = f"host=127.0.0.1 port={pg_port} user=bench dbname=postgres sslmode=disable"
        make = (f"CREATE TABLE t AS SELECT i::integer AS a, (i * 2)::bigint AS b, 'row ' || i AS c, "
                f"i / 3.0::double precision AS d FROM generate_series(0, {args.rows - 1}) i")
        subprocess.run(["psql", pg_conninfo, "-X", "-q", "-c", make, "-c", "VACUUM ANALYZE t"], check=True)

        db = os.path.join(tmp, "shared.duckdb")
        c = duckdb.connect(db)
        c.execute(f"CREATE TABLE t AS SELECT i::INTEGER AS a, (i * 2)::BIGINT AS b, 'row ' || i AS c, "
                  f"i / 3.0::DOUBLE AS d FROM range({args.rows}) r(i)")
        c.close()
        http_port, gw_pg_port = b.free_port(), b.free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "LISTEN_ADDR": f"127.0.0.1:{http_port}",
            "PGWIRE_ADDR": f"127.0.0.1:{gw_pg_port}",
            "PGWIRE_PLAIN_LOOPBACK": "true",
            "DATABASE_URL": f"sqlite:{tmp}/gateway.db",
            "DUCKDB_PATH": db,
            "DUCKDB_READ_ONLY": "true",
            "GATEWAY_ADMIN_TOKEN": ADMIN,
            "LOG_LEVEL": "warn",
        }
        gw = subprocess.Popen([os.environ.get("COMPUTE_GATEWAY_BIN", os.path.join(b.TARGET, "release", "compute-gateway"))], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(f"{tmp}/gateway.log", "w"))
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        admin(http_port, "PUT", "/admin/users/bench", {})
        admin(http_port, "POST", "/admin/grants", {"principal": "bench", "principal_type": "user", "table": "t"})
        token = admin(http_port, "POST", "/admin/tokens", {"user": "bench"})["token"]
        time.sleep(2.5)  # the store's refresh
        gw_conninfo = f"host=127.0.0.1 port={gw_pg_port} user=bench dbname=shared sslmode=disable"

        timed_psql(gw_conninfo, token)  # warm up both
        timed_psql(pg_conninfo, None)
        ratios = []
        for r in range(args.rounds):
            g, gn = timed_psql(gw_conninfo, token)
            p, pn = timed_psql(pg_conninfo, None)
            assert gn == pn == args.rows, (gn, pn)
            ratios.append(g / p)
            print(f"round {r + 1}: gateway pgwire {g:.3f} s, PostgreSQL {p:.3f} s, ratio {g / p:.2f}x",
                  flush=True)
        print(f"median ratio {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}), "
              f"{args.rows} rows x 4 columns")
    finally:
        if gw:
            gw.terminate()
            gw.wait(timeout=10)
        subprocess.run(as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
