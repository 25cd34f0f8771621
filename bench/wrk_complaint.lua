-- A stream of distinct web-form complaints: every request a new customer and new text.
counter = 0
math.randomseed(os.time())
local base = math.random(1, 1000000)
request = function()
  counter = counter + 1
  local n = base * 100000 + counter
  local body = string.format(
    '{"name":"Bench %d","phone":"+7916%07d","text":"Complaint %d: no internet since morning, router light %d is red"}',
    n, n % 10000000, n, counter % 7)
  return wrk.format("POST", "/web/complaints", {["Content-Type"] = "application/json"}, body)
end
