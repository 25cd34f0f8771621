"""The Redis Cluster registry backend: the state on one hash slot, the queue partitioned by customer.

Every state key shares the prefix's hash tag, so the Redis backend's atomic submit runs unchanged on
the master owning that slot and appends events to an outbox stream there. A relay copies outbox
entries, in order and under their own ids, into partition streams spread over all masters; one
customer's events always land in one partition. See docs/queue.md, "Redis Cluster".
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from gateway.ids import new_id
from gateway.registry.base import Event, RegistryError, RegistrySettings
from gateway.registry.redis import DEFAULT_FILTER_RANGE_MAX_MESSAGES, DEFAULT_SOCKET_TIMEOUT_SECONDS, RedisRegistry

log = logging.getLogger("complaint_gateway.registry.cluster")

# KEYS[1] a partition stream; ARGV: per entry its id, its field count, then the fields. Adds, in
# order, only the entries newer than the stream's last id, so relaying an entry twice adds it once.
_APPEND = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local last_ms, last_seq = 0, 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last_ms, last_seq = parse(info[i + 1]) end
  end
end
local added, i = 0, 1
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  local ms, seq = parse(ARGV[i])
  if ms > last_ms or (ms == last_ms and seq > last_seq) then
    redis.call('XADD', KEYS[1], ARGV[i], unpack(ARGV, i + 2, i + 1 + n))
    last_ms, last_seq, added = ms, seq, added + 1
  end
  i = i + 2 + n
end
return added
"""

# KEYS[1] the relay cursor, KEYS[2] the outbox; ARGV[1] the newest relayed id, ARGV[2] how long (ms)
# relayed entries stay in the outbox. The cursor only moves forward. Returns the cursor.
_ADVANCE = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local cursor = redis.call('GET', KEYS[1]) or '0-0'
local cms, cseq = parse(cursor)
local nms, nseq = parse(ARGV[1])
if nms > cms or (nms == cms and nseq > cseq) then
  redis.call('SET', KEYS[1], ARGV[1])
  cursor, cms = ARGV[1], nms
end
local horizon = cms - tonumber(ARGV[2])
if horizon > 0 then redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f-0', horizon)) end
return cursor
"""


def hash_tag(prefix: str) -> str | None:
    """The hash tag Redis Cluster would use for keys starting with ``prefix`` (``{cg}:`` -> ``cg``)."""
    start = prefix.find("{")
    end = prefix.find("}", start + 1) if start >= 0 else -1
    return prefix[start + 1:end] if start >= 0 and end > start + 1 else None


def partition_keys(base: str, partitions: int) -> list[str]:
    """One stream name per partition, each pinned by its hash tag to an evenly spaced slot range,
    so a cluster whose slots are split evenly (``--cluster create``, ``rebalance``) spreads them
    evenly over its masters: ``cg:q3:{q3.17}:events``."""
    keys = []
    for n in range(partitions):
        low, high = n * REDIS_CLUSTER_HASH_SLOTS // partitions, (n + 1) * REDIS_CLUSTER_HASH_SLOTS // partitions
        k = 0
        while not low <= key_slot(f"q{n}.{k}".encode()) < high:
            k += 1
        keys.append(f"{base}q{n}:{{q{n}.{k}}}:events")
    return keys


def _stream_order(event: Event) -> tuple[int, int]:
    ms, _, seq = event.id.partition(":")[2].partition("-")
    return int(ms), int(seq)


class RedisClusterRegistry(RedisRegistry):
    """The Redis backend on a Redis Cluster, with the queue in ``partitions`` per-customer streams."""

    backend = "redis_cluster"

    def __init__(self, settings: RegistrySettings, url: str | None = None, prefix: str = "{cg}:", *,
                 startup_nodes: Sequence[str] = (), partitions: int = 16, relay_batch: int = 500,
                 relay_lock_seconds: float = 10.0, outbox_keep_seconds: float = 60.0,
                 socket_timeout_seconds: float = DEFAULT_SOCKET_TIMEOUT_SECONDS,
                 filter_range_max_messages: int = DEFAULT_FILTER_RANGE_MAX_MESSAGES) -> None:
        if not url and not startup_nodes:
            raise RegistryError("registry.redis_cluster: give url or startup_nodes")
        if hash_tag(prefix) is None:
            raise RegistryError(f"registry.redis_cluster.prefix {prefix!r} needs a hash tag such as '{{cg}}:' "
                                "so that every registry key lives on one slot")
        if not 1 <= partitions <= 1024:
            raise RegistryError("registry.redis_cluster.partitions must be between 1 and 1024")
        super().__init__(settings, url or "", prefix, socket_timeout_seconds=socket_timeout_seconds,
                         filter_range_max_messages=filter_range_max_messages)
        self.startup_nodes = list(startup_nodes)
        self.partitions = partitions
        self.relay_batch = relay_batch
        self.relay_lock_seconds = relay_lock_seconds
        self.outbox_keep_ms = int(outbox_keep_seconds * 1000)
        self.partition_keys = partition_keys(prefix.replace("{", "").replace("}", ""), partitions)
        self.cursor_key = prefix + "relay:cursor"
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{new_id()}"
        self._relay_task: asyncio.Task[None] | None = None
        self._rotation = 0

    @classmethod
    def from_config(cls, settings: RegistrySettings, section: dict[str, Any]) -> RedisClusterRegistry:
        """From ``registry.redis_cluster`` in config.yaml."""
        limits = ("partitions", "relay_batch", "relay_lock_seconds", "outbox_keep_seconds", "socket_timeout_seconds",
                  "filter_range_max_messages")
        return cls(settings, section.get("url"), section.get("prefix", "{cg}:"),
                   startup_nodes=section.get("startup_nodes") or (), **{k: section[k] for k in limits if k in section})

    def partition_of(self, customer_id: str) -> int:
        """The partition of a customer: stable across processes, machines and restarts."""
        return zlib.crc32(customer_id.encode()) % self.partitions

    # -- life cycle -------------------------------------------------------------------
    def _client(self) -> aioredis.Redis:
        nodes = []
        for node in self.startup_nodes:
            host, _, port = node.rpartition(":")
            nodes.append(ClusterNode(host.strip("[]"), int(port)))
        if self.url:
            client = RedisCluster.from_url(self.url, startup_nodes=nodes or None, decode_responses=True,
                                           socket_timeout=self.socket_timeout)
        else:
            client = RedisCluster(startup_nodes=nodes, decode_responses=True, socket_timeout=self.socket_timeout)
        # the cluster client speaks the same commands; only the connection handling differs
        return cast(aioredis.Redis, client)

    async def open(self) -> None:
        try:
            await super().open()
        except (RedisError, RedisClusterException) as exc:  # the cluster client checks the nodes while connecting
            raise RegistryError(f"redis cluster at {self.url or self.startup_nodes}: {exc}") from exc
        self._append_script = self.r.register_script(_APPEND)
        self._advance_script = self.r.register_script(_ADVANCE)
        self._relay_task = asyncio.get_running_loop().create_task(self._relay_loop(), name="registry-relay")

    async def close(self) -> None:
        if self._relay_task is not None:
            task, self._relay_task = self._relay_task, None
            while not task.done():  # the cluster client can lose a cancellation while it connects: repeat it
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            with contextlib.suppress(RedisError, RegistryError):
                await self.release_lock("relay", self._owner)
        await super().close()

    # -- the relay: outbox -> partitions ----------------------------------------------
    async def relay(self) -> str:
        """Copy every outbox entry past the cursor into its partition; returns the new cursor.

        Safe to run in several processes at once: an entry is added under its outbox id and
        only if newer than its partition's last id, so nothing is added twice or out of order.
        """
        cursor = str(await self.r.get(self.cursor_key) or "0-0")
        while True:
            entries: list[tuple[str, dict[str, str]]] = cast(Any, await self.r.xrange(
                self.stream, min=f"({cursor}", max="+", count=self.relay_batch))
            if not entries:
                return cursor
            batches: dict[int, list[str]] = {}
            for entry_id, fields in entries:
                args = batches.setdefault(self.partition_of(fields.get("customer_id") or ""), [])
                args += [entry_id, str(2 * len(fields)), *(x for pair in fields.items() for x in pair)]
            results = await asyncio.gather(
                *(self._append_script(keys=[self.partition_keys[n]], args=args) for n, args in batches.items()),
                return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise RegistryError(f"redis cluster relay: {result}") from result
            cursor = str(await self._advance_script(keys=[self.cursor_key, self.stream],
                                                    args=[entries[-1][0], self.outbox_keep_ms]))
            if len(entries) < self.relay_batch:
                return cursor

    async def _relay_loop(self) -> None:
        """In every process: whoever holds the ``relay`` lock relays as soon as the outbox grows."""
        ttl, backoff = self.relay_lock_seconds, 0.1
        while True:
            try:
                if await self.acquire_lock("relay", self._owner, ttl):
                    cursor = await self.relay()
                    await self.r.xread({self.stream: cursor}, count=1, block=self._block_slice_ms(ttl * 1000 / 3))
                else:
                    await asyncio.sleep(ttl / 3)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (the relay outlives any outage; consumers relay meanwhile)
                log.warning("registry relay failed; retrying", extra={"error": repr(exc), "retry_in": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, ttl)

    # -- queue ------------------------------------------------------------------------
    async def create_group(self, group: str, *, at_end: bool = False) -> None:
        if at_end:
            await self.relay()  # what was submitted before this call is not "next"

        async def create(key: str) -> None:
            try:
                await self.r.xgroup_create(key, group, id="$" if at_end else "0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await asyncio.gather(*(create(key) for key in self.partition_keys))
        self._groups.add(group)

    async def delete_group(self, group: str) -> None:
        async def destroy(key: str) -> None:
            with contextlib.suppress(ResponseError):  # a partition that was never created
                await self.r.xgroup_destroy(key, group)

        await asyncio.gather(*(destroy(key) for key in self.partition_keys))
        self._groups.discard(group)

    async def read_events(self, group: str, consumer: str, count: int = 10, block_ms: int = 0) -> list[Event]:
        """Up to ``count`` events from all partitions, in outbox order; stale deliveries first."""
        await self._ensure_group(group)
        deadline = time.monotonic() + block_ms / 1000.0
        while True:
            cursor = await self.relay()
            start = self._rotation = (self._rotation + 1) % self.partitions  # no partition starves the rest
            order = [(start + i) % self.partitions for i in range(self.partitions)]
            events = await self._claim_stale(group, consumer, count, order)
            for n in order:
                if len(events) >= count:
                    break
                fresh: Any = await self.r.xreadgroup(group, consumer, {self.partition_keys[n]: ">"},
                                                     count=count - len(events))
                for _, entries in fresh or []:
                    events.extend(self._event(f"q{n}:{i}", f) for i, f in entries)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                return sorted(events, key=_stream_order)
            # anything submitted after the relay above is in the outbox past ``cursor``
            await self.r.xread({self.stream: cursor}, count=1, block=self._block_slice_ms(remaining * 1000))

    async def _claim_stale(self, group: str, consumer: str, count: int, order: list[int]) -> list[Event]:
        """Events another consumer read longer than the visibility timeout ago, now ours."""
        idle_ms = int(self.settings.visibility_timeout_seconds * 1000)
        events: list[Event] = []
        for n in order:
            if len(events) >= count:
                break
            key = self.partition_keys[n]
            _, claimed, _ = await self.r.xautoclaim(key, group, consumer, idle_ms, "0-0", count=count - len(events))
            claimed = [(i, f) for i, f in claimed if f]
            if claimed:
                deliveries = {p["message_id"]: int(p["times_delivered"]) for p in await self.r.xpending_range(
                    key, group, min=claimed[0][0], max=claimed[-1][0], count=len(claimed) * 2)}
                for i, f in claimed:
                    event = self._event(f"q{n}:{i}", f)
                    event.deliveries = deliveries.get(i, 1)
                    events.append(event)
        return events

    def _split(self, event_id: str) -> tuple[int, str]:
        name, _, stream_id = event_id.partition(":")
        if not (name.startswith("q") and name[1:].isdigit() and int(name[1:]) < self.partitions and stream_id):
            raise ValueError(f"not an event id of this queue: {event_id!r} (expected q<partition>:<stream id>)")
        return int(name[1:]), stream_id

    async def ack_events(self, group: str, ids: list[str]) -> int:
        by_partition: dict[int, list[str]] = {}
        for event_id in ids:
            n, stream_id = self._split(event_id)
            by_partition.setdefault(n, []).append(stream_id)
        done = await asyncio.gather(*(self.r.xack(self.partition_keys[n], group, *stream_ids)
                                      for n, stream_ids in by_partition.items()))
        return sum(int(d) for d in done)

    async def queue_length(self) -> int:
        await self.relay()
        return sum(int(n) for n in await asyncio.gather(*(self.r.xlen(key) for key in self.partition_keys)))

    # -- retention --------------------------------------------------------------------
    async def purge(self, before: str, recheck_blobs: Iterable[str] = ()) -> dict[str, Any]:
        await self.relay()  # so the outbox trim in the Redis backend's purge removes only relayed entries
        result = await super().purge(before, recheck_blobs)
        cutoff_ms = int(datetime.fromisoformat(before).timestamp() * 1000)
        trimmed = await asyncio.gather(*(self.r.xtrim(key, minid=f"{cutoff_ms}-0", approximate=False)
                                         for key in self.partition_keys))
        result["events"] = sum(int(t) for t in trimmed)
        return result
