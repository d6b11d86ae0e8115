-- wrk script: every request carries the next X-Forwarded-For address from
-- the file named by XFF_FILE (one address per line); threads start at
-- different offsets so they do not send the same sequence.
local addrs = {}
for line in io.lines(os.getenv("XFF_FILE")) do
  if #line > 0 then addrs[#addrs + 1] = line end
end

local threads = 0
function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end

local i = 0
function request()
  i = i + 1
  local a = addrs[((offset or 0) + i) % #addrs + 1]
  return wrk.format("GET", nil, { ["X-Forwarded-For"] = a })
end
