-- report.lua: shared by the bench's wrk scripts (loaded with dofile). done() prints one JSON line,
-- "WRK_JSON {...}", with the figures bench/run.sh keeps: requests, req/s, latency percentiles in ms,
-- errors by kind. `events_per_request` (set by the including script) turns requests into events.
events_per_request = events_per_request or 1

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"seconds":%.3f,"req_per_s":%.1f,"events_per_s":%.1f,' ..
      '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f,' ..
      '"non_2xx":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
      summary.requests, secs, summary.requests / secs, summary.requests * events_per_request / secs,
      latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
      latency:percentile(99.9) / 1e3, latency.max / 1e3,
      e.status, e.connect, e.read, e.write, e.timeout))
end
