-- wrk: POST /execute with the same trivial statement every time (benchmark 1).
-- The request is formatted once; wrk resends the same bytes.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
wrk.method = "POST"
wrk.path = "/execute"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Agent-Token"] = os.getenv("BENCH_TOKEN") or "bench"
wrk.body = '{"sql":"SELECT 1"}'
