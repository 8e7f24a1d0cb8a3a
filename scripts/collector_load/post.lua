-- wrk script: POST events to the collector. BATCH=1 sends one event per request,
-- BATCH=n a {"batch": [...]} of n events. 64 prepared requests rotate over 64*n
-- customers, so the events spread over the partitions. done() prints one JSON line.
local batch = tonumber(os.getenv("BATCH") or "1")
local key = os.getenv("WRITE_KEY") or ""
local requests = {}
local n = 0

local function event(c)
  return string.format(
    '{"type":"cart","customer_id":"c-load-%d","action":"add","sku":"A-%d",' ..
    '"category":"shoes","quantity":1,"unit_price":59.9,"channel":"web","device":"mobile"}',
    c, c % 97)
end

init = function(args)
  local headers = { ["Content-Type"] = "application/json", ["X-Write-Key"] = key }
  for r = 1, 64 do
    local body
    if batch == 1 then
      body = event(r)
    else
      local items = {}
      for i = 1, batch do items[i] = event(r * batch + i) end
      body = '{"batch":[' .. table.concat(items, ",") .. ']}'
    end
    requests[r] = wrk.format("POST", "/v1/events", headers, body)
  end
end

request = function()
  n = n % 64 + 1
  return requests[n]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "socket_errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
