-- post100.lua: POST /v1/positions with a batch of 100 events per request: one user's offline
-- backlog (10 videos x 10 increasing positions, ts increasing), users spread over 20,000.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
events_per_request = 100
dofile(dir .. "report.lua")
local pool, n, i = {}, 0, 0
local counter = 0
function setup(thread)
   counter = counter + 1
   thread:set("seed", counter)
end
function init(args)
   math.randomseed(os.time() * 1000 + (seed or 0))
   local h = {["Content-Type"] = "application/json"}
   local now = os.time() * 1000
   for k = 1, 400 do
      local user = math.random(0, 19999)
      local ev = {}
      for e = 0, 99 do
         ev[#ev + 1] = string.format(
            '{"user_id":"user-%07d","video_id":"video-%06d","position":%.1f,"duration":5400,"ts":%d,"session_id":"s-%08x"}',
            user, e % 10, math.random(0, 53999) / 10, now - 60000 + e, math.random(0, 0x7fffffff))
      end
      pool[k] = wrk.format("POST", "/v1/positions", h, "[" .. table.concat(ev, ",") .. "]")
   end
   n = #pool
end
function request()
   i = i % n + 1
   return pool[i]
end
