-- GETs of the preloaded keys under a Zipf law: key i (from 0) is asked with weight 1 / (i + 1)^s,
-- each request drawn independently (inverse CDF by binary search over a table built at init), so
-- the stream is stationary however long the run: a cache's hit ratio settles where the law puts it.
-- Arguments (after `--`): keys s
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

function init(args)
  local keys = tonumber(args[1] or "10000")
  local s = tonumber(args[2] or "1.0")
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local cdf, total = {}, 0.0
  for i = 1, keys do
    total = total + 1.0 / (i ^ s)
    cdf[i] = total
  end
  local random, floor = math.random, math.floor
  request = function()
    local target = random() * total
    local lo, hi = 1, keys
    while lo < hi do
      local mid = floor((lo + hi) / 2)
      if cdf[mid] < target then lo = mid + 1 else hi = mid end
    end
    return wrk.format("GET", string.format("/v1/key/key-%012d", lo - 1))
  end
end

done = common.done
