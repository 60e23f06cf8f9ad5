-- wrk script: POST /v1/campaigns/{id}/decisions with the decide key, cycling through
-- the campaign's segments.  bench/http.sh writes the data file and sets:
--   TLA_WRK_DATA   path of a Lua file returning {campaign=, decide_key=, ingest_key=,
--                  segments={...}, decisions={...}}
--   TLA_WRK_COUNT  decisions per request (1 to 100; default 1)
local data = dofile(os.getenv("TLA_WRK_DATA"))
local count = tonumber(os.getenv("TLA_WRK_COUNT") or "1")

wrk.method = "POST"
wrk.path = "/v1/campaigns/" .. data.campaign .. "/decisions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. data.decide_key

local requests = {}
for i, segment in ipairs(data.segments) do
  local body = string.format('{"segment":"%s","count":%d}', segment, count)
  requests[i] = wrk.format(nil, nil, nil, body)
end

local n = 0
request = function()
  n = n + 1
  return requests[(n % #requests) + 1]
end
