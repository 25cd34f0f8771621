"""The Redis registry backend: the state in hashes, the queue in a Redis Stream.

``submit()`` is one Lua script (``submit.lua``): one round trip for a batch of complaints,
each atomic across any number of gateway processes and machines. Consumers read the stream ``<prefix>events`` with
consumer groups; see docs/queue.md.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from importlib import resources
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError, WatchError

from gateway.ids import new_id
from gateway.inbound import Receipt
from gateway.registry.base import (
    ACTIONS,
    PURGE_CHUNK,
    STATES,
    Event,
    Registry,
    RegistryError,
    RegistrySettings,
    SubmitPlan,
    anonymise,
    anonymise_action,
    blobs_named,
    due,
    epoch,
    identity_kinds,
    iso,
    stored_json,
    utcnow,
)
from normalizer.schema import Complaint

log = logging.getLogger("complaint_gateway.registry.redis")

#: One registration into the index of deadlines (``RedisRegistry._build_indexes``), unless
#: it is there already (its hash has ``due``). KEYS: its hash, the sorted set of its deadline,
#: ``due_names``; ARGV: the state its deadline was worked out for (-1 when it is no longer
#: that), the deadline's name ('' for none), its instant, the number.
_INDEX_DUE = """
if redis.call('HEXISTS', KEYS[1], 'due') == 1 then return 0 end
if (redis.call('HGET', KEYS[1], 'state') or 'open') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'due', ARGV[2])
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  redis.call('SADD', KEYS[3], ARGV[2])
end
return 1
"""

#: One message into the index of states (``RedisRegistry._build_indexes``): into the sorted
#: set of its registration's state now, at its place in the timeline, unless it is in one of
#: them already. KEYS: the registration's hash, the timeline, then ``state:<state>`` of every
#: state; ARGV: the message id, then the states in the order of those keys.
_INDEX_STATE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == '' then state = 'open' end
local target
for i = 3, #KEYS do
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) then return 0 end
  if ARGV[i - 1] == state then target = KEYS[i] end
end
local position = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not target or not position then return 0 end
redis.call('ZADD', target, position, ARGV[1])
return 1
"""
#: One message into the index of messages' deadlines (``RedisRegistry._build_indexes``) at
#: the deadline that matters for it in its registration's state now, unless it is there
#: already. KEYS: the registration's hash, ``due_messages``; ARGV: the message id, its
#: deadline's instant while open and once claimed ('' for none).
_INDEX_MESSAGE_DUE = """
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
local at = ''
if not state or state == '' or state == 'open' then at = ARGV[2] elseif state == 'claimed' then at = ARGV[3] end
if at == '' then return 0 end
redis.call('ZADD', KEYS[2], at, ARGV[1])
return 1
"""

#: The indexes a registry written by an earlier version may lack, each marked built by the key
#: ``<name>_indexed``: deadlines (``due:<name>``), states (``state:<state>``), channels
#: (``channel:<channel>``), times of receipt (``received``) and messages' deadlines
#: (``due_messages``).
_INDEXES = ("due", "states", "channels", "received", "due_messages")

#: A page of the messages whose score is in a range, in the timeline's order (newest first):
#: KEYS[1] ``received`` (scored by the time of receipt) or ``due_messages`` (by the deadline
#: that matters), KEYS[2] a sorted set scored by timeline positions (the timeline, or a
#: state's or a channel's, whose messages alone are wanted); ARGV: the range's bounds as
#: ``ZRANGE ... BYSCORE`` takes them, the position to page from (exclusive; '' for the
#: newest), how many. Their ids.
_RANGE_PAGE = """
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYSCORE')
local below = tonumber(ARGV[3])
local found, id_at = {}, {}  -- positions (each a message's own), sorted by Lua's own comparison
for first = 1, #ids, 1000 do
  local last = math.min(first + 999, #ids)
  local positions = redis.call('ZMSCORE', KEYS[2], unpack(ids, first, last))
  for i = first, last do
    local position = tonumber(positions[i - first + 1])  -- not in KEYS[2]: false, so nil
    if position and (not below or position < below) then
      found[#found + 1] = position
      id_at[position] = ids[i]
    end
  end
end
table.sort(found)
local page = {}
for i = #found, math.max(1, #found - tonumber(ARGV[4]) + 1), -1 do page[#page + 1] = id_at[found[i]] end
return page
"""

#: A date or overdue filter whose range holds at most this many messages is read from the
#: index of receipt times or of messages' deadlines (``registry.redis.filter_range_max_messages``);
#: a wider one goes down the timeline (or the open and claimed ones), its messages checked one by one.
DEFAULT_FILTER_RANGE_MAX_MESSAGES = 5000

#: Where the script puts the customer id, the registration number and the number the message
#: refers to (kept, or null when refused) in a complaint's JSON: unguessable and never sent
#: (the JSON is cut there), so no field of a message can hold them.
_PLACEHOLDER = secrets.token_hex(16)
_SLOTS = {"customer": "CGCUSTOMER" + _PLACEHOLDER, "number": "CGNUMBER" + _PLACEHOLDER,
          "in_reply_to": "CGINREPLYTO" + _PLACEHOLDER}
_QUOTED_SLOTS = {name: f'"{token}"'.encode() for name, token in _SLOTS.items()}

_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS[1] the attempts (a sorted set of their times), KEYS[2] the lock; ARGV: the limit, the window
# and the lock's duration in ms, a member unique to this attempt. The time is the server's: one
# clock for every process and machine. Returns 0 (counted) or the lock's ms left (not counted).
_ATTEMPT = """
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return left end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[4])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
else
  redis.call('PEXPIRE', KEYS[1], window)
end
return 0
"""


#: Token buckets: each of KEYS a hash (tokens, at in ms), a token taken from each in turn;
#: ARGV per millisecond, burst. Per key, 1 when there was a token.
_TAKE_TOKENS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local taken = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  taken[i] = 0
  if tokens >= 1 then
    tokens = tokens - 1
    taken[i] = 1
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', now)
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate) + 1)
end
return taken
"""

#: How many messages a customer has: its registrations and their later messages (every
#: message with a number adds one). KEYS[1] the customer's list of registrations; ARGV[1] the prefix.
_MESSAGE_COUNT = """
local function message_count(registrations, prefix)
  local numbers = redis.call('LRANGE', registrations, 0, -1)
  local count = #numbers
  for _, number in ipairs(numbers) do
    count = count + redis.call('LLEN', prefix .. 'registration:' .. number .. ':messages')
  end
  return count
end
"""
#: A customer with nothing newer than the purge's cutoff loses identities and name, unless a
#: message came meanwhile (the count changed). KEYS: registrations, identities, recent, identity
#: hash, customer hash; ARGV: prefix, customer id, the count when the purge judged it.
_FORGET_CUSTOMER = _MESSAGE_COUNT + """
if message_count(KEYS[1], ARGV[1]) ~= tonumber(ARGV[3]) then return 0 end
for _, identity in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('HGET', KEYS[4], identity) == ARGV[2] then  -- not moved to another customer by a merge
    redis.call('HDEL', KEYS[4], identity)
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HDEL', KEYS[5], 'name')
return 1
"""

#: A merge suggestion's identities replaced (ARGV: id, the identities read, the new ones),
#: unless they changed meanwhile; the rest of it (its state) as it is now.
_SUGGESTION_IDENTITIES = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local suggestion = cjson.decode(raw)
if suggestion.identities ~= ARGV[2] then return 0 end
suggestion.identities = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(suggestion))
return 1
"""

#: How long the client waits for any reply before it gives up (``registry.redis.socket_timeout_seconds``).
DEFAULT_SOCKET_TIMEOUT_SECONDS = 5.0


def _in_order(first: str, later: list[str]) -> list[str]:
    """A registration's messages in order: its first (``first``, the hash's ``complaint_id``),
    then the list of the later ones (data written by earlier versions holds the first in the
    list too)."""
    return [first, *(i for i in later if i != first)] if first else list(later)


class RedisRegistry(Registry):
    backend = "redis"

    def __init__(self, settings: RegistrySettings, url: str, prefix: str = "cg:", *,
                 socket_timeout_seconds: float = DEFAULT_SOCKET_TIMEOUT_SECONDS,
                 filter_range_max_messages: int = DEFAULT_FILTER_RANGE_MAX_MESSAGES) -> None:
        super().__init__(settings)
        self.url = url
        self.prefix = prefix
        self.socket_timeout = socket_timeout_seconds
        self.filter_range_max_messages = filter_range_max_messages
        self.stream = prefix + "events"
        self._redis: aioredis.Redis | None = None
        self._groups: set[str] = set()
        self._indexing = asyncio.Lock()

    @classmethod
    def from_config(cls, settings: RegistrySettings, section: dict[str, Any]) -> RedisRegistry:
        """From ``registry.redis`` in config.yaml."""
        return cls(settings, section.get("url", "redis://127.0.0.1:6379/0"), section.get("prefix", "cg:"),
                   socket_timeout_seconds=float(section.get("socket_timeout_seconds", DEFAULT_SOCKET_TIMEOUT_SECONDS)),
                   filter_range_max_messages=int(section.get("filter_range_max_messages", DEFAULT_FILTER_RANGE_MAX_MESSAGES)))

    @property
    def r(self) -> aioredis.Redis:
        if self._redis is None:
            raise RegistryError("registry is not open")
        return self._redis

    def _client(self) -> aioredis.Redis:
        """A client for ``self.url``; the cluster backend returns a cluster client instead."""
        return aioredis.Redis.from_url(self.url, decode_responses=True, socket_timeout=self.socket_timeout)

    def _block_slice_ms(self, remaining_ms: float) -> int:
        """How long one blocking read may wait: at most half the socket timeout, so that the
        server's empty answer arrives before the client gives up on it; longer waits are
        made of several such reads."""
        return max(1, int(min(remaining_ms, self.socket_timeout * 500)))

    async def open(self) -> None:
        self._redis = self._client()
        source = resources.files("gateway.registry").joinpath("submit.lua").read_text("utf-8")
        self._submit_script = self._redis.register_script(source)
        self._lock_script = self._redis.register_script(_LOCK)
        self._unlock_script = self._redis.register_script(_UNLOCK)
        self._attempt_script = self._redis.register_script(_ATTEMPT)
        self._take_tokens_script = self._redis.register_script(_TAKE_TOKENS)
        self._message_count_script = self._redis.register_script(_MESSAGE_COUNT + "return message_count(KEYS[1], ARGV[1])")
        self._forget_customer_script = self._redis.register_script(_FORGET_CUSTOMER)
        self._suggestion_identities_script = self._redis.register_script(_SUGGESTION_IDENTITIES)
        self._index_due_script = self._redis.register_script(_INDEX_DUE)
        self._index_state_script = self._redis.register_script(_INDEX_STATE)
        self._range_page_script = self._redis.register_script(_RANGE_PAGE)
        self._index_message_due_script = self._redis.register_script(_INDEX_MESSAGE_DUE)
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise RegistryError(f"redis at {self.url}: {exc}") from exc
        async with self.r.pipeline(transaction=False) as pipe:
            for name in _INDEXES:
                pipe.exists(self.prefix + name + "_indexed")
            missing = [name for name, built in zip(_INDEXES, await pipe.execute()) if not built]
        if missing:
            await self._build_indexes(missing)
        await self._index_earlier_versions_messages()

    async def _build_indexes(self, missing: list[str]) -> None:
        """The indexes (``_INDEXES``) a registry written by an earlier version lacks, from one
        walk over the timeline, ``PURGE_CHUNK`` messages a round trip; then each marked built,
        and the timeline's length walked kept (``indexed_through``).
        What this version indexed meanwhile (a registration opened or moved, a message
        registered) is left as it is; a registration whose state changed between the read and
        the write of its deadline is read again."""
        started, indexed = time.monotonic(), dict.fromkeys(missing, 0)
        await self._load_index_scripts()
        cursor = 0
        while placed := await self._timeline_from(cursor):
            cursor += len(placed)
            for name, count in (await self._index_messages(placed, missing)).items():
                indexed[name] += count
        async with self.r.pipeline(transaction=False) as pipe:
            for name in missing:
                pipe.set(self.prefix + name + "_indexed", "1")
            pipe.set(self.prefix + "indexed_through", cursor)
            await pipe.execute()
        if cursor:
            log.info("registry: indexes built", extra={"indexes": missing, "messages": cursor, **indexed,
                                                      "seconds": round(time.monotonic() - started, 1)})

    async def _index_earlier_versions_messages(self) -> None:
        """Messages an earlier version wrote after the indexes were built, into every index.
        During a rolling upgrade the processes still running the earlier version add their
        messages to the timeline alone. Every message this version writes is in the timeline
        and in ``received`` both, so fewer in ``received`` means some are missing: they are
        looked for from ``indexed_through`` (the timeline's length the last time everything
        before it was indexed), those not in ``received`` indexed, and the length kept. Run when
        the registry opens and before an index is read, so that the inbox's filters and the
        counts per deadline never miss them (one round trip when nothing is missing)."""
        if await self._unindexed_from() is None:
            return
        async with self._indexing:  # one walk at a time in a process (another process's meanwhile does no harm)
            if (through := await self._unindexed_from()) is not None:  # unless the one before did it all
                await self._index_messages_after(through)

    async def _unindexed_from(self) -> int | None:
        """Where to look for messages missing from the indexes (``indexed_through``), or None
        when every message is in ``received``."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.zcard(self.prefix + "timeline")
            pipe.zcard(self.prefix + "received")
            pipe.get(self.prefix + "indexed_through")
            total, indexed, through = await pipe.execute()
        return None if indexed >= total else int(through or 0)

    async def _index_messages_after(self, through: int) -> None:
        """The messages from the ``through``-th on that are not in ``received``, into every index."""
        received = self.prefix + "received"
        started, cursor, found = time.monotonic(), through, 0
        counts = dict.fromkeys(_INDEXES, 0)
        await self._load_index_scripts()
        while placed := await self._timeline_from(cursor):
            cursor += len(placed)
            unindexed = [entry for entry, position in zip(placed, await self.r.zmscore(received, [i for i, _ in placed]))
                         if position is None]
            found += len(unindexed)
            if unindexed:
                for name, count in (await self._index_messages(unindexed, list(_INDEXES))).items():
                    counts[name] += count
        await self.r.set(self.prefix + "indexed_through", cursor)
        if found:
            log.info("registry: messages of an earlier version indexed",
                     extra={"messages": found, "from": through, "to": cursor, **counts,
                            "seconds": round(time.monotonic() - started, 1)})

    async def _timeline_from(self, cursor: int) -> list[tuple[str, float]]:
        """``PURGE_CHUNK`` messages of the timeline from the ``cursor``-th, oldest first, with their positions."""
        return cast(list[tuple[str, float]],
                    await self.r.zrange(self.prefix + "timeline", cursor, cursor + PURGE_CHUNK - 1, withscores=True))

    async def _load_index_scripts(self) -> None:
        """The indexing scripts, loaded before a walk's pipelines run them (a cluster's
        pipelines do not load scripts themselves)."""
        for script in (self._index_state_script, self._index_due_script, self._index_message_due_script):
            await self.r.script_load(script.script)

    async def _index_messages(self, placed: list[tuple[str, float]], names: list[str]) -> dict[str, int]:
        """Messages, as (id, timeline position), into the indexes ``names``: how many entries
        each gained. What is there already is left as it is (see the indexing scripts)."""
        timeline, indexed = self.prefix + "timeline", dict.fromkeys(names, 0)
        state_keys = [self.prefix + "state:" + state for state in STATES]
        ids = [complaint_id for complaint_id, _ in placed]
        async with self.r.pipeline(transaction=False) as pipe:
            for complaint_id in ids:
                pipe.hmget(self.prefix + "message:" + complaint_id, "kind", "number", "body")
            # each body read once, for every index that needs it
            messages = [(kind, number, stored_json(body) if body else None) for kind, number, body in await pipe.execute()]
        if "channels" in names or "received" in names:
            entries = [(complaint_id, position, body) for (complaint_id, position), (_, _, body) in zip(placed, messages) if body]
            indexed.update(await self._index_channels_and_receipts(entries, names))
        if "states" in names:
            async with self.r.pipeline(transaction=False) as pipe:
                for complaint_id, (_, number, _) in zip(ids, messages):
                    if number:
                        await self._index_state_script(keys=[self.prefix + "registration:" + number, timeline, *state_keys],
                                                       args=[complaint_id, *STATES], client=pipe)
                indexed["states"] = sum(await pipe.execute())
        if "due_messages" in names:
            async with self.r.pipeline(transaction=False) as pipe:
                for complaint_id, (kind, number, body) in zip(ids, messages):
                    if number and body and kind != "automatic":
                        at = [due(body.get("deadlines") or {}, state) for state in ("open", "claimed")]
                        await self._index_message_due_script(
                            keys=[self.prefix + "registration:" + number, self.prefix + "due_messages"],
                            args=[complaint_id, *("" if a is None else repr(a[0]) for a in at)], client=pipe)
                indexed["due_messages"] = sum(await pipe.execute())
        if "due" in names:
            indexed["due"] = await self._index_deadlines_of(
                [(number, body.get("deadlines") or {}) for kind, number, body in messages if kind == "new" and number and body])
        return indexed

    async def _index_channels_and_receipts(self, messages: list[tuple[str, float, dict[str, Any]]],
                                           names: list[str]) -> dict[str, int]:
        """Messages, as (id, timeline position, stored complaint), into the indexes of channels
        and of receipt times among ``names``: how many entries each gained (one already there,
        written by this version meanwhile, has the same score and is left as it is)."""
        channels: dict[str, dict[str, float]] = {}
        received: dict[str, float] = {}
        for complaint_id, position, message in messages:
            channels.setdefault(message["channel"], {})[complaint_id] = position
            received[complaint_id] = epoch(message["received_at"])
        added = {}
        async with self.r.pipeline(transaction=False) as pipe:
            if "channels" in names:
                for channel, positions in channels.items():
                    pipe.zadd(self.prefix + "channel:" + channel, positions)
            if "received" in names and received:
                pipe.zadd(self.prefix + "received", received)
            counts = await pipe.execute()
        if "channels" in names:
            added["channels"] = sum(counts[:len(channels)])
        if "received" in names:
            added["received"] = counts[-1] if received else 0
        return added

    async def _index_deadlines_of(self, opened: list[tuple[str, dict[str, str]]]) -> int:
        """Registrations into the index of deadlines, from their numbers and first messages'
        deadlines: how many were indexed (not already there)."""
        waiting = dict(opened)
        indexed = 0
        while waiting:
            numbers = list(waiting)
            async with self.r.pipeline(transaction=False) as pipe:
                for number in numbers:
                    pipe.hget(self.prefix + "registration:" + number, "state")
                states = [state or "open" for state in await pipe.execute()]
            async with self.r.pipeline(transaction=False) as pipe:
                for number, state in zip(numbers, states):
                    current = due(waiting[number], state)
                    name, at = (current[1], current[0]) if current else ("", 0.0)
                    await self._index_due_script(
                        keys=[self.prefix + "registration:" + number, self.prefix + "due:" + name, self.prefix + "due_names"],
                        args=[state, name, repr(at), number], client=pipe)
                results = await pipe.execute()
            indexed += results.count(1)
            waiting = {number: waiting[number] for number, result in zip(numbers, results) if result == -1}
        return indexed

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def healthy(self) -> bool:
        try:
            return bool(await self.r.ping())
        except (RedisError, RegistryError):
            return False

    # -- typed reads (the client decodes every reply to str) ------------------------------
    async def _strings(self, reply: Awaitable[Any] | Any) -> list[str]:
        """A list or set reply (``LRANGE``, ``SMEMBERS``, ``ZRANGE``...) as strings, sorted
        when it was a set."""
        values = await reply
        return sorted(values) if isinstance(values, set) else list(values)

    async def _field(self, key: str, field: str) -> str | None:
        return cast("str | None", await self.r.hget(key, field))

    # -- submit -----------------------------------------------------------------------
    async def _submit(self, plan: SubmitPlan) -> Receipt:
        result = (await self._submit_many([plan]))[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def _submit_many(self, plans: list[SubmitPlan]) -> list[Receipt | Exception]:
        """One call of the submit script for the whole batch: one round trip, each
        complaint atomic, and one complaint's failure returned in its place."""
        now = iso(utcnow())  # the batch is registered in one step
        arguments = [argument for plan in plans for argument in self._submit_args(plan, now)]
        try:
            try:
                replies = await self.r.evalsha(self._submit_script.sha, 1, self.prefix, *arguments)
            except NoScriptError:  # the server lost its scripts (restart, SCRIPT FLUSH): the call did nothing
                await self.r.script_load(self._submit_script.script)
                replies = await self.r.evalsha(self._submit_script.sha, 1, self.prefix, *arguments)
        except RedisError as exc:
            raise RegistryError(f"redis submit: {exc}") from exc
        results: list[Receipt | Exception] = []
        for plan, reply in zip(plans, replies):
            status = reply[0]
            if status == "error":
                results.append(RegistryError(f"redis submit: {reply[1]}"))
            elif status == "duplicate":  # the first delivery's receipt
                first = Receipt.from_dict(orjson.loads(reply[1]))
                results.append(Receipt("duplicate", first.registration_number, first.customer_id, first.complaint_id))
            else:
                _, number, customer, noted = reply
                if noted:  # what the script added to the stored complaint's meta
                    _noted(plan.complaint, noted)
                results.append(Receipt(status, number or None, customer, plan.complaint.id))
        return results

    def _submit_args(self, plan: SubmitPlan, now: str) -> tuple[bytes, bytes]:
        """The script's two arguments: its parameters as JSON, and the complaint's JSON with
        placeholders where the script puts the customer id, the registration number and, for a
        message that names one, the number it refers to (``slots``: their names in order;
        ``cuts``: where each placeholder starts, in bytes, and its length). Bytes both, as the
        client sends them: nothing is decoded to be encoded again."""
        c = plan.complaint
        saved = c.registration_number, c.customer.customer_id, c.in_reply_to
        c.customer.customer_id, c.registration_number = _SLOTS["customer"], _SLOTS["number"]
        if c.in_reply_to is not None:
            c.in_reply_to = _SLOTS["in_reply_to"]
        try:
            body = orjson.dumps(c)  # as Complaint.to_json, in UTF-8
        finally:
            c.registration_number, c.customer.customer_id, c.in_reply_to = saved
        # A JSON string value never holds an unescaped quote, so each token occurs once.
        cuts = sorted((body.index(_QUOTED_SLOTS[name]), name, len(_QUOTED_SLOTS[name])) for name in _SLOTS
                      if name != "in_reply_to" or c.in_reply_to is not None)
        params = {
            "channel": c.channel,
            "message_id": c.channel_message_id,
            "identities": plan.identity_keys,
            "name": c.customer.name,
            "new_customer_id": new_id(),
            "id": c.id,
            "now": now,
            "auto": c.auto_submitted,
            "in_reply_to": c.in_reply_to,
            "received": plan.received_epoch,
            "window": plan.window_seconds,
            "candidates": plan.candidates,
            "hi": plan.simhash >> 32,
            "lo": plan.simhash & 0xFFFFFFFF,
            "digest": plan.digest,
            "max_distance": plan.max_distance,
            "printf": plan.printf,
            "counter": plan.counter,
            "slots": [name for _, name, _ in cuts],
            "cuts": [[at, length] for at, _, length in cuts],
            "meta_empty": not c.meta,
            "due": plan.due_epoch,
            "due_name": plan.due_name,
            "due_claimed": plan.due_claimed_epoch,
        }
        return orjson.dumps(params), body

    # -- reading ----------------------------------------------------------------------
    async def get_message(self, complaint_id: str) -> Complaint | None:
        body = await self.r.hget(self.prefix + "message:" + complaint_id, "body")
        return Complaint.from_json(body) if body else None

    async def get_registration(self, registration_number: str) -> dict[str, Any] | None:
        key = self.prefix + "registration:" + registration_number
        reg = await self.r.hgetall(key)
        if not reg:
            return None
        messages = []
        for complaint_id in await self._message_ids(key, str(reg.get("complaint_id") or "")):
            kind, body = await self.r.hmget(self.prefix + "message:" + complaint_id, ["kind", "body"])
            if body:
                messages.append({"kind": kind, "complaint": json.loads(body)})
        return {
            "registration_number": registration_number,
            "customer_id": reg["customer_id"],
            "created_at": reg["created_at"],
            "messages": messages,
        }

    async def _message_ids(self, key: str, first: str) -> list[str]:
        return _in_order(first, await self._strings(self.r.lrange(key + ":messages", 0, -1)))

    async def _search_candidates(self, *, limit: int, before: str | None, channel: str | None, state: str | None,
                                 since: str | None, until: str | None, overdue_at: float | None = None) -> list[Complaint]:
        """From the smallest index that holds every candidate, each scored by timeline
        positions: the messages of the registrations in a state (``state:<state>``); for the
        overdue filter, those of registrations not closed (``state:open`` and
        ``state:claimed``, merged: a closed registration's messages, and automatic replies,
        are never overdue); or a channel's (``channel:<channel>``). A search for the few
        claimed complaints among a million closed ones looks at those alone. A date filter,
        or the overdue filter, whose range holds at most ``filter_range_max_messages``
        messages is answered from the index of receipt times (``received``) or of messages'
        deadlines (``due_messages``: each message of a registration not closed, at the
        deadline that matters for it now) instead, the smaller range of the two, by one
        script that keeps those in the smallest single index (a state's, a channel's or the
        timeline) and returns a page of them in the timeline's order."""
        sources: list[list[str]] = []
        if state in STATES:
            sources.append([self.prefix + "state:" + state])
        elif overdue_at is not None:
            sources.append([self.prefix + "state:open", self.prefix + "state:claimed"])
        if channel:
            sources.append([self.prefix + "channel:" + channel])
        ranges: list[tuple[str, str, str]] = []  # sorted sets scored otherwise, and the range of scores wanted
        if since or until:
            ranges.append((self.prefix + "received", repr(epoch(since)) if since else "-inf",
                           "(" + repr(epoch(until)) if until else "+inf"))
        if overdue_at is not None:
            ranges.append((self.prefix + "due_messages", "-inf", f"({overdue_at!r}"))
        if not sources and not ranges:
            return await self.list_messages(limit=limit, before=before)
        await self._index_earlier_versions_messages()
        sources.append([self.prefix + "timeline"])
        async with self.r.pipeline(transaction=False) as pipe:
            for keys in sources:
                for key in keys:
                    pipe.zcard(key)
            for key, low, high in ranges:
                pipe.zcount(key, low, high)
            counts = iter(await pipe.execute())
        sizes = [sum(next(counts) for _ in keys) for keys in sources]
        in_range, (key, low, high) = min(((next(counts), found) for found in ranges), default=(0, ("", "", "")))
        if ranges and not in_range:
            return []
        if in_range and in_range <= self.filter_range_max_messages:
            single = min((n for n, keys in enumerate(sources) if len(keys) == 1), key=sizes.__getitem__)
            below = await self._position_before(before)
            if below is None:
                return []
            ids = await self._range_page_script(keys=[key, sources[single][0]],
                                                args=[low, high, "" if below == "+inf" else below, limit])
            return await self._bodies(ids)
        return await self._messages_of(sources[min(range(len(sources)), key=sizes.__getitem__)], limit, before)

    async def list_messages(self, *, limit: int = 50, before: str | None = None) -> list[Complaint]:
        return await self._messages_of([self.prefix + "timeline"], limit, before)

    async def _position_before(self, before: str | None) -> str | None:
        """The timeline position a page from ``before`` stays below, as an exclusive bound
        (``+inf`` from the newest); None when ``before`` is no message."""
        if not before:
            return "+inf"
        score = await self.r.zscore(self.prefix + "timeline", before)
        return None if score is None else repr(score)

    async def _messages_of(self, keys: list[str], limit: int, before: str | None) -> list[Complaint]:
        """Messages newest first from sorted sets scored by timeline positions (the timeline,
        states' or a channel's), from the one before ``before``: a page of each, merged."""
        below = await self._position_before(before)
        if below is None:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrevrangebyscore(key, below if below == "+inf" else "(" + below, "-inf", start=0, num=limit,
                                      withscores=True)
            pages = await pipe.execute()
        return await self._bodies([i for i, _ in sorted((entry for page in pages for entry in page),
                                                        key=lambda entry: -entry[1])[:limit]])

    async def _bodies(self, ids: list[str]) -> list[Complaint]:
        """The messages of ``ids``, in that order, in one round trip."""
        async with self.r.pipeline(transaction=False) as pipe:
            for complaint_id in ids:
                pipe.hget(self.prefix + "message:" + complaint_id, "body")
            bodies = await pipe.execute()
        return [Complaint.from_json(body) for body in bodies if body]

    async def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        key = self.prefix + "customer:" + customer_id
        row = await self.r.hgetall(key)
        if not row:
            return None
        members, frontier = [customer_id], [customer_id]
        while frontier:
            found: list[str] = []
            for cid in frontier:
                found += await self._strings(self.r.smembers(self.prefix + "customer:" + cid + ":merged_from"))
            frontier = [f for f in found if f not in members]
            members += frontier
        keys: list[str] = []
        numbers: list[tuple[str, str]] = []
        for cid in members:
            keys += await self._strings(self.r.smembers(self.prefix + "customer:" + cid + ":identities"))
            for number in await self._strings(self.r.lrange(self.prefix + "customer:" + cid + ":registrations", 0, -1)):
                numbers.append((await self._field(self.prefix + "registration:" + number, "created_at") or "", number))
        return {
            "customer_id": customer_id,
            "name": row.get("name"),
            "created_at": row.get("created_at"),
            "merged_into": row.get("merged_into") or None,
            "merged_from": members[1:],
            "identities": [dict(zip(("kind", "value"), k.split(":", 1))) for k in keys],
            "registrations": [n for _, n in sorted(numbers)],
        }

    async def merge_suggestions(self) -> list[dict[str, Any]]:
        rows = [json.loads(v) for v in (await self.r.hgetall(self.prefix + "merge_suggestions")).values()]
        return sorted((r for r in rows if r.get("state", "open") == "open"), key=lambda r: r["created_at"])

    # -- operators' actions -----------------------------------------------------------
    async def registration_state(self, registration_number: str) -> dict[str, Any] | None:
        return (await self._registration_states([registration_number])).get(registration_number)

    async def _registration_states(self, numbers: list[str]) -> dict[str, dict[str, Any]]:
        """In two round trips, however many: the registrations' hashes and lists of later
        messages, then each message's kind."""
        keys = [self.prefix + "registration:" + number for number in numbers]
        async with self.r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
                pipe.lrange(key + ":messages", 0, -1)
            replies = await pipe.execute()
        found = []  # (number, its hash, its messages in order)
        for number, row, later in zip(numbers, replies[0::2], replies[1::2]):
            if row:
                found.append((number, row, _in_order(str(row.get("complaint_id") or ""), later)))
        async with self.r.pipeline(transaction=False) as pipe:
            for _, _, ids in found:
                for complaint_id in ids:
                    pipe.hget(self.prefix + "message:" + complaint_id, "kind")
            kinds = iter(await pipe.execute())
        return {number: {"state": row.get("state", "open"), "assigned_to": row.get("assigned_to") or None,
                         "updated_at": row.get("updated_at"), "customer_id": row["customer_id"],
                         "kinds": {complaint_id: next(kinds) for complaint_id in ids},
                         "acknowledgement_failed": row.get("acknowledgement_failed") == "1"}
                for number, row, ids in found}

    async def apply_action(self, registration_number: str, action: str, operator: str,
                           details: dict[str, Any] | None = None) -> dict[str, Any]:
        transition = ACTIONS.get(action)
        if transition is None:
            raise ValueError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
        key = self.prefix + "registration:" + registration_number
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key, key + ":messages")  # a message added meanwhile would miss the move below
                    row = await pipe.hgetall(key)
                    if not row:
                        raise KeyError(registration_number)
                    state, assigned = transition(row.get("state", "open"), row.get("assigned_to") or None, operator)
                    current: tuple[float, str] | None = None
                    positions: dict[str, float] = {}
                    message_due: dict[str, float] = {}
                    changed = state != row.get("state", "open")
                    if changed:  # the deadlines that matter, the index of states and the messages' deadlines change
                        first = str(row["complaint_id"])
                        ids = _in_order(first, await self._strings(pipe.lrange(key + ":messages", 0, -1)))
                        scores = await pipe.zmscore(self.prefix + "timeline", ids)
                        positions = {i: score for i, score in zip(ids, scores) if score is not None}
                        async with self.r.pipeline(transaction=False) as read:  # bodies never change their deadlines
                            for complaint_id in ids:
                                read.hget(self.prefix + "message:" + complaint_id, "body")
                            bodies = dict(zip(ids, await read.execute()))
                        deadlines = {i: (stored_json(body).get("deadlines") or {}) if body else {} for i, body in bodies.items()}
                        current = due(deadlines[first], state)
                        message_due = {i: at[0] for i in positions if (at := due(deadlines[i], state)) is not None}
                    now = iso(utcnow())
                    record = {"action": action, "operator": operator, "at": now, "registration_number": registration_number,
                              "state": state, "assigned_to": assigned, "details": details or {}}
                    encoded = json.dumps(record, ensure_ascii=False)
                    pipe.multi()
                    pipe.hset(key, mapping={"state": state, "assigned_to": assigned or "", "updated_at": now})
                    if action == "acknowledgement_failed":  # stays marked: registration_state says so (the inbox's filter)
                        pipe.hset(key, "acknowledgement_failed", "1")
                    if changed:
                        self._move_due(pipe, registration_number, str(row.get("due") or ""), current)
                        for other in STATES:  # the registration's messages into the sorted set of its new state
                            if other != state and positions:
                                pipe.zrem(self.prefix + "state:" + other, *positions)
                        if positions:
                            pipe.zadd(self.prefix + "state:" + state, positions)
                            pipe.zrem(self.prefix + "due_messages", *positions)
                        if message_due:
                            pipe.zadd(self.prefix + "due_messages", message_due)
                    pipe.rpush(key + ":actions", encoded)
                    pipe.lpush(self.prefix + "audit", encoded)
                    pipe.xadd(self.stream, {"event": action, "registration_number": registration_number,
                                            "customer_id": row["customer_id"], "complaint_id": "", "action": encoded})
                    await pipe.execute()
                    return record
                except WatchError:
                    continue

    def _move_due(self, pipe: Any, number: str, old_name: str, current: tuple[float, str] | None) -> None:
        """Queue on ``pipe`` what moves a registration in the index of deadlines: out of its
        deadline's sorted set ``due:<name>`` and into the one of ``current`` (when not None);
        its hash's ``due`` field names the set it is in."""
        key = self.prefix + "registration:" + number
        if old_name:
            pipe.zrem(self.prefix + "due:" + old_name, number)
        if current is not None:
            pipe.zadd(self.prefix + "due:" + current[1], {number: current[0]})
            pipe.sadd(self.prefix + "due_names", current[1])
        pipe.hset(key, "due", current[1] if current is not None else "")

    async def registrations_due(self, now: float) -> dict[str, dict[str, int]]:
        await self._index_earlier_versions_messages()
        names = await self._strings(self.r.smembers(self.prefix + "due_names"))
        async with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(self.prefix + "due:" + name)
                pipe.zcount(self.prefix + "due:" + name, "-inf", f"({now!r}")
                pipe.zcount(self.prefix + "due:" + name, repr(now), f"({now + self.settings.due_soon_seconds!r}")
            counts = await pipe.execute()
        return {name: {"pending": pending, "overdue": overdue, "due_soon": soon}
                for name, pending, overdue, soon in zip(names, counts[0::3], counts[1::3], counts[2::3]) if pending}

    async def actions(self, registration_number: str) -> list[dict[str, Any]]:
        raw = await self.r.lrange(self.prefix + "registration:" + registration_number + ":actions", 0, -1)
        return [json.loads(r) for r in raw]

    async def merge_customers(self, source: str, target: str, operator: str, suggestion_id: str | None = None) -> str:
        if source == target:
            raise ValueError("a customer cannot be merged into itself")
        keys = [self.prefix + "customer:" + source, self.prefix + "customer:" + target]
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*keys)
                    for cid, key in zip((source, target), keys):
                        row = cast("dict[str, str]", await pipe.hgetall(key))
                        if not row:
                            raise KeyError(cid)
                        if row.get("merged_into"):
                            raise ValueError(f"customer {cid} is already merged into {row['merged_into']}")
                    suggestion = None
                    if suggestion_id:
                        raw = await pipe.hget(self.prefix + "merge_suggestions", suggestion_id)
                        suggestion = json.loads(raw) if raw else None
                    merge_id, now = new_id(), iso(utcnow())
                    record = {"action": "customers_merged", "operator": operator, "at": now, "merge_id": merge_id,
                              "source": source, "target": target, "suggestion_id": suggestion_id}
                    entry = {"id": merge_id, "source": source, "target": target, "operator": operator,
                             "suggestion_id": suggestion_id, "created_at": now, "undone_at": None, "undone_by": None}
                    pipe.multi()
                    pipe.hset(keys[0], "merged_into", target)
                    pipe.sadd(keys[1] + ":merged_from", source)
                    pipe.hset(self.prefix + "merges", merge_id, json.dumps(entry))
                    pipe.sadd(keys[0] + ":merges", merge_id)
                    pipe.sadd(keys[1] + ":merges", merge_id)
                    if suggestion is not None:
                        suggestion["state"] = "accepted"
                        pipe.hset(self.prefix + "merge_suggestions", suggestion_id, json.dumps(suggestion))
                    encoded = json.dumps(record)
                    pipe.lpush(self.prefix + "audit", encoded)
                    pipe.xadd(self.stream, {"event": "customers_merged", "registration_number": "", "customer_id": target,
                                            "complaint_id": "", "merge": encoded})
                    await pipe.execute()
                    return merge_id
                except WatchError:
                    continue

    async def unmerge(self, merge_id: str, operator: str) -> None:
        raw = await self.r.hget(self.prefix + "merges", merge_id)
        if raw is None:
            raise KeyError(merge_id)
        entry = json.loads(raw)
        if entry["undone_at"]:
            raise ValueError(f"merge {merge_id} was already undone")
        now = iso(utcnow())
        entry.update(undone_at=now, undone_by=operator)
        record = {"action": "customers_unmerged", "operator": operator, "at": now, "merge_id": merge_id,
                  "source": entry["source"], "target": entry["target"]}
        encoded = json.dumps(record)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hdel(self.prefix + "customer:" + entry["source"], "merged_into")
            pipe.srem(self.prefix + "customer:" + entry["target"] + ":merged_from", entry["source"])
            pipe.hset(self.prefix + "merges", merge_id, json.dumps(entry))
            pipe.lpush(self.prefix + "audit", encoded)
            pipe.xadd(self.stream, {"event": "customers_unmerged", "registration_number": "", "customer_id": entry["target"],
                                    "complaint_id": "", "merge": encoded})
            await pipe.execute()

    async def reject_suggestion(self, suggestion_id: str, operator: str) -> None:
        raw = await self.r.hget(self.prefix + "merge_suggestions", suggestion_id)
        if raw is None or json.loads(raw).get("state", "open") != "open":
            raise KeyError(suggestion_id)
        suggestion = json.loads(raw)
        suggestion["state"] = "rejected"
        record = {"action": "suggestion_rejected", "operator": operator, "at": iso(utcnow()), "suggestion_id": suggestion_id}
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(self.prefix + "merge_suggestions", suggestion_id, json.dumps(suggestion))
            pipe.lpush(self.prefix + "audit", json.dumps(record))
            await pipe.execute()

    async def merges(self, customer_id: str) -> list[dict[str, Any]]:
        ids = await self.r.smembers(self.prefix + "customer:" + customer_id + ":merges")
        rows = [json.loads(v) for v in await self.r.hmget(self.prefix + "merges", sorted(ids)) if v] if ids else []
        return sorted(rows, key=lambda r: r["created_at"])

    async def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        return [json.loads(r) for r in await self.r.lrange(self.prefix + "audit", 0, limit - 1)]

    # -- queue ------------------------------------------------------------------------
    async def _ensure_group(self, group: str) -> None:
        if group not in self._groups:
            await self.create_group(group)

    async def create_group(self, group: str, *, at_end: bool = False) -> None:
        try:
            await self.r.xgroup_create(self.stream, group, id="$" if at_end else "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(group)

    async def delete_group(self, group: str) -> None:
        await self.r.xgroup_destroy(self.stream, group)
        self._groups.discard(group)

    async def read_events(self, group: str, consumer: str, count: int = 10, block_ms: int = 0) -> list[Event]:
        await self._ensure_group(group)
        idle_ms = int(self.settings.visibility_timeout_seconds * 1000)
        deadline = time.monotonic() + block_ms / 1000
        while True:
            _, claimed, _ = await self.r.xautoclaim(self.stream, group, consumer, idle_ms, "0-0", count=count)
            events = [self._event(i, f) for i, f in claimed if f]
            if events:
                counts = {p["message_id"]: p["times_delivered"] for p in await self.r.xpending_range(
                    self.stream, group, min=events[0].id, max=events[-1].id, count=len(events) * 2)}
                for event in events:
                    event.deliveries = int(counts.get(event.id, 1))
            remaining_ms = (deadline - time.monotonic()) * 1000
            if len(events) < count:
                block = self._block_slice_ms(remaining_ms) if not events and remaining_ms > 0 else None
                fresh = await self.r.xreadgroup(group, consumer, {self.stream: ">"}, count=count - len(events), block=block)
                for _, entries in cast("list[tuple[str, list[tuple[str, dict[str, str]]]]]", fresh or []):
                    events.extend(self._event(i, f) for i, f in entries)
            if events or time.monotonic() >= deadline:
                return events

    @staticmethod
    def _event(event_id: str, fields: dict[str, str]) -> Event:
        payload: dict[str, Any] = {name: stored_json(fields[name]) for name in ("complaint", "action", "merge") if name in fields}
        return Event(event_id, fields["event"], fields.get("registration_number") or None,
                     fields.get("customer_id") or None, fields.get("complaint_id") or None, payload)

    async def ack_events(self, group: str, ids: list[str]) -> int:
        if not ids:
            return 0
        return int(await self.r.xack(self.stream, group, *ids))

    async def queue_length(self) -> int:
        return int(await self.r.xlen(self.stream))

    # -- dead letters -----------------------------------------------------------------
    async def add_dead_letter(self, record: dict[str, Any], reason: str) -> str:
        dead_letter_id = new_id()
        entry = {"id": dead_letter_id, "channel": record.get("channel", "?"), "reason": reason, "record": record,
                 "created_at": iso(utcnow()), "resolved_at": None, "receipt": None}
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(self.prefix + "dead_letters", dead_letter_id, json.dumps(entry, ensure_ascii=False))
            pipe.zadd(self.prefix + "dead_letters:open", {dead_letter_id: time.time()})
            await pipe.execute()
        return dead_letter_id

    async def list_dead_letters(self, include_resolved: bool = False) -> list[dict[str, Any]]:
        rows = [json.loads(v) for v in (await self.r.hgetall(self.prefix + "dead_letters")).values()]
        if not include_resolved:
            rows = [r for r in rows if not r["resolved_at"]]
        return sorted(rows, key=lambda r: r["created_at"])

    async def resolve_dead_letter(self, dead_letter_id: str, receipt: Receipt) -> None:
        raw = await self.r.hget(self.prefix + "dead_letters", dead_letter_id)
        if raw is None:
            raise RegistryError(f"no dead letter {dead_letter_id}")
        entry = json.loads(raw)
        entry.update(resolved_at=iso(utcnow()), receipt=receipt.to_dict())
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(self.prefix + "dead_letters", dead_letter_id, json.dumps(entry, ensure_ascii=False))
            pipe.zrem(self.prefix + "dead_letters:open", dead_letter_id)
            await pipe.execute()

    # -- retention --------------------------------------------------------------------
    async def purge(self, before: str, recheck_blobs: Iterable[str] = ()) -> dict[str, Any]:
        """One pass over the timeline, ``PURGE_CHUNK`` messages a round trip: old ones are
        anonymised; newer ones tell which customers keep their identities and which blobs
        are still named."""
        now = iso(utcnow())
        freed, named, newer = set(recheck_blobs), set(), set()
        touched: dict[str, int] = {}  # customer -> its count of messages when first touched
        for script in (self._message_count_script, self._forget_customer_script):
            await self.r.script_load(script.script)  # a cluster's pipelines do not load scripts themselves
        purged = 0
        timeline = self.prefix + "timeline"
        cursor = 0
        while ids := await self._strings(self.r.zrange(timeline, cursor, cursor + PURGE_CHUNK - 1)):
            cursor += len(ids)
            keys = [self.prefix + "message:" + complaint_id for complaint_id in ids]
            async with self.r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, "body")
                bodies = await pipe.execute()
            changed, first_touched = {}, []
            for key, raw in zip(keys, bodies):
                if not raw:
                    continue
                body = stored_json(raw)
                if body["received_at"] >= before:
                    newer.add(body["customer"]["customer_id"])
                    named |= blobs_named(raw)
                    continue
                if (body.get("meta") or {}).get("purged_at"):
                    continue
                kept, blobs = anonymise(body, now)
                freed |= blobs
                purged += 1
                customer_id = kept["customer"]["customer_id"]
                if customer_id and customer_id not in touched:
                    first_touched.append(customer_id)
                    touched[customer_id] = -1
                changed[key] = json.dumps(kept, ensure_ascii=False)
            if changed:
                async with self.r.pipeline(transaction=False) as pipe:
                    for customer_id in first_touched:  # what each has now: a message after this changes it
                        await self._message_count_script(keys=[self.prefix + "customer:" + customer_id + ":registrations"],
                                                   args=[self.prefix], client=pipe)
                    for key, value in changed.items():
                        pipe.hset(key, "body", value)
                    counts = await pipe.execute()
                touched.update(zip(first_touched, counts))
        # customers with nothing newer (as merged: all its parts together) lose their identities
        # and name, unless one writes meanwhile
        current = await self._merged_customers()
        active = {current(customer_id) for customer_id in newer}
        stale, candidates = 0, [(c, n) for c, n in touched.items() if current(c) not in active]
        for start in range(0, len(candidates), PURGE_CHUNK):
            async with self.r.pipeline(transaction=False) as pipe:
                for customer_id, count in candidates[start:start + PURGE_CHUNK]:
                    key = self.prefix + "customer:" + customer_id
                    await self._forget_customer_script(
                        keys=[key + ":registrations", key + ":identities", self.prefix + "recent:" + customer_id,
                              self.prefix + "identity", key], args=[self.prefix, customer_id, count], client=pipe)
                stale += sum(await pipe.execute())
        dead = 0
        for entry in await self.list_dead_letters(include_resolved=True):
            if entry["created_at"] < before:
                dead += await self.r.hdel(self.prefix + "dead_letters", entry["id"])
                await self.r.zrem(self.prefix + "dead_letters:open", entry["id"])
            else:
                named |= blobs_named(json.dumps(entry["record"]))
        cutoff_ms = int(datetime.fromisoformat(before.replace("Z", "+00:00")).timestamp() * 1000)
        events = await self.r.xtrim(self.stream, minid=f"{cutoff_ms}-0", approximate=False)
        actions = await self._purge_actions(before, now)
        suggestions = 0
        for suggestion_id, raw in (await self.r.hgetall(self.prefix + "merge_suggestions")).items():
            suggestion = json.loads(raw)
            kinds = identity_kinds(suggestion.get("identities") or "")
            if suggestion.get("created_at", "") < before and kinds is not None:
                suggestions += await self._suggestion_identities_script(  # its state may change meanwhile: kept
                    keys=[self.prefix + "merge_suggestions"], args=[suggestion_id, suggestion["identities"], kinds])
        return {"messages": purged, "customers": stale, "dead_letters": dead, "events": int(events),
                "actions": actions, "merge_suggestions": suggestions, "blobs": sorted(freed - named)}

    async def _merged_customers(self) -> Callable[[str], str]:
        """The customer a customer is merged into now (following merges of merges), by the
        merges not undone."""
        into = {entry["source"]: entry["target"] for entry in map(json.loads, (await self.r.hgetall(self.prefix + "merges")).values())
                if not entry.get("undone_at")}

        def current(customer_id: str) -> str:
            seen = {customer_id}
            while customer_id in into and into[customer_id] not in seen:
                customer_id = into[customer_id]
                seen.add(customer_id)
            return customer_id

        return current

    async def _purge_actions(self, before: str, now: str) -> int:
        """The texts and errors of actions taken before ``before``, out of the audit list and
        out of each registration's list of actions (which hold the same records). The audit
        list grows at its head only, so an action's place counted from the tail never
        changes: each purge goes on from the place where the last one stopped (``audit:purged``,
        the number of actions from the tail it went past), ``PURGE_CHUNK`` at a time, and stops
        at the first action not older than ``before`` (one recorded later by a process whose
        clock was behind waits for the next purge)."""
        audit, mark = self.prefix + "audit", self.prefix + "audit:purged"
        past = int(await self.r.get(mark) or 0)
        changed = 0
        while chunk := await self._strings(self.r.lrange(audit, -past - PURGE_CHUNK, -past - 1)):
            for raw in reversed(chunk):  # oldest first
                record = json.loads(raw)
                if record.get("at", "") >= before:
                    await self.r.set(mark, past)
                    return changed
                kept = anonymise_action(record, now)
                if kept is not None:
                    new = json.dumps(kept, ensure_ascii=False)
                    await self.r.lset(audit, -past - 1, new)
                    number = record.get("registration_number")
                    if number:  # a registration's list only grows at its tail: an index found stays right
                        key = self.prefix + "registration:" + number + ":actions"
                        position = await self.r.lpos(key, raw)
                        if isinstance(position, int):
                            await self.r.lset(key, position, new)
                    changed += 1
                past += 1
            await self.r.set(mark, past)
            if len(chunk) < PURGE_CHUNK:
                break
        return changed

    # -- adapter state ----------------------------------------------------------------
    async def get_cursor(self, name: str) -> str | None:
        value = await self.r.get(self.prefix + "cursor:" + name)
        return str(value) if value is not None else None

    async def set_cursor(self, name: str, value: str) -> None:
        await self.r.set(self.prefix + "cursor:" + name, value)

    async def get_entries(self, name: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in (await self.r.hgetall(self.prefix + "entries:" + name)).items()}

    async def set_entry(self, name: str, key: str, value: str | None) -> None:
        if value is None:
            await self.r.hdel(self.prefix + "entries:" + name, key)
        else:
            await self.r.hset(self.prefix + "entries:" + name, key, value)

    async def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return bool(await self._lock_script(keys=[self.prefix + "lock:" + name], args=[owner, int(ttl_seconds * 1000)]))

    async def release_lock(self, name: str, owner: str) -> None:
        await self._unlock_script(keys=[self.prefix + "lock:" + name], args=[owner])

    async def count_attempt(self, name: str, limit: int, window_seconds: float, lock_seconds: float) -> float:
        keys = [self.prefix + "attempts:" + name, self.prefix + "lockout:" + name]
        try:
            left = await self._attempt_script(keys=keys, args=[limit, max(1, int(window_seconds * 1000)),
                                                               max(1, int(lock_seconds * 1000)), new_id()])
        except RedisError as exc:
            raise RegistryError(f"redis attempts: {exc}") from exc
        return int(left) / 1000

    async def take_tokens(self, names: list[str], per_second: float, burst: float) -> list[bool]:
        try:
            taken = await self._take_tokens_script(keys=[self.prefix + "bucket:" + name for name in names],
                                                   args=[per_second / 1000, burst])
        except RedisError as exc:
            raise RegistryError(f"redis buckets: {exc}") from exc
        return [bool(t) for t in taken]

    async def clear_attempts(self, name: str) -> None:
        try:
            await self.r.delete(self.prefix + "attempts:" + name, self.prefix + "lockout:" + name)
        except RedisError as exc:
            raise RegistryError(f"redis attempts: {exc}") from exc


def _noted(complaint: Complaint, noted: str) -> None:
    """What the script wrote into the stored complaint's meta (``"key":value`` pairs), in the
    complaint the door holds too: the SQLite registry changes it the same way."""
    added = orjson.loads("{" + noted + "}")
    complaint.meta.update(added)
    if "in_reply_to_rejected" in added:
        complaint.in_reply_to = None
