"""``make bench``: every benchmark in one run on this machine; prints one table.

Figures only: nothing here asserts. BENCH_QUICK=1 shortens every run (for a smoke check).
"""
from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dedup  # noqa: E402
import http_intake  # noqa: E402
import queue_consumer  # noqa: E402

COLUMNS = ("rps", "p50_ms", "p99_ms", "ratio", "events_per_s", "vs_1e3", "identity_index_bytes_per_customer", "bytes", "errors")


def fmt(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else (f"{value:,.0f}" if value >= 100 else f"{value:.2f}")
    return str(value)


def main() -> int:
    quick = os.environ.get("BENCH_QUICK") == "1"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    rows = []
    rows += http_intake.run(seconds=3 if quick else 10)
    rows += dedup.run(sizes=(1_000, 10_000) if quick else (1_000, 100_000, 1_000_000), submits=300 if quick else 2000)
    rows += queue_consumer.run(events=1000 if quick else 10_000)
    used = [c for c in COLUMNS if any(c in r for r in rows)]
    width = max(len(r["benchmark"]) for r in rows)
    print(f"{'benchmark':<{width}}  " + "  ".join(f"{c:>12}" for c in used))
    for r in rows:
        print(f"{r['benchmark']:<{width}}  " + "  ".join(f"{fmt(r.get(c, '')):>12}" for c in used))
    return 0


if __name__ == "__main__":
    sys.exit(main())
