-- wrk: POST /execute with a statement text never sent before (`SELECT <n>`),
-- so no cache of prepared statements or plans can help (benchmark 1).
-- n = base + counter * 64 + thread index: unique across up to 64 wrk threads;
-- base comes from the script argument so successive runs never repeat text.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
local token = os.getenv("BENCH_TOKEN") or "bench"
local counter = 0
local nthreads = 0
function setup(thread)
   thread:set("tid", nthreads)
   nthreads = nthreads + 1
end
function init(args)
   base = tonumber(args[1] or "100000000")
   tid = tid or 0
   headers = { ["Content-Type"] = "application/json", ["X-Agent-Token"] = token }
end
function request()
   local n = base + counter * 64 + tid
   counter = counter + 1
   return wrk.format("POST", "/execute", headers, '{"sql":"SELECT ' .. n .. '"}')
end
