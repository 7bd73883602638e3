-- A GET/PUT mix: put_percent of requests are PUTs, the rest GETs, keys at random.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
local next_get, next_put, put_percent

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local keys, value_bytes
  keys, value_bytes, put_percent = common.parse(args)
  next_get = common.prepare("GET", keys, value_bytes)
  next_put = common.prepare("PUT", keys, value_bytes)
end

function request()
  if math.random(100) <= put_percent then return next_put() end
  return next_get()
end

done = common.done
