"""Retention at scale: how long ``purge`` takes, and how long it holds intake up.

``python bench/purge.py [--messages 100000] [--backends sqlite,redis] [--notes 20000]``
registers, through the registry itself (``submit_many``, batches of 64), ``--messages``
complaints of as many customers, their times spread over two years, every tenth naming a
raw original in the blob store, and an operator's note on ``--notes`` of them. Then
``purge`` removes what is older than a year (half of it) while a submitter registers one
new complaint every 10 ms, and again (nothing new to remove) the same way. Printed per
backend and run: the purge's seconds, what it removed, and the submits' p50, p99 and
longest latency during it, beside the same figures without a purge. Figures only.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import REDIS_URL, flush_redis, phone, row

from gateway.ids import new_id
from gateway.registry import Registry, RegistrySettings
from gateway.registry.base import iso
from gateway.registry.redis import RedisRegistry
from gateway.registry.sqlite import SqliteRegistry
from normalizer.schema import Complaint, Customer, Identity

NOW = datetime.now(timezone.utc)
SPAN = timedelta(days=730)


def complaint(i: int, total: int, received: datetime | None = None) -> Complaint:
    at = received or NOW - SPAN + SPAN * i / total
    body = Complaint(id=new_id(), channel="web", channel_message_id=f"web:{new_id()}",
                     received_at=iso(at), customer=Customer(name=f"Bench {i}", identities=[Identity("phone", phone(i))]),
                     text=f"Complaint {i}: the bill for {i % 97} is wrong, I paid {i % 1000} already")
    if i % 10 == 0:
        body.meta["raw"] = {"sha256": f"{i:064x}", "content_type": "message/rfc822"}
    return body


async def load(registry: Registry, messages: int, notes: int) -> None:
    numbers: list[str] = []
    for start in range(0, messages, 64):
        receipts = await registry.submit_many([complaint(i, messages) for i in range(start, min(messages, start + 64))])
        numbers += [r.registration_number for r in receipts if not isinstance(r, Exception) and r.registration_number]
    step = max(1, len(numbers) // max(1, notes))
    for number in numbers[::step][:notes]:
        await registry.apply_action(number, "note", "olga", {"text": f"called back on {phone(len(number))}"})


async def submits_meanwhile(registry: Registry, work: Any) -> tuple[float, Any, list[float]]:
    """Runs ``work`` (or sleeps 3 s when None) while one complaint is submitted every 10 ms;
    its seconds, its result and the submits' latencies in ms."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def submitter() -> None:
        i = 10_000_000
        while not done.is_set():
            i += 1
            began = time.perf_counter()
            await registry.submit(complaint(i, 1, NOW))
            latencies.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(submitter())
    began = time.perf_counter()
    result = await work if work is not None else await asyncio.sleep(3)
    seconds = time.perf_counter() - began
    done.set()
    await task
    return seconds, result, latencies


def figures(seconds: float, result: dict[str, Any] | None, latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies) or [float("nan")]
    out: dict[str, Any] = {"seconds": seconds, "submits": len(latencies), "p50_ms": statistics.median(ordered),
                           "p99_ms": ordered[max(0, int(len(ordered) * 0.99) - 1)], "max_ms": ordered[-1]}
    if result is not None:
        out.update(purged=result["messages"], customers=result["customers"], actions=result["actions"],
                   blobs=len(result["blobs"]))
    return out


async def one(backend: str, messages: int, notes: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-purge-") as tmp:
        if backend == "redis":
            flush_redis()
            registry: Registry = RedisRegistry(RegistrySettings(), REDIS_URL, "bench:purge:")
        else:
            registry = SqliteRegistry(RegistrySettings(), Path(tmp) / "registry.sqlite3", synchronous="FULL")
        await registry.open()
        try:
            began = time.perf_counter()
            await load(registry, messages, notes)
            print(f"  {backend}: {messages} complaints loaded in {time.perf_counter() - began:.0f} s", file=sys.stderr)
            cutoff = iso(NOW - timedelta(days=365))
            rows = [row(f"purge {backend}: no purge, submits alone", figures(*await submits_meanwhile(registry, None)))]
            rows.append(row(f"purge {backend}: first purge", figures(*await submits_meanwhile(registry, registry.purge(cutoff)))))
            rows.append(row(f"purge {backend}: again, nothing new", figures(*await submits_meanwhile(registry, registry.purge(cutoff)))))
            return rows
        finally:
            await registry.close()
            if backend == "redis":
                flush_redis()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--notes", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,redis")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        rows += asyncio.run(one(backend, args.messages, args.notes))
    columns = ("seconds", "purged", "customers", "actions", "blobs", "submits", "p50_ms", "p99_ms", "max_ms")
    width = max(len(r["benchmark"]) for r in rows)
    print(f"{'benchmark':<{width}}" + "".join(f"{c:>10}" for c in columns))
    for r in rows:
        print(f"{r['benchmark']:<{width}}" + "".join(
            f"{r[c]:>10.2f}" if isinstance(r.get(c), float) else f"{r.get(c, ''):>10}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
