"""The inbox's filtered list on a large registry: how long one page of a search takes, and
how many pages it takes to reach a match older than everything else.

``python bench/inbox_search.py [--messages 100000] [--backends sqlite,redis] [--scan-limit 5000]``
registers, through the registry itself (``submit_many``, batches of 64), one web complaint
per customer; the very first is an e-mail that an operator claims, so it is the one claimed
registration, the one e-mail and the one overdue message, older than every other message. Then, per backend, for
each filter: the time of the first page (50 rows, newest first), and the pages and time a
reader following the "search older messages" links needs to reach that first complaint;
and a date range holding the newest 5 000 messages, alone (the first page's time) and
with a channel none of them has (the time to the search's end). A filter the backend
answers from its columns or indexes (SQLite: channel, status, dates, overdue; Redis:
status, channel, overdue, a date range of at most ``filter_range_max_messages``) finds it
on the first page; a filter checked message by message looks at ``--scan-limit`` messages
per page. Figures only; the registries are deleted (Redis: flushed) afterwards.
"""
from __future__ import annotations

import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import REDIS_URL, flush_redis, on_each_backend
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
#: Filters over the newest ``RECENT`` messages (their dates known once they are registered):
#: a date range of that many, alone and with a channel none of them has.
RECENT = 5_000


async def preload(registry: Registry, messages: int) -> tuple[float, str]:
    """Registers the messages: the seconds it took, and an instant before the newest ``RECENT`` at most."""
    began, recent_since = time.perf_counter(), ""
    first = complaint(0, 0)
    first.channel, first.received_at, first.text = "email", "2000-01-01T10:00:00Z", "the very first complaint, about a bill"
    first.deadlines = {"acknowledge": "2000-01-01T18:00:00Z"}  # the only deadline of all: long passed
    first.customer.identities = [Identity("email", "first@example.com")]
    receipt = (await registry.submit_many([first]))[0]
    await registry.apply_action(receipt.registration_number or "", "claim", "bench")
    for start in range(1, messages, 64):
        if not recent_since and messages - start <= RECENT:
            recent_since = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        await registry.submit_many([complaint(i, i) for i in range(start, min(messages, start + 64))])
    return time.perf_counter() - began, recent_since


async def measure(registry: Registry, scan_limit: int, recent_since: str) -> list[str]:
    lines = []
    recent = {f"the last {RECENT}": {"since": recent_since},
              f"the last {RECENT}, email": {"since": recent_since, "channel": "email"}}
    for name, filters in {**FILTERS, **recent}.items():
        began = time.perf_counter()
        page = await registry.search(limit=50, scan_limit=scan_limit, **filters)
        first_ms = (time.perf_counter() - began) * 1000
        pages, found = 1, bool(page.rows) and filters != {}
        while not found and page.next_before and filters:
            page = await registry.search(limit=50, scan_limit=scan_limit, before=page.next_before, **filters)
            pages += 1
            found = bool(page.rows)
        total_ms = (time.perf_counter() - began) * 1000
        if name in recent:
            reach = f"{len(page.rows)} row(s) on the first page" if "channel" not in filters else f"{pages} page(s), {total_ms:.0f} ms to the end"
        else:
            reach = f"{pages} page(s), {total_ms:.0f} ms to the first complaint" if filters else "-"
        lines.append(f"  {name:<26} first page {first_ms:8.1f} ms   {reach}")
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
            seconds, recent_since = await preload(registry, messages)
            print(f"{backend}: {messages} messages registered in {seconds:.0f} s; scan limit {scan_limit}")
            print("\n".join(await measure(registry, scan_limit, recent_since)), flush=True)
        finally:
            await registry.close()
            if backend == "redis":
                flush_redis()


def main() -> None:
    on_each_backend(__doc__ or "", run, scan_limit=5000)


if __name__ == "__main__":
    main()
