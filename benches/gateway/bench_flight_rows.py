#!/usr/bin/env python3
"""Flight SQL door (issue 18): 1M rows x 4 columns through the gateway's
Flight SQL `DoGet`, against the same rows read as the agent's own Arrow
answer (`POST /execute` with `"format": "arrow"`, straight to the agent), in
the same run.

One agent (its DuckDB file attached read-only), one gateway routing the user
to it (no fallback), both on loopback without TLS. Each side reads the whole
result into a pyarrow Table: the gateway's through pyarrow.flight
(GetFlightInfo of a CommandStatementQuery, then DoGet), the agent's through
`pyarrow.ipc.open_stream` over the HTTP body. Sides alternate for --rounds
rounds; the ratio is gateway / agent per round (goal: <= 1.3x).

Usage: python3 benches/gateway/bench_flight_rows.py [--rounds 3] [--rows 1000000]
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import duckdb
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.ipc as ipc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent"))
import benchlib as b  # noqa: E402

ADMIN = "bench-admin-token"
AGENT_TOKEN = "bench-agent-token"
SQL = "SELECT a, b, c, d FROM t"








def http_json(port, method, path, body, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, body=json.dumps(body), headers=headers)
    r = c.getresponse()
    data = r.read()
    if r.status >= 300:
        raise RuntimeError(f"{path}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else None


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def statement_query(sql):
    inner = field(1, sql.encode())
    return field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + field(2, inner)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-flight-")
    procs = []
    try:
        db = os.path.join(tmp, "shared.duckdb")
        c = duckdb.connect(db)
        c.execute(f"CREATE TABLE t AS SELECT i::INTEGER AS a, (i * 2)::BIGINT AS b, 'row ' || i AS c, "
                  f"i / 3.0::DOUBLE AS d FROM range({args.rows}) r(i)")
        c.close()
        init = os.path.join(tmp, "init.sql")
        with open(init, "w") as f:
            f.write(f"ATTACH IF NOT EXISTS '{db}' AS shared (READ_ONLY); USE shared;")
        agent_port, http_port, flight_port = b.free_port(), b.free_port(), b.free_port()
        base = {"PATH": os.environ.get("PATH", ""), "LOG_LEVEL": "warn"}
        procs.append(subprocess.Popen([b.AGENT_BIN], env=dict(
            base, AGENT_TOKEN=AGENT_TOKEN, LISTEN_ADDR=f"127.0.0.1:{agent_port}", SHARDS="1",
            REACTOR_PRIORITY="normal", DUCKDB_INIT_SQL=init),
            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/agent.log", "w")))
        procs.append(subprocess.Popen([os.path.join(b.TARGET, "release", "compute-gateway")], env=dict(
            base, LISTEN_ADDR=f"127.0.0.1:{http_port}", FLIGHT_ADDR=f"127.0.0.1:{flight_port}",
            DATABASE_URL=f"sqlite:{tmp}/gateway.db", DUCKDB_PATH=db, DUCKDB_READ_ONLY="true",
            GATEWAY_ADMIN_TOKEN=ADMIN, FEATURE_REMOTE_ROUTING="true"),
            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/gateway.log", "w")))
        for port, log in [(agent_port, "agent"), (http_port, "gateway"), (flight_port, "gateway")]:
            try:
                b.wait_port(port)
            except OSError:
                print(open(f"{tmp}/{log}.log").read())
                raise
        auth = {"Authorization": f"Bearer {ADMIN}"}
        http_json(http_port, "POST", "/compute-endpoints",
                  {"name": "a1", "url": f"http://127.0.0.1:{agent_port}", "type": "REMOTE",
                   "auth_token": AGENT_TOKEN}, auth)
        http_json(http_port, "PUT", "/admin/users/bench", {}, auth)
        http_json(http_port, "POST", "/compute-endpoints/a1/assignments",
                  {"principal": "bench", "principal_type": "user", "is_default": True,
                   "fallback_local": False}, auth)
        http_json(http_port, "POST", "/admin/grants",
                  {"principal": "bench", "principal_type": "user", "table": "t"}, auth)
        token = http_json(http_port, "POST", "/admin/tokens", {"user": "bench"}, auth)["token"]
        time.sleep(2.5)  # the store's refresh

        client = fl.FlightClient(f"grpc://127.0.0.1:{flight_port}")
        opts = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])

        def via_flight():
            info = client.get_flight_info(fl.FlightDescriptor.for_command(statement_query(SQL)), opts)
            tables = [client.do_get(ep.ticket, opts).read_all() for ep in info.endpoints]
            return pa.concat_tables(tables)

        def via_agent():
            c = http.client.HTTPConnection("127.0.0.1", agent_port, timeout=120)
            c.request("POST", "/execute", body=json.dumps({"sql": SQL, "format": "arrow"}),
                      headers={"X-Agent-Token": AGENT_TOKEN})
            r = c.getresponse()
            if r.status != 200:
                raise RuntimeError(f"agent: {r.status} {r.read()[:300]!r}")
            return ipc.open_stream(r).read_all()

        def timed(f):
            t = time.perf_counter()
            table = f()
            return time.perf_counter() - t, table.num_rows

        timed(via_flight)
        timed(via_agent)
        ratios = []
        for r in range(args.rounds):
            g, gn = timed(via_flight)
            a, an = timed(via_agent)
            assert gn == an == args.rows, (gn, an)
            ratios.append(g / a)
            print(f"round {r + 1}: gateway Flight SQL DoGet {g:.3f} s, agent Arrow /execute {a:.3f} s, "
                  f"ratio {g / a:.2f}x", flush=True)
        print(f"median ratio {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}), "
              f"{args.rows} rows x 4 columns")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
