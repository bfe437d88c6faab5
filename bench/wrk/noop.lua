-- noop.lua: GET /healthz (the no-op route), the HTTP limit of the same server build.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
