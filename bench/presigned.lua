-- wrk script: replays a file of unique pre-signed requests (bench/auth.sh).
-- Usage: wrk ... -s bench/presigned.lua URL -- FILE NTHREADS
-- Each thread takes every NTHREADS-th request, so no request is sent twice
-- until a thread runs out (then it wraps and the replays are counted as
-- non-2xx by wrk: size FILE for the run).
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local n, start = 0, 1
  while true do
    local s, e = string.find(data, "\n#####\n", start, true)
    if not s then break end
    if n % nthreads == tid then
      reqs[#reqs + 1] = string.sub(data, start, s - 1)
    end
    n = n + 1
    start = e + 1
  end
  idx = 0
end

function request()
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return reqs[idx]
end
