-- Telegram webhook updates as the Bot API posts them: private-chat text messages, a new
-- update_id and a new user every request, the secret token header.
-- The secret comes from the environment (BENCH_TELEGRAM_SECRET), as the gateway's does.
local counter = 0
local seed = io.open("/dev/urandom", "rb"):read(4)
local base = (seed:byte(1) * 16777216 + seed:byte(2) * 65536 + seed:byte(3) * 256 + seed:byte(4)) % 1000000
local secret = os.getenv("BENCH_TELEGRAM_SECRET") or "bench-secret-token"
local people = {
  {"Анна", "Смирнова", "ru", "Здравствуйте! Третий день не работает домашний интернет, договор %d. Роутер мигает красным, на линии тишина. Когда почините?"},
  {"Piotr", "Kowalski", "pl", "Dzień dobry, od wczoraj nie mam internetu (umowa %d). Modem świeci na czerwono, infolinia nie odbiera. Proszę o pomoc."},
  {"Emma", "Brown", "en", "Hi, my broadband (account %d) keeps dropping every evening since Monday and the speed is a tenth of what I pay for."},
}
request = function()
  counter = counter + 1
  local update_id = base * 100000 + counter
  local user_id = 1000000000 + update_id
  local p = people[counter % 3 + 1]
  local body = string.format(
    '{"update_id":%d,"message":{"message_id":%d,"from":{"id":%d,"is_bot":false,"first_name":"%s","last_name":"%s","language_code":"%s"},'
    .. '"chat":{"id":%d,"first_name":"%s","last_name":"%s","type":"private"},"date":%d,"text":"%s"}}',
    update_id, counter, user_id, p[1], p[2], p[3], user_id, p[1], p[2], os.time(), string.format(p[4], update_id % 10000000))
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Telegram-Bot-Api-Secret-Token"] = secret}, body)
end
