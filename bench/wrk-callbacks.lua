-- Icecast URL-auth callbacks as a relay sends them: each connection
-- alternates listener_add and listener_remove of its own client ids, so
-- the balancer's book stays small and every request is counted.
-- AUTH (base64 of "relay-1:TOKEN") comes from the environment.
local auth = os.getenv("AUTH")
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end

local n = 0
function request()
  n = n + 1
  local client = thread_id * 100000000 + math.floor((n + 1) / 2)
  local body
  if n % 2 == 1 then
    body = "action=listener_add&server=127%2e0%2e0%2e1&port=8000&client=" .. client ..
      "&mount=%2flive%2emp3%3fibt%3dAAAA&user=&pass=&ip=127%2e0%2e0%2e1&agent=bench%2f1%2e0"
  else
    body = "action=listener_remove&server=127%2e0%2e0%2e1&port=8000&client=" .. client ..
      "&mount=%2flive%2emp3&user=&pass=&ip=127%2e0%2e0%2e1&duration=1&agent=bench%2f1%2e0"
  end
  return wrk.format("POST", nil, {
    ["Authorization"] = "Basic " .. auth,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }, body)
end
