-- read_position.lua: GET /v1/users/{u}/positions/{v} over the 20,000 users x 10 videos the consumer
-- run stored (so every answer is a 200).
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
   for k = 1, 20000 do
      pool[k] = wrk.format("GET", string.format("/v1/users/user-%07d/positions/video-%06d",
                                                 math.random(0, 19999), math.random(0, 9)))
   end
   n = #pool
end
function request()
   i = i % n + 1
   return pool[i]
end
