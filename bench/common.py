"""Shared pieces of the benchmarks: free ports, starting a gateway process, wrk runs."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def gateway_config(tmp: Path, backend: str, port: int, channels: dict[str, Any] | None = None,
                   workers: int = 1) -> Path:
    config = {
        "http": {"host": "127.0.0.1", "port": port, "workers": workers},
        "registry": {"backend": backend, "sqlite": {"path": str(tmp / "registry.sqlite3"), "synchronous": "FULL"},
                     "redis": {"url": REDIS_URL, "prefix": "bench:"}},
        "blobs": {"path": str(tmp / "blobs"), "fsync": os.environ.get("BENCH_FSYNC", "1") == "1"},
        "logging": {"level": "WARNING"},
        "channels": channels or {"web": {"adapter": "web_form", "rate_limit_per_minute": 0}},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def process(cmd: list[str], health_url: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    try:
        wait_http(health_url)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def gateway(backend: str, workers: int = 1, channels: dict[str, Any] | None = None) -> Iterator[tuple[int, Path]]:
    if backend == "redis":
        flush_redis()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        port = free_port()
        config = gateway_config(Path(tmp), backend, port, channels, workers)
        with process([sys.executable, "-m", "gateway.cli", "--config", str(config), "run"],
                     f"http://127.0.0.1:{port}/healthz"):
            yield port, config


WRK_SCRIPT = ROOT / "bench" / "wrk_complaint.lua"
_LATENCY = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, connections: int, script: Path = WRK_SCRIPT, threads: int = 1) -> dict[str, float]:
    """Requests/s, p50 and p99 in ms, and non-2xx count, as wrk measured them."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {p: float(v) * _UNIT[u] for p, v, u in _LATENCY.findall(out)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50_ms": lat.get("50", float("nan")), "p99_ms": lat.get("99", float("nan")),
            "errors": float(bad.group(1)) if bad else 0.0}


def row(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": name, **figures}


def dump(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=1, ensure_ascii=False)
