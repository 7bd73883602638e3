-- GET of a key chosen uniformly at random per request from the preloaded key space.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
local next_request

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local keys, value_bytes = common.parse(args)
  next_request = common.prepare("GET", keys, value_bytes)
end

function request() return next_request() end

done = common.done
