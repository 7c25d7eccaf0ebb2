-- wrk: the full job lifecycle of a trivial query, back to back (benchmark 2):
--   POST /queries -> GET /queries/{id}?wait_ms=5000 (until terminal)
--   -> GET /queries/{id}/results -> DELETE /queries/{id}
-- Run with as many threads as connections (-tN -cN): wrk keeps one Lua state
-- per thread, so the per-job state below must belong to one connection.
-- Per job it records, in microseconds from the submit's send:
--   completion = the long-poll response that shows the job terminal,
--   cycle      = the DELETE response (the whole lifecycle).
-- done() prints "LIFEJSON {...}" with jobs, bad responses and percentiles.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local token = os.getenv("BENCH_TOKEN") or "bench"
local threads = {}
function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   sql = args[1] or "SELECT 1"
   headers = { ["X-Agent-Token"] = token }
   post_headers = { ["X-Agent-Token"] = token, ["Content-Type"] = "application/json" }
   body = '{"sql":"' .. sql .. '"}'
   state = "submit"
   qid = nil
   t0 = 0
   completion = {}
   cycle = {}
   jobs = 0
   bad = 0
   bad_sample = ""
end

function request()
   if state == "submit" or qid == nil then
      state = "submit"
      t0 = now_us()
      return wrk.format("POST", "/queries", post_headers, body)
   elseif state == "wait" then
      return wrk.format("GET", "/queries/" .. qid .. "?wait_ms=5000", headers)
   elseif state == "results" then
      return wrk.format("GET", "/queries/" .. qid .. "/results", headers)
   else
      return wrk.format("DELETE", "/queries/" .. qid, headers)
   end
end

local function fail(status, body)
   bad = bad + 1
   if bad_sample == "" then
      bad_sample = state .. " " .. status .. " " .. string.sub(body or "", 1, 200)
   end
   state = "submit"
end

function response(status, hdrs, resp)
   if state == "submit" then
      local id = status == 202 and string.match(resp, '"query_id"%s*:%s*"([^"]+)"')
      if id then qid = id; state = "wait" else fail(status, resp) end
   elseif state == "wait" then
      local st = status == 200 and string.match(resp, '"status"%s*:%s*"(%u+)"')
      if st == "SUCCEEDED" then
         completion[#completion + 1] = now_us() - t0
         state = "results"
      elseif st == "QUEUED" or st == "RUNNING" then
         -- wait ended before the job did: poll again
      else
         fail(status, resp)
      end
   elseif state == "results" then
      if status == 200 and string.find(resp, '"rows"', 1, true) then state = "delete" else fail(status, resp) end
   else
      if status == 200 then
         cycle[#cycle + 1] = now_us() - t0
         jobs = jobs + 1
         state = "submit"
      else
         fail(status, resp)
      end
   end
end

local function pct(sorted, p)
   if #sorted == 0 then return 0 end
   local i = math.ceil(p / 100 * #sorted)
   if i < 1 then i = 1 end
   return sorted[i]
end

function done(summary, latency, requests)
   local comp, cyc, total_jobs, total_bad, sample = {}, {}, 0, 0, ""
   for _, t in ipairs(threads) do
      for _, v in ipairs(t:get("completion")) do comp[#comp + 1] = v end
      for _, v in ipairs(t:get("cycle")) do cyc[#cyc + 1] = v end
      total_jobs = total_jobs + t:get("jobs")
      total_bad = total_bad + t:get("bad")
      if sample == "" then sample = t:get("bad_sample") end
   end
   table.sort(comp)
   table.sort(cyc)
   local e = summary.errors
   io.write(string.format(
      'LIFEJSON {"jobs":%d,"bad":%d,"requests":%d,"duration_us":%d,"socket_errors":%d,' ..
      '"completion_p50_us":%d,"completion_p99_us":%d,"completion_max_us":%d,' ..
      '"cycle_p50_us":%d,"cycle_p99_us":%d,"cycle_max_us":%d,"bad_sample":%q}\n',
      total_jobs, total_bad, summary.requests, summary.duration,
      e.connect + e.read + e.write + e.timeout,
      pct(comp, 50), pct(comp, 99), pct(comp, 100), pct(cyc, 50), pct(cyc, 99), pct(cyc, 100),
      sample))
end
