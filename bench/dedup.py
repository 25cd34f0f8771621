"""Dedup cost at scale: submit latency with 1e3, 1e5 and 1e6 known customers preloaded,
and Redis memory per customer."""
from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from common import REDIS_URL, flush_redis, row

from gateway.registry import RegistrySettings
from gateway.registry.redis import RedisRegistry
from gateway.registry.sqlite import SqliteRegistry
from normalizer.schema import Complaint, Customer, Identity

PREFIX = "bench:"


def complaint(i: int, phone: str) -> Complaint:
    return Complaint(id=uuid.uuid4().hex, channel="bench", channel_message_id=uuid.uuid4().hex,
                     received_at="2026-11-20T10:00:00Z", customer=Customer(name=None, identities=[Identity("phone", phone)]),
                     text=f"Complaint {i} {uuid.uuid4().hex}: the line is down again")


def phone(n: int) -> str:
    return f"+7900{n:07d}"


def preload_redis(count: int) -> None:
    r = redis.Redis.from_url(REDIS_URL)
    pipe = r.pipeline(transaction=False)
    for n in range(count):
        cid = f"{n:032x}"
        pipe.hset(PREFIX + "identity", f"phone:{phone(n)}", cid)
        pipe.hset(PREFIX + "customer:" + cid, "created_at", "2026-01-01T00:00:00Z")
        pipe.sadd(PREFIX + "customer:" + cid + ":identities", f"phone:{phone(n)}")
        if n % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def preload_sqlite(path: Path, count: int) -> None:
    db = sqlite3.connect(path)
    db.execute("BEGIN")
    db.executemany("INSERT INTO customers(customer_id, name, created_at) VALUES (?, NULL, '2026-01-01T00:00:00Z')",
                   ((f"{n:032x}",) for n in range(count)))
    db.executemany("INSERT INTO identities(key, customer_id, created_at) VALUES (?, ?, '2026-01-01T00:00:00Z')",
                   ((f"phone:{phone(n)}", f"{n:032x}") for n in range(count)))
    db.execute("COMMIT")
    db.close()


async def measure(registry: Any, known: int, submits: int) -> dict[str, float]:
    """Submits in turns from a known customer (the identity index is searched and the
    customer's recent complaints compared) and from a new one (the index is searched and
    grows): p50 and p99 of all, and the p50 of each kind."""
    by_kind: dict[str, list[float]] = {"known": [], "new": []}
    for i in range(submits):
        kind = "known" if i % 2 == 0 else "new"
        who = phone(random.randrange(known)) if kind == "known" else f"+7955{i:07d}"
        started = time.perf_counter()
        await registry.submit(complaint(i, who))
        by_kind[kind].append((time.perf_counter() - started) * 1000)
    latencies = sorted(by_kind["known"] + by_kind["new"])
    return {"p50_ms": statistics.median(latencies), "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
            "known_p50_ms": statistics.median(by_kind["known"]), "new_p50_ms": statistics.median(by_kind["new"])}


async def one(backend: str, known: int, submits: int) -> dict[str, float]:
    settings = RegistrySettings()
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        if backend == "redis":
            flush_redis()
            before = redis.Redis.from_url(REDIS_URL).info("memory")["used_memory"]
            preload_redis(known)
            after = redis.Redis.from_url(REDIS_URL).info("memory")["used_memory"]
            registry: Any = RedisRegistry(settings, REDIS_URL, PREFIX)
        else:
            registry = SqliteRegistry(settings, Path(tmp) / "r.sqlite3", synchronous="NORMAL")
            await registry.open()
            await registry.close()
            preload_sqlite(Path(tmp) / "r.sqlite3", known)
            registry = SqliteRegistry(settings, Path(tmp) / "r.sqlite3", synchronous="NORMAL")
        await registry.open()
        try:
            figures = await measure(registry, known, submits)
        finally:
            await registry.close()
        if backend == "redis":
            figures["identity_index_bytes_per_customer"] = (after - before) / known
        return figures


async def memory_per_registered_customer(count: int = 5000) -> float:
    flush_redis()
    r = redis.Redis.from_url(REDIS_URL)
    before = r.info("memory")["used_memory"]
    registry = RedisRegistry(RegistrySettings(), REDIS_URL, PREFIX)
    await registry.open()
    for i in range(count):
        await registry.submit(complaint(i, phone(i)))
    await registry.close()
    return (r.info("memory")["used_memory"] - before) / count


def run(sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000), submits: int = 2000) -> list[dict[str, Any]]:
    rows = []
    for backend in ("redis", "sqlite"):
        base = None
        for size in sizes:
            figures = asyncio.run(one(backend, size, submits))
            base = base or figures["p50_ms"]
            rows.append(row(f"dedup: submit, {backend}, {size:.0e} customers", {**figures, "vs_1e3": figures["p50_ms"] / base}))
    per = asyncio.run(memory_per_registered_customer())
    rows.append(row("redis memory per customer with one complaint", {"bytes": per}))
    return rows
