"""Queue consumer throughput: read in batches and acknowledge, events per second."""
from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REDIS_URL, flush_redis, phone, row
from dedup import complaint

from gateway.registry import RegistrySettings
from gateway.registry.redis import RedisRegistry
from gateway.registry.sqlite import SqliteRegistry


async def one(registry: Any, events: int, batch: int) -> dict[str, float]:
    await registry.open()
    try:
        for i in range(events):
            await registry.submit(complaint(i, phone(i)))
        started, done = time.perf_counter(), 0
        while done < events:
            got = await registry.read_events("bench", "c1", count=batch)
            if not got:
                break
            await registry.ack_events("bench", [e.id for e in got])
            done += len(got)
        return {"events": done, "events_per_s": done / (time.perf_counter() - started)}
    finally:
        await registry.close()


def run(events: int = 10_000, batch: int = 500) -> list[dict[str, Any]]:
    flush_redis()
    rows = [row("queue: consume+ack, redis", asyncio.run(one(RedisRegistry(RegistrySettings(), REDIS_URL, "bench:"), events, batch)))]
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SqliteRegistry(RegistrySettings(), Path(tmp) / "q.sqlite3", synchronous="NORMAL")
        rows.append(row("queue: consume+ack, sqlite", asyncio.run(one(sqlite, events, batch))))
    return rows
