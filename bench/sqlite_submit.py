"""The SQLite registry alone: the CPU (user and system) and the bytes written per complaint
by ``submit_many``, with no gateway, no load generator and no HTTP beside it.

``python bench/sqlite_submit.py [--complaints 20000] [--batch 16] [--returning 200] [--processes 2]``
submits web-form-like complaints (those of ``bench/submit_script.py``) in batches, the first
2 000 as a warm-up, one batch after the other on the event loop as the intake does, into a
new file in a temporary folder. ``--processes N``: N processes write to the same file at
once, as the gateway's workers do. Prints, per process and per complaint, its user and
system CPU (the loop's thread and the committer's), the bytes it wrote (the WAL, and the
file at checkpoints) and the wall time. Figures only.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

from submit_script import BATCH, WARM_UP, complaint

from gateway.registry import RegistrySettings
from gateway.registry.sqlite import SqliteRegistry


def _written_bytes() -> int:
    """Bytes this process has written (Linux's ``/proc/self/io``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


async def measure(path: Path, complaints: int, batch: int, returning: int, synchronous: str) -> str:
    registry = SqliteRegistry(RegistrySettings(), path, synchronous=synchronous)
    await registry.open()
    try:
        items = [complaint(i, returning) for i in range(complaints)]
        for start in range(0, WARM_UP, batch):
            await registry.submit_many(items[start:start + batch])
        before, written, wall = resource.getrusage(resource.RUSAGE_SELF), _written_bytes(), time.perf_counter()
        for start in range(WARM_UP, complaints, batch):
            await registry.submit_many(items[start:start + batch])
        after, written, wall = resource.getrusage(resource.RUSAGE_SELF), _written_bytes() - written, time.perf_counter() - wall
    finally:
        await registry.close()
    n = complaints - WARM_UP
    return (f"{(after.ru_utime - before.ru_utime) / n * 1e6:.1f} us user + {(after.ru_stime - before.ru_stime) / n * 1e6:.1f} us system, "
            f"{written / n:,.0f} bytes written, {wall / n * 1e6:.1f} us wall")


def _one_process(path: Path, complaints: int, batch: int, returning: int, synchronous: str) -> str:
    return asyncio.run(measure(path, complaints, batch, returning, synchronous))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--complaints", type=int, default=20_000, help="per process")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--returning", type=int, default=0, help="customers taking turns (0: a new one each time)")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL", "OFF"])
    parser.add_argument("--processes", type=int, default=1, help="processes writing to the file at once")
    args = parser.parse_args()
    complaints = max(args.complaints, WARM_UP + args.batch)
    who = f"{args.returning} returning customers" if args.returning else "a new customer each"
    print(f"sqlite submit_many, batches of {args.batch}, {who}, synchronous={args.synchronous}, "
          f"{args.processes} process(es) on one file; per complaint:")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "registry.db"
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            figures = pool.starmap(_one_process, [(path, complaints, args.batch, args.returning, args.synchronous)] * args.processes)
        size = sum(f.stat().st_size for f in Path(folder).iterdir())
    for i, line in enumerate(figures):
        print(f"  process {i + 1}: {line}")
    print(f"  files: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
