-- The atomic submit of the Redis registry: one server-side script, one round trip for a
-- whole batch (the intake's group commit). KEYS[1] key prefix. ARGV holds two values per
-- complaint, in order: its JSON parameters (see RedisRegistry._submit_args) and the
-- complaint's JSON with placeholders where the values named in a.slots go, at the byte
-- offsets and lengths in a.cuts: 'customer' (the customer id), 'number' (the registration
-- number) and, when the message names a number, 'in_reply_to' (kept for a follow-up, null
-- when refused). The stored complaint's meta gets what SQLite's registry notes too:
-- merge_suggested, in_reply_to_rejected, repeat_of.
-- Returns one reply per complaint: {status, registration number or '', customer id, the pairs
-- added to meta or ''}; {'duplicate', the first delivery's receipt JSON} for a redelivery;
-- or {'error', why} for a complaint that failed alone (the others are registered all the
-- same, as separate calls would be). The batch's receipts and identities are read with one
-- command each, and what it adds to them and to the timeline written with one command each
-- at the end; each complaint sees what those before it in the batch added.
local P = KEYS[1]
local null = cjson.null

local function current(cid)
  for _ = 1, 32 do
    local merged = redis.call('HGET', P .. 'customer:' .. cid, 'merged_into')
    if not merged or merged == '' then return cid end
    cid = merged
  end
  return cid
end

-- Bits set in a 32-bit value (bit.* results are signed 32-bit numbers), counted in parallel.
local band, bxor, rshift = bit.band, bit.bxor, bit.rshift
local function popcount(x)
  x = x - band(rshift(x, 1), 0x55555555)
  x = band(x, 0x33333333) + band(rshift(x, 2), 0x33333333)
  x = band(x + rshift(x, 4), 0x0F0F0F0F)  -- a count per byte
  x = x + rshift(x, 8)  -- (no multiplication: bit.* is exact only up to 2^51)
  return band(x + rshift(x, 16), 0x3F)
end

local function json_string(s)
  return '"' .. string.gsub(s, '[\\"]', '\\%0') .. '"'
end

-- Registration counters are read once per call and written back once at its end, and the
-- timeline's positions are taken for the whole batch with one command (see below): the
-- script runs alone, so nothing else can take the same numbers meanwhile.
local counters = {}
local function next_number(name)
  local value = counters[name]
  if value == nil then
    value = tonumber(redis.call('GET', P .. 'counter:' .. name) or '0')
  end
  value = value + 1
  counters[name] = value
  return value
end

-- The receipts and identities hashes are read once per call, for the whole batch, and what
-- the batch adds to them and to the timeline is written once at its end: these tables hold
-- what was read and what is added meanwhile (false: not there).
local receipts, identity = {}, {}
local receipts_written, identities_written, timeline = {}, {}, {}
-- The index of deadlines: per deadline name, the new registrations' {instant, number} pairs
-- of this batch, added with one command per name at its end (see RedisRegistry.registrations_due).
local due_added = {}
-- The index of states: per registration state, the {timeline position, message id} pairs of
-- this batch's messages that belong to a registration, added with one command per state at
-- its end (RedisRegistry._search_candidates reads 'state:<state>' as it reads the timeline).
local state_added = {}
local function add_to_state(state, position, id)
  local added = state_added[state]
  if not added then
    added = {}
    state_added[state] = added
  end
  added[#added + 1] = position
  added[#added + 1] = id
end

-- The indexes of channels and of receipt times: per channel, the {timeline position, message
-- id} pairs of this batch's messages, and their {received epoch, message id} pairs, added with
-- one command per channel and one at its end (RedisRegistry._search_candidates reads
-- 'channel:<channel>' as it reads the timeline, and 'received' for a date filter).
local channel_added, received_added = {}, {}
-- The index of messages' deadlines: the {instant, message id} pairs of this batch's messages
-- whose registration is not closed, each at the deadline that matters for it in its
-- registration's state (RedisRegistry._search_candidates reads 'due_messages' for the
-- overdue filter; RedisRegistry.apply_action moves them).
local due_messages_added = {}

-- Commands with many arguments are sent in chunks (Lua's unpack() has a limit).
local CHUNK = 1000
local function read_fields(key, fields, into)
  for first = 1, #fields, CHUNK do
    local last = math.min(first + CHUNK - 1, #fields)
    local values = redis.call('HMGET', key, unpack(fields, first, last))
    for i = first, last do into[fields[i]] = values[i - first + 1] end
  end
end
local function write_all(command, key, values)
  for first = 1, #values, CHUNK do
    redis.call(command, key, unpack(values, first, math.min(first + CHUNK - 1, #values)))
  end
end

-- position: the complaint's place in the timeline
local function submit(a, template, position)
  local receipt_field = a.receipt_field
  local previous = receipts[receipt_field]
  if previous then
    return {'duplicate', previous}
  end

  -- one customer across doors ------------------------------------------------------------
  local owners, seen, unknown = {}, {}, {}
  for _, key in ipairs(a.identities) do
    local cid = identity[key]
    if cid then
      cid = current(cid)
      if not seen[cid] then
        seen[cid] = true
        owners[#owners + 1] = cid
      end
    else
      unknown[#unknown + 1] = key
    end
  end

  local customer
  if #owners > 0 then
    customer = owners[1]
    if a.name ~= null then
      redis.call('HSETNX', P .. 'customer:' .. customer, 'name', a.name)
    end
  else
    customer = a.new_customer_id
    if a.name ~= null then
      redis.call('HSET', P .. 'customer:' .. customer, 'created_at', a.now, 'name', a.name)
    else
      redis.call('HSET', P .. 'customer:' .. customer, 'created_at', a.now)
    end
  end
  for i = 2, #owners do
    local x, y = customer, owners[i]
    if y < x then x, y = y, x end
    if redis.call('SADD', P .. 'merge_pairs', x .. '|' .. y) == 1 then
      local id = a.id .. '-' .. i
      redis.call('HSET', P .. 'merge_suggestions', id, cjson.encode({
        id = id, customer_a = x, customer_b = y, identities = table.concat(a.identities, ','),
        complaint_id = a.id, created_at = a.now}))
    end
  end
  if #unknown > 0 then  -- one command each for all the new identities
    for _, key in ipairs(unknown) do
      identity[key] = customer
      identities_written[#identities_written + 1] = key
      identities_written[#identities_written + 1] = customer
    end
    redis.call('SADD', P .. 'customer:' .. customer .. ':identities', unpack(unknown))
  end

  -- follow-up, repeat or new -------------------------------------------------------------
  local noted = {}  -- '"key":value' pairs for the stored complaint's meta
  if #owners > 1 then
    local others = {}
    for i = 2, #owners do others[#others + 1] = json_string(owners[i]) end
    noted[#noted + 1] = '"merge_suggested":[' .. table.concat(others, ',') .. ']'
  end
  local kind, number = 'new', nil
  local in_reply_to = 'null'
  if a.in_reply_to ~= null then in_reply_to = json_string(a.in_reply_to) end
  if a.auto then
    kind = 'automatic'
  elseif a.in_reply_to ~= null then
    local owner = redis.call('HGET', P .. 'registration:' .. a.in_reply_to, 'customer_id')
    if owner and current(owner) == customer then
      kind, number = 'follow_up', a.in_reply_to
    else  -- a number typed by someone else opens a new complaint
      noted[#noted + 1] = '"in_reply_to_rejected":' .. in_reply_to
      in_reply_to = 'null'
    end
  end

  local recent_key = P .. 'recent:' .. customer
  -- a customer created just now has no earlier complaint; 0 candidates: none is compared
  if kind == 'new' and #owners > 0 and a.candidates > 0 then
    local recent = redis.call('LRANGE', recent_key, 0, a.candidates - 1)
    -- an entry: '0|', then the received epoch (a double) and the SimHash's high and low
    -- halves (32 bits each) packed big-endian, then the number; the low half is compared only
    -- when the high half is near enough. Packed, an entry is read by one struct.unpack
    -- instead of cutting text at its bars (a quarter of the script's time for a customer
    -- with many recent complaints), and an earlier version that finds one reads '0' as a time of receipt out of
    -- the window and stops there instead of failing. Entries that version wrote
    -- ('received|high|low|digest|number') are read as before. No digest is compared: the
    -- same words give the same SimHash, so an exact copy is always within the distance.
    local oldest, ahi, alo, limit = a.received - a.window, a.hi, a.lo, a.max_distance
    local find, sub, byte, unpack_entry = string.find, string.sub, string.byte, struct.unpack
    for _, entry in ipairs(recent) do
      local received, high_half, low_half, num
      if byte(entry, 1) == 48 and byte(entry, 2) == 124 then  -- '0|', then received and the halves packed, the number
        received, high_half, low_half = unpack_entry('>dI4I4', entry, 3)
        if received < oldest then break end
        local high = popcount(bxor(high_half, ahi))
        if high <= limit and high + popcount(bxor(low_half, alo)) <= limit then num = sub(entry, 19) end
      else  -- written by an earlier version: received|high|low|digest|number
        local bar1 = find(entry, '|', 1, true)
        if tonumber(sub(entry, 1, bar1 - 1)) < oldest then break end
        local bar2 = find(entry, '|', bar1 + 1, true)
        local high = popcount(bxor(tonumber(sub(entry, bar1 + 1, bar2 - 1)), ahi))
        local bar3 = high <= limit and find(entry, '|', bar2 + 1, true)
        if bar3 and high + popcount(bxor(tonumber(sub(entry, bar2 + 1, bar3 - 1)), alo)) <= limit then
          num = string.match(entry, '^[^|]+|(.*)$', bar3 + 1)
        end
      end
      if num then  -- a repeat
        kind, number = 'repeat', num
        noted[#noted + 1] = '"repeat_of":' .. json_string(num)
        break
      end
    end
  end
  if kind == 'new' then
    number = string.format(a.printf, next_number(a.counter))
    if a.due_name ~= null then  -- 'due': the name of the deadline that matters now, for apply_action
      redis.call('HSET', P .. 'registration:' .. number, 'customer_id', customer, 'complaint_id', a.id,
                 'created_at', a.now, 'due', a.due_name)
      local pairs_of_name = due_added[a.due_name]
      if not pairs_of_name then
        pairs_of_name = {}
        due_added[a.due_name] = pairs_of_name
      end
      pairs_of_name[#pairs_of_name + 1] = a.due
      pairs_of_name[#pairs_of_name + 1] = number
    else
      redis.call('HSET', P .. 'registration:' .. number, 'customer_id', customer, 'complaint_id', a.id,
                 'created_at', a.now, 'due', '')
    end
    redis.call('RPUSH', P .. 'customer:' .. customer .. ':registrations', number)
    if a.candidates > 0 and
       redis.call('LPUSH', recent_key, '0|' .. struct.pack('>dI4I4', a.received, a.hi, a.lo) .. number) > a.candidates then
      redis.call('LTRIM', recent_key, 0, a.candidates - 1)
    end
  end

  -- store, enqueue, remember the receipt -------------------------------------------------
  local values = {customer = json_string(customer), number = 'null', in_reply_to = in_reply_to}
  if number then values.number = json_string(number) end
  local parts, from = {}, 1
  for i, slot in ipairs(a.slots) do
    local at, length = a.cuts[i][1], a.cuts[i][2]
    parts[#parts + 1] = string.sub(template, from, at)
    parts[#parts + 1] = values[slot]
    from = at + length + 1
  end
  parts[#parts + 1] = string.sub(template, from)
  local body = table.concat(parts)
  local added = table.concat(noted, ',')
  if added ~= '' then  -- meta is the complaint's last field: its JSON ends with '}}'
    local comma = ','
    if a.meta_empty then comma = '' end
    body = string.sub(body, 1, -3) .. comma .. added .. '}}'
  end

  redis.call('HSET', P .. 'message:' .. a.id, 'kind', kind, 'number', number or '', 'customer_id', customer,
             'body', body)
  local state
  if number and kind ~= 'new' then  -- a registration's first message is its hash's complaint_id
    redis.call('RPUSH', P .. 'registration:' .. number .. ':messages', a.id)
    state = redis.call('HGET', P .. 'registration:' .. number, 'state')
    if not state or state == '' then state = 'open' end
  elseif number then
    state = 'open'
  end
  if state then
    add_to_state(state, position, a.id)
    local due_at = null
    if state == 'open' then due_at = a.due elseif state == 'claimed' then due_at = a.due_claimed end
    if due_at ~= null then
      due_messages_added[#due_messages_added + 1] = due_at
      due_messages_added[#due_messages_added + 1] = a.id
    end
  end
  timeline[#timeline + 1] = position
  timeline[#timeline + 1] = a.id
  local of_channel = channel_added[a.channel]
  if not of_channel then
    of_channel = {}
    channel_added[a.channel] = of_channel
  end
  of_channel[#of_channel + 1] = position
  of_channel[#of_channel + 1] = a.id
  received_added[#received_added + 1] = a.received
  received_added[#received_added + 1] = a.id
  if kind ~= 'automatic' then
    redis.call('XADD', P .. 'events', '*', 'event', kind, 'registration_number', number, 'customer_id', customer,
               'complaint_id', a.id, 'complaint', body)
  end
  local receipt = cjson.encode({status = kind, registration_number = number or null, customer_id = customer,
                                complaint_id = a.id})
  receipts[receipt_field] = receipt
  receipts_written[#receipts_written + 1] = receipt_field
  receipts_written[#receipts_written + 1] = receipt
  return {kind, number or '', customer, added}
end

-- Every complaint's parameters are decoded before anything is written: a call that fails
-- here has changed nothing.
local batch, receipt_fields, identity_keys = {}, {}, {}
for i = 1, #ARGV, 2 do
  local a = cjson.decode(ARGV[i])
  a.receipt_field = a.channel .. "\n" .. a.message_id
  batch[#batch + 1] = {a, ARGV[i + 1]}
  receipt_fields[#receipt_fields + 1] = a.receipt_field
  for _, key in ipairs(a.identities) do identity_keys[#identity_keys + 1] = key end
end
read_fields(P .. 'receipts', receipt_fields, receipts)
read_fields(P .. 'identity', identity_keys, identity)

local timeline_base = redis.call('INCRBY', P .. 'timeline_seq', #batch) - #batch
local replies = {}
for n, item in ipairs(batch) do
  local ok, reply = pcall(submit, item[1], item[2], timeline_base + n)
  if not ok then
    if type(reply) == 'table' then reply = reply.err or cjson.encode(reply) end
    reply = {'error', tostring(reply)}
  end
  replies[n] = reply
end
for name, value in pairs(counters) do
  redis.call('SET', P .. 'counter:' .. name, value)
end
write_all('HSET', P .. 'identity', identities_written)
write_all('ZADD', P .. 'timeline', timeline)
write_all('HSET', P .. 'receipts', receipts_written)
for state, added in pairs(state_added) do
  write_all('ZADD', P .. 'state:' .. state, added)
end
for channel, added in pairs(channel_added) do
  write_all('ZADD', P .. 'channel:' .. channel, added)
end
write_all('ZADD', P .. 'received', received_added)
write_all('ZADD', P .. 'due_messages', due_messages_added)
for name, added in pairs(due_added) do
  write_all('ZADD', P .. 'due:' .. name, added)
  redis.call('SADD', P .. 'due_names', name)
end
return replies
