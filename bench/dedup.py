"""Dedup cost at scale: submit latency with 1e3, 1e5 and 1e6 known customers preloaded,
and Redis memory per customer.

The registries of every size are loaded first and then measured in turns, one submit to each
in round-robin, so a neighbour's burst on the shared machine slows all sizes alike instead of
the one measured at that moment."""
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


def preload_redis(prefix: str, count: int) -> None:
    r = redis.Redis.from_url(REDIS_URL)
    pipe = r.pipeline(transaction=False)
    for n in range(count):
        cid = f"{n:032x}"
        pipe.hset(prefix + "identity", f"phone:{phone(n)}", cid)
        pipe.hset(prefix + "customer:" + cid, "created_at", "2026-01-01T00:00:00Z")
        pipe.sadd(prefix + "customer:" + cid + ":identities", f"phone:{phone(n)}")
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


async def measure(registries: dict[int, Any], submits: int) -> dict[int, dict[str, float]]:
    """Submits in turns to each registry (one per number of known customers; each goes first
    in turn), and for each
    in turns from a known customer (the identity index is searched and the customer's recent
    complaints compared) and from a new one (the index is searched and grows): per registry
    the p50 and p99 of all, and the p50 of each kind."""
    by_kind: dict[int, dict[str, list[float]]] = {known: {"known": [], "new": []} for known in registries}
    order = list(registries.items())
    for i in range(submits):
        kind = "known" if i % 2 == 0 else "new"
        for known, registry in order[i % len(order):] + order[:i % len(order)]:  # each size first in turn
            who = phone(random.randrange(known)) if kind == "known" else f"+7955{i:07d}"
            started = time.perf_counter()
            await registry.submit(complaint(i, who))
            by_kind[known][kind].append((time.perf_counter() - started) * 1000)
    figures = {}
    for known, kinds in by_kind.items():
        latencies = sorted(kinds["known"] + kinds["new"])
        figures[known] = {"p50_ms": statistics.median(latencies), "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
                          "known_p50_ms": statistics.median(kinds["known"]), "new_p50_ms": statistics.median(kinds["new"])}
    return figures


async def one(backend: str, sizes: tuple[int, ...], submits: int) -> dict[int, dict[str, float]]:
    """Every size loaded, then measured in turns; on Redis each size has a prefix of its own."""
    settings = RegistrySettings()
    registries: dict[int, Any] = {}
    index_bytes: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        if backend == "redis":
            flush_redis()
        for known in sizes:
            if backend == "redis":
                prefix = f"{PREFIX}{known}:"
                before = redis.Redis.from_url(REDIS_URL).info("memory")["used_memory"]
                preload_redis(prefix, known)
                index_bytes[known] = (redis.Redis.from_url(REDIS_URL).info("memory")["used_memory"] - before) / known
                registries[known] = RedisRegistry(settings, REDIS_URL, prefix)
            else:
                path = Path(tmp) / f"r{known}.sqlite3"
                created = SqliteRegistry(settings, path, synchronous="NORMAL")
                await created.open()
                await created.close()
                preload_sqlite(path, known)
                registries[known] = SqliteRegistry(settings, path, synchronous="NORMAL")
            await registries[known].open()
        try:
            figures = await measure(registries, submits)
        finally:
            for registry in registries.values():
                await registry.close()
    for known, bytes_per_customer in index_bytes.items():
        figures[known]["identity_index_bytes_per_customer"] = bytes_per_customer
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
        figures = asyncio.run(one(backend, sizes, submits))
        base = figures[sizes[0]]["p50_ms"]
        for size in sizes:
            rows.append(row(f"dedup: submit, {backend}, {size:.0e} customers",
                            {**figures[size], "vs_1e3": figures[size]["p50_ms"] / base}))
    per = asyncio.run(memory_per_registered_customer())
    rows.append(row("redis memory per customer with one complaint", {"bytes": per}))
    return rows
