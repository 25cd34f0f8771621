-- A stream of distinct web-form complaints: every request a new customer and new text.
-- The phone numbers are spread over the whole range, as real ones are (each new customer's
-- identity lands on its own page of the identity index, not at its end): the request's
-- number times a multiplier prime to 10^7, modulo 10^7, so no two requests share one.
counter = 0
math.randomseed(os.time())
local base = math.random(1, 1000000)
request = function()
  counter = counter + 1
  local n = base * 100000 + counter
  local phone = (n % 10000000) * 7654321 % 10000000  -- below 2^53: exact in Lua's numbers
  local body = string.format(
    '{"name":"Bench %d","phone":"+7916%07d","text":"Complaint %d: no internet since morning, router light %d is red"}',
    n, phone, n, counter % 7)
  return wrk.format("POST", "/web/complaints", {["Content-Type"] = "application/json"}, body)
end
