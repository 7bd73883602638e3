-- Shared by the tuco benchmark scripts: the key space, argument parsing and the
-- JSON summary that bench/run.py parses. Loaded with dofile() from the scripts'
-- own directory so that each scenario script stays a few lines long.
--
-- Arguments (after `--` on the wrk command line): keys value_bytes put_percent
-- Keys are "key-" plus 12 digits (16 bytes), the same scheme the preloader uses.

local M = {}

function M.parse(args)
  local keys = tonumber(args[1] or "10000")
  local value_bytes = tonumber(args[2] or "64")
  local put_percent = tonumber(args[3] or "0")
  return keys, value_bytes, put_percent
end

function M.key(i)
  return string.format("key-%012d", i)
end

-- Precomputing whole requests keeps wrk's own CPU per request low, so the load
-- generator is not what limits a fast server; skipped when it would be large.
function M.prepare(method, keys, value_bytes)
  local body = nil
  if method == "PUT" then
    body = string.rep("v", value_bytes)
  end
  local precompute = keys * (value_bytes + 120) <= 32 * 1024 * 1024
  local paths, requests = {}, {}
  for i = 1, keys do
    paths[i] = "/v1/key/" .. M.key(i - 1)
    if precompute then
      requests[i] = wrk.format(method, paths[i], nil, body)
    end
  end
  if precompute then
    return function() return requests[math.random(keys)] end
  end
  return function() return wrk.format(method, paths[math.random(keys)], nil, body) end
end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end

return M
