"""Dedup at scale with a history: every known customer has complained before.

``python bench/dedup_with_complaints.py [--known 1000,1000000] [--backends sqlite,redis] [--batches 1200] [--cache-mb 256]``
registers, through the registry itself (``submit_many``, batches of 64), one complaint for
each of N customers with phone numbers spread over the range, for every size N (a file or
a key prefix each); then submits batches of 16 to the sizes in turns (each first in turn,
so a neighbour's burst slows all alike), first from known customers picked at random (their
identity found, their customer row read, their earlier complaint compared), then from new
ones, and prints per size and kind the batch's p50 and p99 and, on SQLite, the CPU per
complaint (the gateway's own process; on Redis the work is the server's). ``make bench``'s
dedup section preloads its registries with ``preload`` too, but submits one complaint at a
time; this tool submits in batches under ``synchronous=FULL``, as the intake does under
load. A million customers take about 100 s to register per backend, 2.3 GB of SQLite file
and 3.5 GB of Redis memory (flushed afterwards). Figures only.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import REDIS_URL, flush_redis, phone

from gateway.ids import new_id
from gateway.registry import Registry, RegistrySettings
from gateway.registry.redis import RedisRegistry
from gateway.registry.sqlite import DEFAULT_CACHE_MB, SqliteRegistry
from normalizer.schema import Complaint, Customer, Identity

#: New customers in the measured batches are numbered from here, past every preloaded one.
NEW_FROM = 5_000_000


def complaint(i: int, customer: int) -> Complaint:
    return Complaint(id=new_id(), channel="web", channel_message_id=f"web:{new_id()}",
                     received_at=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                     customer=Customer(name=f"Bench {customer}", identities=[Identity("phone", phone(customer))]),
                     text=f"Complaint {i}: the bill for {i % 97} is wrong, I paid {i % 1000} already")


async def preload(registry: Registry, known: int) -> float:
    """One complaint for each of ``known`` customers, through the registry; the seconds it took."""
    began = time.perf_counter()
    for start in range(0, known, 64):
        await registry.submit_many([complaint(i, i) for i in range(start, min(known, start + 64))])
    return time.perf_counter() - began


async def measure(registries: dict[int, Registry], batches: int) -> dict[int, dict[str, dict[str, float]]]:
    """Batches of 16 to each registry in turns (each size first in turn), from known customers
    and then from new ones: per size and kind the batch's p50 and p99 and the CPU per complaint."""
    order = list(registries.items())
    figures: dict[int, dict[str, dict[str, float]]] = {known: {} for known in registries}
    for kind in ("known", "new"):
        latencies: dict[int, list[float]] = {known: [] for known in registries}
        cpu = dict.fromkeys(registries, 0.0)
        for k in range(batches):
            for known, registry in order[k % len(order):] + order[:k % len(order)]:
                who = [random.randrange(known) if kind == "known" else NEW_FROM + k * 16 + j for j in range(16)]
                batch = [complaint(10_000_000 + k * 16 + j, customer) for j, customer in enumerate(who)]
                before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                await registry.submit_many(batch)
                after = resource.getrusage(resource.RUSAGE_SELF)
                latencies[known].append((time.perf_counter() - started) * 1000)
                cpu[known] += after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        for known, values in latencies.items():
            values.sort()
            figures[known][kind] = {"p50_ms": statistics.median(values), "p99_ms": values[int(len(values) * 0.99) - 1],
                                    "cpu_us": cpu[known] / (batches * 16) * 1e6}
    return figures


async def one(backend: str, sizes: list[int], batches: int,
              cache_mb: int) -> tuple[dict[int, float], dict[int, dict[str, dict[str, float]]]]:
    """Every size registered (a file or a key prefix of its own each), then measured in turns."""
    with tempfile.TemporaryDirectory(prefix="bench-dedup-history-") as tmp:
        if backend == "redis":
            flush_redis()
        registries: dict[int, Any] = {
            known: SqliteRegistry(RegistrySettings(), Path(tmp) / f"r{known}.sqlite3", synchronous="FULL", cache_mb=cache_mb)
            if backend == "sqlite"
            else RedisRegistry(RegistrySettings(), REDIS_URL, f"bench:history:{known}:") for known in sizes}
        try:
            loaded = {}
            for known, registry in registries.items():
                await registry.open()
                loaded[known] = await preload(registry, known)
            return loaded, await measure(registries, batches)
        finally:
            for registry in registries.values():
                await registry.close()
            if backend == "redis":
                flush_redis()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--known", default="1000,1000000", help="customers with a complaint each, comma-separated sizes")
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--batches", type=int, default=1200, help="measured batches of 16 per kind")
    parser.add_argument("--cache-mb", type=int, default=DEFAULT_CACHE_MB, help="SQLite's page cache (registry.sqlite.cache_mb)")
    args = parser.parse_args()
    print(f"{'backend':<8}{'known':>10}{'preload s':>11}{'known p50':>11}{'p99':>8}{'cpu us':>8}{'new p50':>9}{'p99':>8}{'cpu us':>8}")
    for backend in args.backends.split(","):
        loaded, figures = asyncio.run(one(backend, [int(n) for n in args.known.split(",")], args.batches, args.cache_mb))
        for known, f in figures.items():
            cpu = {kind: f"{f[kind]['cpu_us']:>8.0f}" if backend == "sqlite" else f"{'-':>8}" for kind in ("known", "new")}
            print(f"{backend:<8}{known:>10,}{loaded[known]:>11.0f}{f['known']['p50_ms']:>11.2f}{f['known']['p99_ms']:>8.2f}"
                  f"{cpu['known']}{f['new']['p50_ms']:>9.2f}{f['new']['p99_ms']:>8.2f}{cpu['new']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
