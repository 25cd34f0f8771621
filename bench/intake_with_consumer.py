"""The web form on SQLite with the registry's queue consumed beside the load.

``python bench/intake_with_consumer.py [--seconds 10] [--batch 100]``

A company's registry reads the queue while complaints arrive: a consumer in a process of
its own (as `complaint-gateway queue read` or a program on `gateway.registry` would run)
reads events in batches of ``--batch`` and acknowledges them, on the same SQLite file. Its
writes take the file's write lock between the gateway's batches, and each of its commits
drops the page cache of the connection that registers (the gateway's, or its writer
process's). Measured side by side as ``make bench`` measures the web form: the bare
server, and the gateway on SQLite in its own process and with its writer process
(``registry.sqlite.writer_process``), each with its own consumer; the consumer's CPU is
counted as the helpers'. After the runs, each consumer's events acknowledged and the
events it had not reached yet. Figures only.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Contender, against, compare, cpu_seconds, flush_redis, gateway, process, redis_cpu_seconds, row
from http_intake import bare_server, contender
from run import print_table

GROUP = "bench-consumer"


async def consume(path: Path, batch: int) -> None:
    """Read and acknowledge until SIGTERM, as a consumer of the company's registry would."""
    from gateway.registry import RegistrySettings
    from gateway.registry.sqlite import SqliteRegistry

    registry = SqliteRegistry(RegistrySettings(), path)
    await registry.open()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            events = await registry.read_events(GROUP, "c1", count=batch, block_ms=100)
            if events:
                await registry.ack_events(GROUP, [event.id for event in events])
    finally:
        await registry.close()


def registry_path(config: Path) -> Path:
    return Path(yaml.safe_load(config.read_text())["registry"]["sqlite"]["path"])


def backlog(path: Path) -> dict[str, float]:
    """Events registered, acknowledged by the consumer's group, and not yet read by it (the
    bench's file is new: its events are numbered from 1 without gaps)."""
    db = sqlite3.connect(path)
    try:
        events = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        read = db.execute("SELECT last_seq FROM consumer_groups WHERE name=?", (GROUP,)).fetchone()
        pending = db.execute("SELECT COUNT(*) FROM pending WHERE group_name=?", (GROUP,)).fetchone()[0]
    finally:
        db.close()
    last = read[0] if read else 0
    return {"events": events, "acknowledged": last - pending, "not_read": events - last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--consume", type=Path, help=argparse.SUPPRESS)  # the consumer process itself
    args = parser.parse_args()
    if args.consume is not None:
        asyncio.run(consume(args.consume, args.batch))
        return
    flush_redis()
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        bare = contender("http: bare aiohttp + XADD", bare_server(stack), args.seconds, 32)
        sides: list[tuple[Contender, Path]] = []
        for backend, name in (("sqlite", "sqlite, 1 process"), ("sqlite_writer_process", "sqlite, 1 process and its writer process")):
            server = stack.enter_context(gateway(backend, flush=False))
            assert server.config is not None
            path = registry_path(server.config)
            consumer = stack.enter_context(process([sys.executable, str(Path(__file__).resolve()), "--consume", str(path),
                                                    "--batch", str(args.batch)], cwd=ROOT))
            sides.append((contender(f"http: web form, {name}, a consumer acking beside it", server, args.seconds, 32,
                                    helpers=lambda pid=consumer.pid: cpu_seconds(pid) + redis_cpu_seconds()), path))
        compare([bare, *(side for side, _ in sides)])
        rows.append(row(bare.name, bare.best()))
        rows.extend(row(side.name, against(side, bare)) for side, _ in sides)
        print_table(rows)
        for side, path in sides:
            print(f"{side.name}: {backlog(path)}")


if __name__ == "__main__":
    main()
