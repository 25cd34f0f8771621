"""Dedup cost at scale: submit latency with 1e3, 1e5 and 1e6 known customers preloaded,
and Redis memory per customer.

Every known customer has complained before: the preload registers one complaint for each
through the registry itself (``dedup_with_complaints.preload``), so their identities,
customer rows, registrations, recent complaints and events are all there, as in a registry
in use. The registries of every size are loaded first and then measured in turns, one
submit to each in round-robin, so a neighbour's burst on the shared machine slows all sizes
alike instead of the one measured at that moment."""
from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from common import REDIS_URL, flush_redis, phone, row
from dedup_with_complaints import preload

from gateway.registry import RegistrySettings
from gateway.registry.redis import RedisRegistry
from gateway.registry.sqlite import SqliteRegistry
from normalizer.schema import Complaint, Customer, Identity

PREFIX = "bench:"


def complaint(i: int, phone: str) -> Complaint:
    return Complaint(id=uuid.uuid4().hex, channel="bench", channel_message_id=uuid.uuid4().hex,
                     received_at="2026-11-20T10:00:00Z", customer=Customer(name=None, identities=[Identity("phone", phone)]),
                     text=f"Complaint {i} {uuid.uuid4().hex}: the line is down again")


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
            who = phone(random.randrange(known)) if kind == "known" else f"+7955{i:07d}"  # never preloaded
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
    """Every size loaded, then measured in turns; on Redis each size has a prefix of its own,
    whose memory per customer (with its one complaint) is measured as it is loaded."""
    settings = RegistrySettings()
    registries: dict[int, Any] = {}
    bytes_per_customer: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        if backend == "redis":
            flush_redis()
        try:
            for known in sizes:
                if backend == "redis":
                    registries[known] = RedisRegistry(settings, REDIS_URL, f"{PREFIX}{known}:")
                    before = redis.Redis.from_url(REDIS_URL).info("memory")["used_memory"]
                else:
                    registries[known] = SqliteRegistry(settings, Path(tmp) / f"r{known}.sqlite3", synchronous="NORMAL")
                await registries[known].open()
                await preload(registries[known], known)
                if backend == "redis":
                    bytes_per_customer[known] = (redis.Redis.from_url(REDIS_URL).info("memory")["used_memory"] - before) / known
            figures = await measure(registries, submits)
        finally:
            for registry in registries.values():
                await registry.close()
            if backend == "redis":
                flush_redis()
    for known, per in bytes_per_customer.items():
        figures[known]["bytes"] = per
    return figures


def run(sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000), submits: int = 2000) -> list[dict[str, Any]]:
    rows = []
    for backend in ("redis", "sqlite"):
        figures = asyncio.run(one(backend, sizes, submits))
        base = figures[sizes[0]]["p50_ms"]
        for size in sizes:
            rows.append(row(f"dedup: submit, {backend}, {size:.0e} customers",
                            {**figures[size], "vs_1e3": figures[size]["p50_ms"] / base}))
    return rows
