"""Where one request's CPU goes: a gateway process under load, sampled with py-spy.

``python bench/profile_hot_path.py web|telegram|telegram_quiet|telegram_answering|vk|smtp [--backend redis] [--seconds 10]``
starts a gateway with that door, loads it as the benchmarks do (wrk, or the SMTP load
generator), samples the process with py-spy (``pip install py-spy``) and prints, per
function of the gateway (and the libraries it calls most), the share of the event loop's
samples and the event loop's milliseconds per request that share stands for. py-spy samples
wall time: on a busy machine a function also "spends" the time the process waits for a
core (socket writes that wake the client or Redis show this most). Before the profile it
prints each of the gateway's threads' share of the load's time on a core and waiting for
one (Linux's schedstat), and how idle the machine was: a main thread that is neither had
nothing to do. With ``--backend sqlite_writer_process`` SQLite's writer process is sampled
too, and its profile printed after the gateway's: how much of the time it was active, and
where that time went per request. Figures only.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from common import Server, cpu_seconds, free_port, gateway, machine_idle_seconds, process, process_tree, settle, thread_shares, thread_times, wrk
from smtp_intake import run_load, smtp_channel, wait_smtp
from webhook_intake import RETURNING_VK_USERS, TELEGRAM_SCRIPT, VK_SCRIPT, channels, wait_port

OWN = re.compile(r"\((?:gateway|channels|normalizer)/")
LIBRARIES = re.compile(r"\((?:json|phonenumbers|lingua|email|aiosmtpd|telegram|httpx|redis|aiohttp|sqlite3|prometheus_client|"
                       r"concurrent|asyncio/(?:threads|base_events\.py.*run_in_executor))")
FRAME = re.compile(r" \((.*?):\d+\)")


def samples(raw: Path) -> int:
    """How many samples py-spy's raw output holds (each one a moment a thread was not idle)."""
    return sum(int(line.rpartition(" ")[2]) for line in raw.read_text().splitlines())


def summarise(raw: Path, loop_ms: float, cpu_ms: float, top: int = 45, what: str = "the event loop",
              cpu: str = "CPU in all threads") -> str:
    """Inclusive and self shares of the main threads' samples (of every worker), from py-spy's raw output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own_self: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = next((i for i, frame in enumerate(frames) if frame.startswith("thread (")), 0)  # after "process ..." frames
        if "MainThread" not in frames[thread]:
            continue
        n = int(count)
        total += n
        names = [FRAME.sub(r" (\1)", f) for f in frames[thread + 1:]]
        for name in set(names):
            inclusive[name] += n
        if names:
            own_self[names[-1]] += n
    lines = [(f"{total} samples of {what}; per request: {loop_ms:.2f} ms of its time, "
              f"{cpu_ms:.2f} ms {cpu}"),
             f"{'share':>6} {'ms/req':>7}  function (inclusive: itself and what it calls)"]
    for name, n in inclusive.most_common():
        if (OWN.search(name) or LIBRARIES.search(name)) and len(lines) < top:
            lines.append(f"{n / total * 100:5.1f}% {n / total * loop_ms:7.3f}  {name}")
    lines.append(f"{'share':>6} {'ms/req':>7}  function (self: the time in the function itself)")
    for name, n in own_self.most_common(25):
        lines.append(f"{n / total * 100:5.1f}% {n / total * loop_ms:7.3f}  {name}")
    return "\n".join(lines)


def describe_threads(shares: list[tuple[int, float, float]], pids: list[int], idle: float) -> str:
    """The gateway's threads under the load. A worker's main thread runs its event loop (in
    the multi-process mode the first process only watches its workers): a main thread
    neither on a core nor waiting for one had nothing to do."""
    lines = [f"threads under the load (on a core / waiting for one); the machine idle {idle * 100:.0f} % "
             f"of its {(os.cpu_count() or 0) * 100} %"]
    for tid, on_core, waiting in shares:
        if on_core >= 0.005 or waiting >= 0.005:
            what = "main thread" if tid in pids else "thread"
            lines.append(f"  {what} {tid}: {on_core * 100:5.1f} % / {waiting * 100:4.1f} %")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("door", choices=["web", "telegram", "telegram_quiet", "telegram_answering", "vk", "smtp"])
    parser.add_argument("--backend", default="redis", choices=["redis", "sqlite", "sqlite_writer_process"])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections, as in make bench")
    parser.add_argument("--workers", type=int, default=1, help="gateway processes (the multi-process mode): all are sampled")
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks in this file")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-profile-")))
        smtp_port = free_port()
        if args.door == "web":
            doors = None
        elif args.door == "smtp":
            doors = smtp_channel(smtp_port)
        else:
            telegram_port, vk_port = free_port(), free_port()
            stack.enter_context(process([sys.executable, "bench/webhook_intake.py", "fakes", str(telegram_port), str(vk_port)],
                                        ready=lambda: wait_port(telegram_port, vk_port)))
            doors = channels(f"http://127.0.0.1:{telegram_port}", f"http://127.0.0.1:{vk_port}")
        server = stack.enter_context(gateway(args.backend, args.workers, channels=doors))
        if args.door == "smtp":
            wait_smtp(smtp_port)
            smtp = Server(smtp_port, server.pid)
            run_load(smtp, 16, 3)  # warm up: the language models load on first use
            load = lambda: run_load(smtp, 16, max(10, args.seconds * 10))
        else:
            path = "/web/complaints" if args.door == "web" else f"/channels/{args.door.partition('_')[0]}/{args.door}"
            script = TELEGRAM_SCRIPT if args.door.startswith("telegram") else VK_SCRIPT if args.door == "vk" else None
            options = {"script": script} if script else {}
            env = {"BENCH_VK_USERS": str(RETURNING_VK_USERS)} if args.door == "vk" else None
            url = f"http://127.0.0.1:{server.port}{path}"
            wrk(url, RETURNING_VK_USERS // 10 if args.door == "vk" else 2, args.connections, env=env, **options)
            load = lambda: wrk(url, args.seconds, args.connections, env=env, **options)
        settle(server.pid)
        raw = args.raw or tmp / "profile.raw"

        def sample(pid: int, output: Path, subprocesses: bool) -> subprocess.Popen[bytes]:
            return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--format", "raw",
                                     "--output", str(output), "--nonblocking", "--threads",
                                     *(["--subprocesses"] if subprocesses else [])],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        sampler = sample(server.pid, raw, args.workers > 1)
        # SQLite's writer process (started by the warm-up's first submit), sampled on its own
        writers = [pid for pid in process_tree(server.pid)[1:] if "sqlite_writer" in Path(f"/proc/{pid}/cmdline").read_text()]
        writer_raw = raw.with_suffix(".writer.raw")
        writer_sampler = sample(writers[0], writer_raw, False) if writers and args.workers == 1 else None
        before, began = cpu_seconds(server.pid), time.monotonic()
        writer_before = cpu_seconds(writers[0]) if writer_sampler is not None else 0.0
        figures: dict[str, float] = {}
        worker = threading.Thread(target=lambda: figures.update(load()))
        threads_before, idle_before = thread_times(server.pid), machine_idle_seconds()
        loaded = time.monotonic()
        worker.start()
        worker.join()
        threads = thread_shares(threads_before, thread_times(server.pid), time.monotonic() - loaded)
        idle = (machine_idle_seconds() - idle_before) / (time.monotonic() - loaded)
        settle(server.pid)
        elapsed = time.monotonic() - began
        for spying in (sampler, writer_sampler):
            if spying is not None:
                spying.send_signal(2)  # SIGINT: py-spy writes what it has
                spying.wait(60)
        done = figures.get("requests") or figures.get("mails") or 0
        cpu_ms = (cpu_seconds(server.pid) - before) * 1000 / done if done else float("nan")
        writer_cpu_ms = (cpu_seconds(writers[0]) - writer_before) * 1000 / done if writer_sampler is not None and done else float("nan")
        print(f"{args.door}, {args.backend}: {figures}")
        print(describe_threads(threads, process_tree(server.pid), idle))
        print(summarise(raw, elapsed * 1000 / done if done else float("nan"), cpu_ms))
        if writer_sampler is not None:
            active = samples(writer_raw) / args.rate
            print(f"the writer process: active {active / elapsed * 100:.0f} % of the time")
            print(summarise(writer_raw, active * 1000 / done if done else float("nan"), writer_cpu_ms, top=30,
                            what="the writer process", cpu="its CPU"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
