-- wrk: POST /execute of one fixed statement (BENCH_SQL, default `SELECT 1`);
-- the reference side of benchmark 2, run with the same thread/connection
-- layout as lifecycle.lua. Prints WRKJSON.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
wrk.method = "POST"
wrk.path = "/execute"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Agent-Token"] = os.getenv("BENCH_TOKEN") or "bench"
wrk.body = '{"sql":"' .. (os.getenv("BENCH_SQL") or "SELECT 1") .. '"}'
