-- A stream of distinct web-form complaints: every request a new customer and new text.
-- The texts are the VK load's (bench/wrk_vk.lua; the Telegram load's are alike): a Russian,
-- a Polish and an English complaint in turns, as a company serving those customers receives them.
-- The phone numbers are spread over the whole range, as real ones are (each new customer's
-- identity lands on its own page of the identity index, not at its end): the request's
-- number times a multiplier prime to 10^7, modulo 10^7, so no two requests share one.
counter = 0
math.randomseed(os.time())
local base = math.random(1, 1000000)
local texts = {
  "Здравствуйте! Третий день не работает домашний интернет, договор %d. Роутер мигает красным. Когда почините?",
  "Dzień dobry, od wczoraj nie mam internetu (umowa %d). Modem świeci na czerwono. Proszę o pomoc.",
  "Hi, my broadband (account %d) keeps dropping every evening since Monday and the speed is a tenth of what I pay for.",
}
request = function()
  counter = counter + 1
  local n = base * 100000 + counter
  local phone = (n % 10000000) * 7654321 % 10000000  -- below 2^53: exact in Lua's numbers
  local body = string.format('{"name":"Bench %d","phone":"+7916%07d","text":"%s"}',
                             n, phone, string.format(texts[counter % 3 + 1], n % 10000000))
  return wrk.format("POST", "/web/complaints", {["Content-Type"] = "application/json"}, body)
end
