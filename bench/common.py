"""Shared pieces of the benchmarks: free ports, starting a gateway process, wrk runs, and
side-by-side comparisons repeated in turns (best of N, with the spread and the server's CPU
time per request)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.testing.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
#: Each measurement is repeated this often (in turns with what it is compared with).
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))




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

    # a database the runs before filled with millions of keys takes longer than the client's
    # default 5 s to empty
    redis.Redis.from_url(REDIS_URL, socket_timeout=600).flushdb()


def gateway_config(tmp: Path, backend: str, port: int, channels: dict[str, Any] | None = None,
                   workers: int = 1) -> Path:
    """``backend``: ``redis``, ``sqlite``, or ``sqlite_writer_process`` (SQLite with
    ``registry.sqlite.writer_process``)."""
    sqlite = {"path": str(tmp / "registry.sqlite3"), "synchronous": "FULL", "writer_process": backend == "sqlite_writer_process"}
    config = {
        "http": {"host": "127.0.0.1", "port": port, "workers": workers},
        "registry": {"backend": "redis" if backend == "redis" else "sqlite", "sqlite": sqlite,
                     "redis": {"url": REDIS_URL, "prefix": "bench:"}},
        "blobs": {"path": str(tmp / "blobs"), "fsync": os.environ.get("BENCH_FSYNC", "1") == "1"},
        "logging": {"level": "WARNING"},
        "channels": channels or {"web": {"adapter": "web_form", "rate_limit_per_minute": 0}},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def process(cmd: list[str], health_url: str | None = None, env: dict[str, str] | None = None,
            ready: Callable[[], None] | None = None, cwd: Path = ROOT) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in ``cwd`` until the block ends; it is ready when ``health_url`` answers (or ``ready()`` returns)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    try:
        if health_url:
            wait_http(health_url)
        if ready is not None:
            ready()
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass(slots=True)
class Server:
    """A server process under test: where it listens and its process id (for CPU time)."""

    port: int
    pid: int
    config: Path | None = None


@contextmanager
def gateway(backend: str, workers: int = 1, channels: dict[str, Any] | None = None, flush: bool = True,
            source: Path = ROOT) -> Iterator[Server]:
    """A gateway process (``workers`` > 1: the multi-process mode) on a free port, run from
    the code in ``source`` (another checkout: its own ``gateway`` package comes first)."""
    if backend == "redis" and flush:
        flush_redis()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        port = free_port()
        config = gateway_config(Path(tmp), backend, port, channels, workers)
        with process([sys.executable, "-m", "gateway.cli", "--config", str(config), "run"],
                     f"http://127.0.0.1:{port}/healthz", cwd=source) as proc:
            if workers > 1:
                wait_workers(port, workers)
            yield Server(port, proc.pid, config)


def wait_workers(port: int, workers: int, timeout: float = 60) -> None:
    """Wait until ``workers`` distinct processes answer /healthz (the port is shared)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {workers} workers answered")
        try:
            # a new connection each time: SO_REUSEPORT spreads connections over the workers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                seen.add(int(json.loads(resp.read())["pid"]))
        except OSError:
            time.sleep(0.05)


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (workers), the process first."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        found.append(current)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


#: Per thread (by id): seconds on a core and seconds runnable but waiting for one.
ThreadTimes = dict[int, tuple[float, float]]


def thread_times(pid: int) -> ThreadTimes:
    """The scheduler's figures of each thread of a process and of its workers (Linux's
    ``/proc/<pid>/task/<tid>/schedstat``)."""
    times: ThreadTimes = {}
    for current in process_tree(pid):
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                on_core, waiting = (int(v) / 1e9 for v in (task / "schedstat").read_text().split()[:2])
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended meanwhile
            times[int(task.name)] = (on_core, waiting)
    return times


def thread_shares(before: ThreadTimes, after: ThreadTimes, seconds: float) -> list[tuple[int, float, float]]:
    """Per thread alive at the end, the share of ``seconds`` it spent on a core and waiting
    for one; a thread started meanwhile counts from zero. The busiest first."""
    shares = []
    for tid, (on_core, waiting) in after.items():
        was_on_core, was_waiting = before.get(tid, (0.0, 0.0))
        shares.append((tid, (on_core - was_on_core) / seconds, (waiting - was_waiting) / seconds))
    return sorted(shares, key=lambda share: -share[1])


def machine_idle_seconds() -> float:
    """Idle seconds of all the machine's cores so far (``/proc/stat``: idle and waiting for I/O)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds() -> float:
    """The Redis server's CPU seconds so far, user and system (``INFO cpu``), wherever it runs."""
    import redis

    info = redis.Redis.from_url(REDIS_URL).info("cpu")
    return sum(float(info[k]) for k in ("used_cpu_user", "used_cpu_sys", "used_cpu_user_children", "used_cpu_sys_children"))


WRK_SCRIPT = ROOT / "bench" / "wrk_complaint.lua"


def phone(n: int) -> str:
    """Customer n's number: distinct for n below 10^7, spread over the range as real ones are
    (the numbering of ``WRK_SCRIPT``)."""
    return f"+7916{n % 10_000_000 * 7654321 % 10_000_000:07d}"

_LATENCY = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: float, connections: int, script: Path = WRK_SCRIPT, threads: int = 1,
        env: dict[str, str] | None = None, timeout: float = 10) -> dict[str, float]:
    """Requests/s, p50 and p99 in ms, errors (non-2xx answers, and socket errors such as
    requests unanswered after ``timeout`` seconds) and the count of requests, as wrk
    measured them. ``env`` reaches the Lua script (``os.getenv``)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                          f"--timeout={max(1, round(timeout))}s", "--latency", "-s", str(script), url],
                         check=True, capture_output=True, text=True, timeout=seconds + timeout + 60, env={**os.environ, **(env or {})}).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    lat = {p: float(v) * _UNIT[u] for p, v, u in _LATENCY.findall(out)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50_ms": lat.get("50", float("nan")), "p99_ms": lat.get("99", float("nan")),
            "errors": (float(bad.group(1)) if bad else 0.0) + (sum(map(float, errors.groups())) if errors else 0.0),
            "requests": float(done)}


def settle(pid: int, timeout: float = 60, busy: float = 0.05) -> None:
    """Wait until the process tree uses less than ``busy`` of a core (work left over from a
    load, e.g. acknowledgements still being sent, is finished before the next load)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < busy * 0.5:
            return


@dataclass(slots=True)
class Contender:
    """One side of a comparison: ``measure()`` runs one load against the server ``pid`` and
    returns its figures (``rps`` and ``requests`` at least); ``warm_up()`` runs once first."""

    name: str
    pid: int
    measure: Callable[[], dict[str, float]]
    warm_up: Callable[[], Any] | None = None
    #: CPU seconds so far of the processes that serve the server under test on this machine
    #: (Redis, the fake Telegram and VK APIs): their share of the cores is not the server's
    helpers: Callable[[], float] = redis_cpu_seconds
    runs: list[dict[str, float]] = field(default_factory=list)

    def run_once(self) -> None:
        """One measurement; the server's CPU time counts until the work it left is done.
        ``busy_pct``: the server's CPU time while the load ran, per second of it (100 %: one
        core kept busy; several processes may pass 100). ``helper_cpu_ms``: the helpers' CPU
        time per request over the same span."""
        cpu, helpers, started = cpu_seconds(self.pid), self.helpers(), time.monotonic()
        figures = self.measure()
        figures["busy_pct"] = (cpu_seconds(self.pid) - cpu) / (time.monotonic() - started) * 100
        settle(self.pid)
        done = figures.pop("requests")
        figures["cpu_ms"] = (cpu_seconds(self.pid) - cpu) * 1000 / done if done else float("nan")
        figures["helper_cpu_ms"] = (self.helpers() - helpers) * 1000 / done if done else float("nan")
        self.runs.append(figures)

    def best(self) -> dict[str, float]:
        """The run with the highest throughput, the spread of throughput over all runs
        ((max - min) / max, in %) and the lowest CPU per request seen (the server's, and
        its helpers')."""
        best = dict(max(self.runs, key=lambda r: r["rps"]))
        rates = [r["rps"] for r in self.runs]
        best["spread_pct"] = (max(rates) - min(rates)) / max(rates) * 100 if max(rates) else float("nan")
        best["cpu_ms"] = min(r["cpu_ms"] for r in self.runs)
        best["helper_cpu_ms"] = min(r["helper_cpu_ms"] for r in self.runs)
        return best


def compare(contenders: list[Contender], repeats: int = REPEATS) -> None:
    """Measure every contender ``repeats`` times, in turns, so that a neighbour's load on
    this shared machine hits every side alike; each turn starts one further along (A B C,
    B C A, C A B ...), so that no side is always measured right after the same one."""
    for contender in contenders:
        if contender.warm_up is not None:
            contender.warm_up()
            settle(contender.pid)
    for turn in range(repeats):
        for contender in contenders[turn % len(contenders):] + contenders[:turn % len(contenders)]:
            contender.run_once()


def row(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": name, **figures}


def against(side: Contender, base: Contender) -> dict[str, float]:
    """``side``'s figures and how it compares with ``base``, measured in the same turns:
    ``ratio``, its best rate over the base's best; ``paired``, the median over the turns of
    its rate over the base's in the same turn (steadier when the neighbours' load drifts
    from turn to turn: a turn's two runs are at most a minute apart)."""
    turns = [run["rps"] / base_run["rps"] for run, base_run in zip(side.runs, base.runs) if base_run["rps"]]
    best = side.best()
    return {**best, "ratio": best["rps"] / base.best()["rps"], "paired": statistics.median(turns) if turns else float("nan")}


def dump(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=1, ensure_ascii=False)


def on_each_backend(doc: str, run: Callable[..., Coroutine[Any, Any, None]], **options: int) -> None:
    """The command line of a bench over registries: ``--messages`` (100 000), ``--backends``
    (sqlite,redis) and an integer option per keyword (its default), then ``run(backend,
    messages, *options)`` on each backend in turn."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,redis")
    for name, default in options.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    args = parser.parse_args()
    for backend in args.backends.split(","):
        asyncio.run(run(backend, args.messages, *(getattr(args, name) for name in options)))
    sys.stdout.flush()
