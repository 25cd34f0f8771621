-- VK Callback API events as VK posts them (API 5.199): message_new with a unique event_id,
-- the community's group_id and the Callback API secret (BENCH_VK_SECRET, BENCH_VK_GROUP).
-- BENCH_VK_USERS=N: the writers are N returning users (the same N in every run); unset or 0:
-- a new user every request.
local counter = 0
local seed = io.open("/dev/urandom", "rb"):read(4)
local base = (seed:byte(1) * 16777216 + seed:byte(2) * 65536 + seed:byte(3) * 256 + seed:byte(4)) % 1000000
local secret = os.getenv("BENCH_VK_SECRET") or "bench-vk-secret"
local group = tonumber(os.getenv("BENCH_VK_GROUP") or "123456")
local users = tonumber(os.getenv("BENCH_VK_USERS") or "0")
local texts = {
  {0, "Здравствуйте! Третий день не работает домашний интернет, договор %d. Роутер мигает красным. Когда почините?"},
  {15, "Dzień dobry, od wczoraj nie mam internetu (umowa %d). Modem świeci na czerwono. Proszę o pomoc."},
  {3, "Hi, my broadband (account %d) keeps dropping every evening since Monday and the speed is a tenth of what I pay for."},
}
request = function()
  counter = counter + 1
  local n = base * 100000 + counter
  local user_id = 100000000 + n % 1000000000  -- user ids are below 2e9 (chats above)
  if users > 0 then user_id = 90000000 + counter % users end
  local t = texts[counter % 3 + 1]
  local body = string.format(
    '{"group_id":%d,"type":"message_new","event_id":"%040x","v":"5.199","object":{"message":{"date":%d,"from_id":%d,'
    .. '"id":%d,"out":0,"version":%d,"attachments":[],"conversation_message_id":%d,"fwd_messages":[],"important":false,'
    .. '"is_hidden":false,"peer_id":%d,"random_id":0,"text":"%s"},"client_info":{"button_actions":["text","vkpay",'
    .. '"open_app","location","open_link","callback","intent_subscribe","intent_unsubscribe"],"keyboard":true,'
    .. '"inline_keyboard":true,"carousel":true,"lang_id":%d}},"secret":"%s"}',
    group, n, os.time(), user_id, counter, 10000000 + counter, counter, user_id, string.format(t[2], n % 10000000), t[1], secret)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
