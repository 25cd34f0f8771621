"""The index of deadlines on a large registry: what counting the open and overdue
registrations costs (each ``/metrics`` scrape, each inbox list), and what indexing a
registry written by a version without the index costs when the gateway opens it.

``python bench/deadline_index.py [--messages 100000] [--backends sqlite,redis]`` registers,
through the registry itself (``submit_many``, batches of 64), one web complaint per
customer, each with a first answer's deadline (every other one already passed) and a
decision's; an operator claims every tenth registration and closes every seventh. Then, per
backend: the time of ``registrations_due`` (best and median of 20); the index removed as an
earlier version would have left the registry (SQLite: the columns and the index dropped;
Redis: the sorted sets, the hashes' ``due`` fields and ``due_indexed`` deleted); the time
the registry takes to open and index it again, and whether the counts are the same as
before. Figures only; the registries are deleted (Redis: flushed) afterwards.
"""
from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import REDIS_URL, flush_redis, on_each_backend
from dedup_with_complaints import complaint

from gateway.registry import Registry, RegistrySettings
from gateway.registry.redis import RedisRegistry
from gateway.registry.sqlite import SqliteRegistry


def stamp(hours: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


async def preload(registry: Registry, messages: int) -> float:
    began = time.perf_counter()
    for start in range(0, messages, 64):
        batch = [complaint(i, i) for i in range(start, min(messages, start + 64))]
        for i, c in enumerate(batch, start):
            c.deadlines = {"acknowledge": stamp(-1 if i % 2 else 8), "respond": stamp(100 - i % 200)}
        receipts = await registry.submit_many(batch)
        for i, receipt in enumerate(receipts, start):
            number = getattr(receipt, "registration_number", None)
            if number and i % 7 == 0:
                await registry.apply_action(number, "close", "bench")
            elif number and i % 10 == 0:
                await registry.apply_action(number, "claim", "bench")
    return time.perf_counter() - began


async def count_times(registry: Registry) -> tuple[float, float]:
    times = []
    for _ in range(20):
        began = time.perf_counter()
        await registry.registrations_due(time.time())
        times.append((time.perf_counter() - began) * 1000)
    return min(times), statistics.median(times)


async def forget_index(registry: Registry) -> None:
    """The registry as a version without the index of deadlines left it."""
    if isinstance(registry, SqliteRegistry):
        db = sqlite3.connect(registry.path)
        db.executescript("DROP INDEX registrations_due; ALTER TABLE registrations DROP COLUMN due_epoch;"
                         " ALTER TABLE registrations DROP COLUMN due_name;")
        db.close()
        return
    assert isinstance(registry, RedisRegistry)
    r, prefix = registry.r, registry.prefix
    await r.delete(prefix + "due_indexed", prefix + "due_names", *await r.keys(prefix + "due:*"))
    cursor = 0
    while True:
        cursor, keys = await r.scan(cursor, match=prefix + "registration:*", count=5000)
        async with r.pipeline(transaction=False) as pipe:
            for key in keys:
                if key.count(":") == 2:  # the hash, not its lists of actions or messages
                    pipe.hdel(key, "due")
            await pipe.execute()
        if cursor == 0:
            return


async def run(backend: str, messages: int) -> None:
    settings = RegistrySettings()
    with tempfile.TemporaryDirectory() as folder:
        def opened() -> Registry:
            if backend == "sqlite":
                return SqliteRegistry(settings, Path(folder) / "registry.sqlite3")
            return RedisRegistry(settings, REDIS_URL, prefix="bench:")

        if backend == "redis":
            flush_redis()
        registry = opened()
        await registry.open()
        try:
            seconds = await preload(registry, messages)
            counts = await registry.registrations_due(time.time())
            best, median = await count_times(registry)
            print(f"{backend}: {messages} messages registered in {seconds:.0f} s; {counts}")
            print(f"  registrations_due: best {best:.2f} ms, median {median:.2f} ms", flush=True)
            await forget_index(registry)
        finally:
            await registry.close()
        registry = opened()
        began = time.perf_counter()
        await registry.open()
        try:
            indexed = time.perf_counter() - began
            again = await registry.registrations_due(time.time())
            print(f"  opened and indexed again in {indexed:.1f} s; the same counts: {'yes' if again == counts else again}",
                  flush=True)
        finally:
            await registry.close()
            if backend == "redis":
                flush_redis()


def main() -> None:
    on_each_backend(__doc__ or "", run)


if __name__ == "__main__":
    main()
