-- PUT of a fixed value (value_bytes long) to a key chosen at random per request.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
local next_request

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local keys, value_bytes = common.parse(args)
  next_request = common.prepare("PUT", keys, value_bytes)
end

function request() return next_request() end

done = common.done
