"""HTTP intake: the web form's full path (parse, validate, normalise, dedup, enqueue) against
a bare aiohttp handler doing one Redis XADD, same load generator (wrk), same concurrency.

All servers run at once and are measured in turns (bare, redis, sqlite, bare, ...), so a
neighbour's load on the machine hits every side alike; each figure is the best of the runs.
SQLite is measured with its submits in the gateway's process and, as a row of its own, in a
writer process beside it (``registry.sqlite.writer_process``; its CPU is counted with the
gateway's).
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from common import REDIS_URL, Contender, Server, against, compare, flush_redis, free_port, gateway, process, redis_cpu_seconds, row, wrk

URL = "http://127.0.0.1:{port}/web/complaints"


def bare_server(stack: ExitStack) -> Server:
    """The stack's own limit: aiohttp reading the body and doing one XADD (bench/bare_server.py)."""
    port = free_port()
    proc = stack.enter_context(process([sys.executable, "bench/bare_server.py", str(port), REDIS_URL],
                                       f"http://127.0.0.1:{port}/healthz"))
    return Server(port, proc.pid)


def contender(name: str, server: Server, seconds: float, connections: int, url: str = URL, warm_up: float = 2,
              helpers: Callable[[], float] = redis_cpu_seconds, **wrk_options: Any) -> Contender:
    target = url.format(port=server.port)
    return Contender(name, server.pid, lambda: wrk(target, seconds, connections, **wrk_options),
                     warm_up=lambda: wrk(target, warm_up, connections, **wrk_options),  # imports, caches, connections
                     helpers=helpers)


def run(seconds: float = 10, connections: int = 32) -> list[dict[str, Any]]:
    flush_redis()
    with ExitStack() as stack:
        bare = contender("http: bare aiohttp + XADD", bare_server(stack), seconds, connections)
        full = [contender(f"http: web form full path, {backend}, {workers} process{'es' if workers > 1 else ''}",
                          stack.enter_context(gateway(backend, workers=workers, flush=False)), seconds, connections)
                for backend in ("redis", "sqlite") for workers in (1, 2)]
        full.append(contender("http: web form full path, sqlite, 1 process and its writer process",
                              stack.enter_context(gateway("sqlite_writer_process", flush=False)), seconds, connections))
        compare([bare, *full])
    return [row(bare.name, bare.best())] + [row(c.name, against(c, bare)) for c in full]
