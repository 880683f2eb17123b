-- The one wrk script of bench/run, configured by the environment:
--   BENCH_METHOD   GET or POST (default POST)
--   BENCH_PATH     the request path
--   BENCH_BODIES   a file of request bodies, one per line; thread k of n sends lines k, k+n,
--                  k+2n, ... in order (so each body is sent once while the file lasts), then
--                  starts again. With one line, every request carries it.
--   BENCH_EXPECT   the status every response should have; any other is counted apart
--   BENCH_DELAY_MS pause before each request of a connection (pacing for the latency runs)
--   BENCH_THREADS  wrk's -t, to split the bodies between the threads
-- done() prints one JSON line on standard output: requests, the unexpected ones by status,
-- socket errors, duration and latency percentiles (µs).

local method = os.getenv("BENCH_METHOD") or "POST"
local path = os.getenv("BENCH_PATH") or "/"
local expect = tonumber(os.getenv("BENCH_EXPECT") or "200")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local bodies = {}
local next_body = 1
unexpected = {} -- global: done() reads each thread's with thread:get

function init(args)
  local file = os.getenv("BENCH_BODIES")
  if file then
    local all = {}
    for line in io.lines(file) do
      all[#all + 1] = line
    end
    -- Each thread runs this script in a state of its own: setup() (in the main state) gave
    -- it its `id`; the number of threads comes from the caller.
    local n = tonumber(os.getenv("BENCH_THREADS") or "1")
    local k = id or 0
    for i = k + 1, #all, n do
      bodies[#bodies + 1] = all[i]
    end
    if #bodies == 0 then
      bodies = all
    end
  end
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body = nil
  if #bodies > 0 then
    body = bodies[next_body]
    next_body = next_body + 1
    if next_body > #bodies then
      next_body = 1
    end
  end
  return wrk.format(method, path, nil, body)
end

function response(status, headers, body)
  if status ~= expect then
    unexpected[status] = (unexpected[status] or 0) + 1
  end
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local by_status = {}
  local total_unexpected = 0
  for _, thread in ipairs(threads) do
    local theirs = thread:get("unexpected")
    for status, n in pairs(theirs) do
      by_status[tostring(status)] = (by_status[tostring(status)] or 0) + n
      total_unexpected = total_unexpected + n
    end
  end
  local parts = {}
  for status, n in pairs(by_status) do
    parts[#parts + 1] = string.format('"%s":%d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"unexpected":%d,"unexpected_by_status":{%s},' ..
    '"socket_errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, total_unexpected, table.concat(parts, ","),
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
