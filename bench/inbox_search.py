"""The inbox's filtered list on a large registry: how long one page of a search takes, and
how many pages it takes to reach a match older than everything else.

``python bench/inbox_search.py [--messages 100000] [--backends sqlite,redis] [--scan-limit 5000]``
registers, through the registry itself (``submit_many``, batches of 64), one web complaint
per customer; the very first is an e-mail that an operator claims, so it is the one claimed
registration, the one e-mail and the one overdue message, older than every other message. Then, per backend, for
each filter: the time of the first page (50 rows, newest first), and the pages and time a
reader following the "search older messages" links needs to reach that first complaint.
A filter the backend answers from its own columns (SQLite: channel, status, dates) finds it
on the first page; a filter checked message by message looks at ``--scan-limit`` messages
per page. Figures only; the registries are deleted (Redis: flushed) afterwards.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REDIS_URL, flush_redis
from dedup_with_complaints import complaint

from gateway.registry import Registry, RegistrySettings
from gateway.registry.redis import RedisRegistry
from gateway.registry.sqlite import SqliteRegistry
from normalizer.schema import Identity

FILTERS: dict[str, dict[str, Any]] = {
    "no filter": {},
    "status claimed": {"state": "claimed"},
    "channel email": {"channel": "email"},
    "until the first day": {"until": "2000-01-02T00:00:00Z"},
    "text of the first": {"text": "the very first complaint"},
    "overdue": {"overdue": True},
}


async def preload(registry: Registry, messages: int) -> float:
    began = time.perf_counter()
    first = complaint(0, 0)
    first.channel, first.received_at, first.text = "email", "2000-01-01T10:00:00Z", "the very first complaint, about a bill"
    first.deadlines = {"acknowledge": "2000-01-01T18:00:00Z"}  # the only deadline of all: long passed
    first.customer.identities = [Identity("email", "first@example.com")]
    receipt = (await registry.submit_many([first]))[0]
    await registry.apply_action(receipt.registration_number or "", "claim", "bench")
    for start in range(1, messages, 64):
        await registry.submit_many([complaint(i, i) for i in range(start, min(messages, start + 64))])
    return time.perf_counter() - began


async def measure(registry: Registry, scan_limit: int) -> list[str]:
    lines = []
    for name, filters in FILTERS.items():
        began = time.perf_counter()
        page = await registry.search(limit=50, scan_limit=scan_limit, **filters)
        first_ms = (time.perf_counter() - began) * 1000
        pages, found = 1, bool(page.rows) and filters != {}
        while not found and page.next_before and filters:
            page = await registry.search(limit=50, scan_limit=scan_limit, before=page.next_before, **filters)
            pages += 1
            found = bool(page.rows)
        total_ms = (time.perf_counter() - began) * 1000
        reach = f"{pages} page(s), {total_ms:.0f} ms to the first complaint" if filters else "-"
        lines.append(f"  {name:<22} first page {first_ms:8.1f} ms   {reach}")
    return lines


async def run(backend: str, messages: int, scan_limit: int) -> None:
    settings = RegistrySettings()
    with tempfile.TemporaryDirectory() as folder:
        if backend == "sqlite":
            registry: Registry = SqliteRegistry(settings, Path(folder) / "registry.sqlite3")
        else:
            flush_redis()
            registry = RedisRegistry(settings, REDIS_URL, prefix="bench:")
        await registry.open()
        try:
            seconds = await preload(registry, messages)
            print(f"{backend}: {messages} messages registered in {seconds:.0f} s; scan limit {scan_limit}")
            print("\n".join(await measure(registry, scan_limit)), flush=True)
        finally:
            await registry.close()
            if backend == "redis":
                flush_redis()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--scan-limit", type=int, default=5000)
    args = parser.parse_args()
    for backend in args.backends.split(","):
        asyncio.run(run(backend, args.messages, args.scan_limit))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
