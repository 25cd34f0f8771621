"""``make bench``: every benchmark in one run on this machine; prints one table.

Figures only: nothing here asserts. BENCH_QUICK=1 shortens every run (for a smoke check);
BENCH_REPEATS (default 3) sets how often each side-by-side measurement is repeated;
BENCH_ONLY=http,smtp,webhook,dedup,queue runs some of them.
"""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dedup
import http_intake
import queue_consumer
import smtp_intake
import webhook_intake
from common import REPEATS

COLUMNS = ("rps", "msgs_per_s", "p50_ms", "p99_ms", "ratio", "paired", "spread_pct", "cpu_ms", "helper_cpu_ms", "busy_pct", "errors",
           "events_per_s", "vs_1e3", "known_p50_ms", "new_p50_ms", "bytes")
HEADINGS = {"paired": "paired ratio", "msgs_per_s": "msgs/s", "spread_pct": "spread %", "cpu_ms": "cpu ms/req",
            "helper_cpu_ms": "helper ms/req", "busy_pct": "busy %", "known_p50_ms": "p50 known", "new_p50_ms": "p50 new",
            "events_per_s": "events/s", "bytes": "B/customer"}


def fmt(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else (f"{value:,.0f}" if value >= 100 else f"{value:.2f}")
    return str(value)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}"


def print_table(rows: list[dict[str, object]]) -> None:
    """One line per row, a column per figure any row has."""
    used = [c for c in COLUMNS if any(c in r for r in rows)]
    width = max(len(str(r["benchmark"])) for r in rows)
    print(f"{'benchmark':<{width}}  " + "  ".join(f"{HEADINGS.get(c, c):>12}" for c in used))
    for r in rows:
        print(f"{r['benchmark']!s:<{width}}  " + "  ".join(f"{fmt(r.get(c, '')):>12}" for c in used))


def main() -> int:
    quick = os.environ.get("BENCH_QUICK") == "1"
    only = set(filter(None, os.environ.get("BENCH_ONLY", "http,smtp,webhook,dedup,queue").split(",")))
    seconds = 3 if quick else 10
    print(f"machine: {machine()}", flush=True)
    print(f"each intake figure: best of {REPEATS} runs of {seconds} s, sides measured in turns; "
          f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    started = time.monotonic()
    sections = {
        "http": lambda: http_intake.run(seconds=seconds),
        "smtp": lambda: smtp_intake.run(per_connection=20 if quick else 60),
        "webhook": lambda: webhook_intake.run(seconds=seconds),
        "dedup": lambda: dedup.run(sizes=(1_000, 10_000) if quick else (1_000, 100_000, 1_000_000),
                                   submits=300 if quick else 2000),
        "queue": lambda: queue_consumer.run(events=1000 if quick else 10_000),
    }
    rows = []
    for name, section in sections.items():
        if name in only:
            began = time.monotonic()
            rows += section()
            print(f"  {name}: done in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    print(f"took {time.monotonic() - started:.0f} s; load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
