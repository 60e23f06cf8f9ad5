-- wrk script: POST /v1/events with the ingest key, each request a batch of
-- TLA_WRK_BATCH (default 100) impressions joined to real signed decision ids.
-- Event ids are unique per run: run tag, wrk thread number, request counter, index.
--   TLA_WRK_DATA   path of the Lua data file written by bench/http.sh
--   TLA_WRK_BATCH  events per request (default 100)
--   TLA_WRK_TAG    prefix of the event ids (default "bench")
local data = dofile(os.getenv("TLA_WRK_DATA"))
local batch = tonumber(os.getenv("TLA_WRK_BATCH") or "100")
local tag = os.getenv("TLA_WRK_TAG") or "bench"

wrk.method = "POST"
wrk.path = "/v1/events"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. data.ingest_key

-- setup() runs in the main Lua state, once per wrk thread: number the threads.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

local n = 0
local decisions = data.decisions
local parts = {}
request = function()
  n = n + 1
  local prefix = string.format('{"event_id":"%s-t%d-r%d-', tag, thread_no or 0, n)
  for i = 1, batch do
    local d = decisions[((n * batch + i) % #decisions) + 1]
    parts[i] = prefix .. i .. '","decision_id":"' .. d .. '","type":"impression"}'
  end
  local body = '{"events":[' .. table.concat(parts, ",", 1, batch) .. ']}'
  return wrk.format(nil, nil, nil, body)
end
