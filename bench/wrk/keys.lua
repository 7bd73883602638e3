-- Requests over the preloaded key space, keys at random: put_percent of them are
-- PUTs of a value_bytes-long value, the rest GETs. 0 and 100 pick a single request
-- kind at init, so pure GET and pure PUT loads pay nothing per request for the mix.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local keys, value_bytes, put_percent = common.parse(args)
  local next_get = common.prepare("GET", keys, value_bytes)
  local next_put = common.prepare("PUT", keys, value_bytes)
  if put_percent <= 0 then
    request = next_get
  elseif put_percent >= 100 then
    request = next_put
  else
    request = function()
      if math.random(100) <= put_percent then return next_put() end
      return next_get()
    end
  end
end

done = common.done
