"""HTTP intake: the web form's full path (parse, validate, normalise, dedup, enqueue) against
a bare aiohttp handler doing one Redis XADD, same load generator (wrk), same concurrency."""
from __future__ import annotations

import sys
from typing import Any

from common import REDIS_URL, flush_redis, free_port, gateway, process, row, wrk

URL = "http://127.0.0.1:{port}/web/complaints"


def bare(seconds: int, connections: int) -> dict[str, float]:
    port = free_port()
    flush_redis()
    with process([sys.executable, "bench/bare_server.py", str(port), REDIS_URL], f"http://127.0.0.1:{port}/healthz"):
        return wrk(URL.format(port=port), seconds, connections)


def full(backend: str, seconds: int, connections: int, workers: int = 1) -> dict[str, float]:
    with gateway(backend, workers=workers) as (port, _):
        wrk(URL.format(port=port), 1, connections)  # warm up: imports, caches, connections
        return wrk(URL.format(port=port), seconds, connections)


def run(seconds: int = 10, connections: int = 32) -> list[dict[str, Any]]:
    rows = []
    base = bare(seconds, connections)
    rows.append(row("http: bare aiohttp + XADD", base))
    for backend in ("redis", "sqlite"):
        figures = full(backend, seconds, connections)
        rows.append(row(f"http: web form full path, {backend}, 1 process", {**figures, "ratio": figures["rps"] / base["rps"]}))
        figures = full(backend, seconds, connections, workers=2)
        rows.append(row(f"http: web form full path, {backend}, 2 processes", {**figures, "ratio": figures["rps"] / base["rps"]}))
    return rows
