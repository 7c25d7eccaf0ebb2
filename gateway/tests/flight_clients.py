#!/usr/bin/env python3
"""Real Flight SQL clients against a running gateway, for tests/flight.rs
(`python_clients`): pyarrow.flight (handshake with basic auth, a raw
CommandStatementQuery, DoGet, CancelFlightInfo) and the ADBC Flight SQL
driver (queries on local compute and through an agent, parameters,
metadata, refusals, bad tokens). Every answer is compared with what
POST /v1/query answers the same user.

Environment: FLIGHT_URI (grpc://host:port), HTTP_URL, LOC_TOKEN, REM_TOKEN,
NOBODY_TOKEN. Prints one `OK name` or `FAIL name: why` line per check and
`ALL OK` at the end; exits 1 on any failure.
"""
import json
import os
import sys
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as fl

URI = os.environ["FLIGHT_URI"]
HTTP = os.environ["HTTP_URL"]
LOC, REM, NOBODY = os.environ["LOC_TOKEN"], os.environ["REM_TOKEN"], os.environ["NOBODY_TOKEN"]
failures = []


def check(name, ok, why=""):
    if ok:
        print(f"OK {name}")
    else:
        failures.append(name)
        print(f"FAIL {name}: {why}")


def http_rows(token, sql):
    req = urllib.request.Request(f"{HTTP}/v1/query", data=json.dumps({"sql": sql}).encode(),
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = json.loads(r.read())
    return body["columns"], [tuple(row) for row in body["rows"]]


def arrow_rows(table):
    return table.column_names, [tuple(r.values()) for r in table.to_pylist()]


def same_as_http(name, token, sql, table):
    want = http_rows(token, sql)
    got = arrow_rows(table)
    check(name, got == want, f"flight {got} != /v1/query {want}")


# --- protobuf, by hand: just the three messages pyarrow.flight needs -------
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
    """Any{CommandStatementQuery{query}}."""
    inner = field(1, sql.encode())
    return field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + field(2, inner)


# --- pyarrow.flight ----------------------------------------------------------
client = fl.FlightClient(URI)
header = client.authenticate_basic_token("loc", LOC)
check("pyarrow handshake answers the bearer token", header == (b"authorization", f"Bearer {LOC}".encode()),
      str(header))
opts = fl.FlightCallOptions(headers=[header])
sql = "SELECT id, name, email FROM people ORDER BY id"
info = client.get_flight_info(fl.FlightDescriptor.for_command(statement_query(sql)), opts)
check("pyarrow FlightInfo carries the schema", info.schema.names == ["id", "name", "email"], str(info.schema))
table = client.do_get(info.endpoints[0].ticket, opts).read_all()
same_as_http("pyarrow DoGet answers what /v1/query answers (local, filter and mask)", LOC, sql, table)

try:
    client.authenticate_basic_token("loc", "wrong-password")
    check("pyarrow wrong password refused", False, "accepted")
except fl.FlightUnauthenticatedError:
    check("pyarrow wrong password refused", True)

try:
    client.get_flight_info(fl.FlightDescriptor.for_command(statement_query("SELECT 1")))
    check("pyarrow missing token refused", False, "accepted")
except fl.FlightUnauthenticatedError:
    check("pyarrow missing token refused", True)

# CancelFlightInfo: CancelFlightInfoRequest{info}; the result's status 1 = CANCELLED.
info = client.get_flight_info(fl.FlightDescriptor.for_command(statement_query("SELECT n FROM big")), opts)
res = list(client.do_action(fl.Action("CancelFlightInfo", field(1, info.serialize())), opts))
check("pyarrow CancelFlightInfo cancels", len(res) == 1 and res[0].body.to_pybytes() == b"\x08\x01",
      repr([r.body.to_pybytes() for r in res]))
try:
    client.do_get(info.endpoints[0].ticket, opts).read_all()
    check("pyarrow a canceled ticket is gone", False, "read")
except (fl.FlightError, pa.ArrowKeyError) as e:
    check("pyarrow a canceled ticket is gone", "NOT_FOUND" in str(e) or "no such ticket" in str(e), str(e))

# --- ADBC ---------------------------------------------------------------------
def adbc(token):
    return flightsql.connect(URI, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"},
                             autocommit=True)


for who, token in [("local", LOC), ("agent", REM)]:
    with adbc(token) as conn, conn.cursor() as cur:
        for sql in ["SELECT id, name, email, region FROM people ORDER BY id",
                    "SELECT count(*) AS n, sum(n) AS total FROM big"]:
            cur.execute(sql)
            same_as_http(f"ADBC on {who}: {sql}", token, sql, cur.fetch_arrow_table())
        cur.execute("SELECT n FROM big ORDER BY n")
        t = cur.fetch_arrow_table()
        check(f"ADBC on {who}: 25000 rows in order", t.num_rows == 25000 and t.column(0).to_pylist() == list(range(25000)),
              str(t.num_rows))
        try:
            cur.execute("SELECT * FROM secrets")
            cur.fetchall()
            check(f"ADBC on {who}: ungranted table refused", False, "answered")
        except adbc_driver_manager.Error as e:
            check(f"ADBC on {who}: ungranted table refused", "ACCESS_DENIED" in str(e) and "launch" not in str(e), str(e))
        try:
            cur.execute("DELETE FROM people")
            check(f"ADBC on {who}: a write refused", False, "answered")
        except adbc_driver_manager.Error as e:
            check(f"ADBC on {who}: a write refused", "SQL_REFUSED" in str(e), str(e))
        objs = conn.adbc_get_objects().read_all().to_pylist()
        names = sorted(t["table_name"] for c in objs for s in c["catalog_db_schemas"] for t in s["db_schema_tables"])
        check(f"ADBC on {who}: get_objects lists the granted tables only", names == ["big", "people"], str(names))
        schema = conn.adbc_get_table_schema("people")
        check(f"ADBC on {who}: table schema", schema.names == ["id", "name", "email", "region"], str(schema))

with adbc(LOC) as conn, conn.cursor() as cur:
    cur.execute("SELECT id, name FROM people WHERE name = ? OR id = ? ORDER BY id", parameters=("ann' OR '1'='1", 3))
    check("ADBC parameters bound as values", cur.fetchall() == [(3, "cat")], "")
    cur.execute("SELECT email FROM people WHERE id = ?", parameters=(1,))
    check("ADBC parameters under the mask", cur.fetchall() == [("an…",)], "")
    cur.execute("SELECT count(*) FROM people WHERE region = ?", parameters=("US",))
    check("ADBC parameters under the filter", cur.fetchall() == [(0,)], "")

with adbc(REM) as conn, conn.cursor() as cur:
    try:
        cur.execute("SELECT id FROM people WHERE id = ?", parameters=(1,))
        cur.fetchall()
        check("ADBC parameters through an agent refused", False, "answered")
    except adbc_driver_manager.Error as e:
        check("ADBC parameters through an agent refused", "PARAMETERS_UNSUPPORTED" in str(e), str(e))

with adbc(NOBODY) as conn:
    objs = conn.adbc_get_objects().read_all().to_pylist()
    tables = [t for c in objs for s in (c["catalog_db_schemas"] or []) for t in (s["db_schema_tables"] or [])]
    check("ADBC get_objects of a user with no grants is empty", tables == [], str(objs))

try:
    with adbc("not-a-token") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchall()
    check("ADBC bad token refused", False, "answered")
except adbc_driver_manager.Error as e:
    check("ADBC bad token refused", "UNAUTHORIZED" in str(e) or "Unauthenticated" in str(e), str(e))

with flightsql.connect(URI, db_kwargs={"username": "loc", "password": LOC}, autocommit=True) as conn, conn.cursor() as cur:
    cur.execute("SELECT count(*) FROM people")
    check("ADBC user name and token as password", cur.fetchall() == [(2,)], "")

if failures:
    print(f"{len(failures)} FAILED")
    sys.exit(1)
print("ALL OK")
