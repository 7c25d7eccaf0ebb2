-- Shared wrk `done` hook for benches/agent: prints one machine-readable line
-- ("WRKJSON {...}") with the request count, duration, errors and latency
-- percentiles, so the Python drivers never scrape wrk's human text.
-- Loaded with dofile() by the per-benchmark scripts; defines nothing else.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
      '"lat_p50_us":%d,"lat_p99_us":%d,"lat_max_us":%d,"lat_mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
