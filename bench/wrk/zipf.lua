-- GETs of the preloaded keys under a Zipf law: key i (from 0) is asked with weight 1 / (i + 1)^s.
-- A sample of requests is drawn once at init (inverse CDF over the key space) and replayed in
-- order, so wrk spends nothing per request on sampling.
-- Arguments (after `--`): keys s samples
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

function init(args)
  local keys = tonumber(args[1] or "10000")
  local s = tonumber(args[2] or "1.0")
  local samples = tonumber(args[3] or "200000")
  math.randomseed(12345)
  local cdf, total = {}, 0.0
  for i = 1, keys do
    total = total + 1.0 / (i ^ s)
    cdf[i] = total
  end
  local requests = {}
  for n = 1, samples do
    local target = math.random() * total
    local lo, hi = 1, keys
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < target then lo = mid + 1 else hi = mid end
    end
    requests[n] = wrk.format("GET", "/v1/key/" .. common.key(lo - 1))
  end
  cdf = nil
  local at = 0
  request = function()
    at = at % samples + 1
    return requests[at]
  end
end

done = common.done
