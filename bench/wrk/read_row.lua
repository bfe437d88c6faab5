-- read_row.lua: GET /v1/users/{u}/continue-watching?limit=20 over the 20,000 users the consumer run
-- stored (10 videos each).
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
      pool[k] = wrk.format("GET", string.format("/v1/users/user-%07d/continue-watching?limit=20", math.random(0, 19999)))
   end
   n = #pool
end
function request()
   i = i % n + 1
   return pool[i]
end
