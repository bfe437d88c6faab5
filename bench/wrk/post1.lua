-- post1.lua: POST /v1/positions, one event per request, spread over 20,000 users x 10 videos with
-- random positions (a pool of pre-formatted requests per thread, so wrk's Lua costs little).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
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
   for k = 1, 20000 do
      local body = string.format(
         '{"user_id":"user-%07d","video_id":"video-%06d","position":%.1f,"duration":5400,"session_id":"s-%08x"}',
         math.random(0, 19999), math.random(0, 9), math.random(0, 53999) / 10, math.random(0, 0x7fffffff))
      pool[k] = wrk.format("POST", "/v1/positions", h, body)
   end
   n = #pool
end
function request()
   i = i % n + 1
   return pool[i]
end
