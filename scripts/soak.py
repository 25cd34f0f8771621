#!/usr/bin/env python3
"""Soak run: many mixed messages (web form, SMTP, Telegram webhook) against a real gateway
process that is SIGKILLed and restarted at random moments, then a check of the registry.

Clients behave like real providers: a message without an answer, or with a "try again"
answer (connection refused or reset, HTTP 503, SMTP 451), is sent again with the same
idempotency key (Idempotency-Key, Message-ID, update_id) until it succeeds or the run's
deadline passes. Afterwards every message that got a success answer must be registered
and on the queue exactly once, nothing twice, nothing half-registered. Only 127.0.0.1.

    .venv/bin/python scripts/soak.py --backend sqlite --messages 20000 --kills 5
    .venv/bin/python scripts/soak.py --backend sqlite --sqlite-writer-process
    .venv/bin/python scripts/soak.py --backend redis   # a private redis-server, or --redis-url

Exit status: 0 every promise kept and every message delivered, 1 a promise broken,
2 the run did not finish (messages refused or without success before the deadline, kills
not done). A share of clients gives up after a failed attempt (``--give-up``), so that
messages without a success answer are there to be checked too.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.social.fakes.telegram import FakeTelegram, message_update, user
from gateway.blobs import BlobStore
from gateway.config import load_config
from gateway.registry import build_registry
from gateway.registry.base import EVENT_KINDS
from gateway.testing.servers import OwnRedis, free_port  # a private redis-server on a free port
from normalizer.schema import Complaint

DOORS = ("web", "smtp", "telegram")
CHANNEL_OF = {"web": "web", "smtp": "email", "telegram": "telegram"}
RECIPIENT = "complaints@example.com"
TELEGRAM_TOKEN = "7000000001:AAH-soak-token_for-tests"
TELEGRAM_SECRET = "soak-secret-token"
TELEGRAM_PATH = "/channels/telegram/telegram"
REQUEST_TIMEOUT = 30.0
TOPICS = ("нет интернета", "ошибка в счёте", "не работает телефон", "пропало электричество",
          "brak internetu od rana", "błędna faktura za prąd", "router keeps rebooting", "no water pressure")




# -- messages ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Message:
    """One message the clients must deliver, and what happened to it."""

    index: int
    door: str
    key: str                      # the idempotency key as the registry records it (a prefix for mail)
    payload: Any
    attempts: int = 0
    outcome: str = "unfinished"   # success | refused | abandoned (the client gave up) | unfinished
    answers: Counter[str] = field(default_factory=Counter)
    number: str | None = None     # the registration number in the success answer (web, SMTP)


def make_messages(count: int, run: str, rng: random.Random, customers: int) -> list[Message]:
    """``count`` valid complaints, the doors mixed at random, customers drawn from a pool."""
    messages = []
    for i in range(count):
        door = rng.choice(DOORS)
        c = rng.randrange(customers)
        text = f"Жалоба {i}: {rng.choice(TOPICS)}, {rng.choice(TOPICS)}; адрес {rng.randrange(1, 999)}, кв. {i % 97}."
        if door == "web":
            key = f"soak-{run}-{i}"
            body = {"name": f"Клиент {c}", "email": f"customer{c}@example.com", "text": text}
            if c % 2:
                body["phone"] = f"+7916{c:07d}"
            messages.append(Message(i, door, key, body))
        elif door == "smtp":
            key = f"soak-{run}-{i}@soak.example"
            mail = EmailMessage()
            mail["From"] = f"Customer {c} <customer{c}@example.com>"
            mail["To"] = RECIPIENT
            mail["Subject"] = f"Complaint {i}"
            mail["Message-ID"] = f"<{key}>"
            mail["Date"] = formatdate(localtime=False)
            mail.set_content(text)
            messages.append(Message(i, door, key, (f"customer{c}@example.com", mail.as_bytes())))
        else:
            update_id = i + 1
            update = message_update(update_id, user(100_000 + c, first_name=f"Client{c}"), text=text, message_id=i + 1)
            messages.append(Message(i, door, str(update_id), json.dumps(update, ensure_ascii=False).encode("utf-8")))
    return messages


def registry_key(channel: str, channel_message_id: str) -> tuple[str, str]:
    """(channel, our key) of a registered message: web ``key:<key>``, mail ``<id>#<hash>``."""
    if channel == "web":
        return channel, channel_message_id.removeprefix("key:")
    if channel == "email":
        return channel, channel_message_id.split("#", 1)[0]
    return channel, channel_message_id


# -- the gateway process ----------------------------------------------------------------------
class GatewayProcess:
    """``python -m gateway.cli --config X run``, started, killed and stopped on demand."""

    def __init__(self, config_path: Path, http_port: int, log_path: Path) -> None:
        self.config_path = config_path
        self.http_port = http_port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(self.config_path), "run"],
                                    cwd=ROOT, stdout=log, stderr=log)

    async def start(self, timeout: float = 60.0) -> None:
        self.proc = await asyncio.to_thread(self._spawn)
        self.starts += 1
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the gateway exited at start with {self.proc.returncode}; see {self.log_path}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.http_port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"the gateway did not answer within {timeout} s; see {self.log_path}")

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    async def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the graceful stop); the exit status, or -9 when it had to be killed."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)


# -- clients ----------------------------------------------------------------------------------
class SmtpClient:
    """One SMTP connection of one client (kept open between mails, as an MTA does)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.smtp: smtplib.SMTP | None = None

    def send(self, sender: str, data: bytes) -> tuple[str, str, str | None]:
        """("success" | "retry" | "refused", what was answered, registration number)."""
        try:
            if self.smtp is None:
                self.smtp = smtplib.SMTP("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
                self.smtp.ehlo("soak.example")
            code, _ = self.smtp.mail(sender)
            if code == 250:
                code, _ = self.smtp.rcpt(RECIPIENT)
            if code == 250:
                code, reply = self.smtp.data(data)
                if code == 250:
                    return "success", "250", reply.decode("utf-8", "replace").split()[-1]
            if 400 <= code < 500:
                self.smtp.rset()
                return "retry", str(code), None
            return "refused", str(code), None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            return "retry", type(exc).__name__, None

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.close()
            except OSError:
                pass
            self.smtp = None


@dataclass(slots=True)
class Run:
    """Shared state of one soak run."""

    http: str
    session: aiohttp.ClientSession
    threads: ThreadPoolExecutor
    smtp_port: int
    deadline: float
    rng: random.Random
    give_up: float
    finished: int = 0
    #: The numbers of finished messages at which the killer still has to kill the gateway.
    kills_due: list[int] = field(default_factory=list)
    #: How far the clients may run past a kill that is due before they wait for it.
    kill_slack: int = 0


async def send_http(run: Run, message: Message) -> tuple[str, str, str | None]:
    if message.door == "web":
        url, kwargs = f"{run.http}/web/complaints", {"json": message.payload, "headers": {"Idempotency-Key": message.key}}
    else:
        url, kwargs = run.http + TELEGRAM_PATH, {"data": message.payload, "headers": {
            "Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}}
    try:
        async with run.session.post(url, **kwargs) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return "retry", type(exc).__name__, None
    if status in (200, 201):
        number = json.loads(body).get("registration_number") if message.door == "web" else None
        return "success", str(status), number
    if status >= 500 or status == 429:
        return "retry", str(status), None
    return "refused", str(status), None


async def deliver(run: Run, message: Message, smtp: SmtpClient) -> None:
    """Send until success, refusal or the deadline; back off with full jitter between tries."""
    backoff = 0.05
    loop = asyncio.get_running_loop()
    while time.monotonic() < run.deadline:
        message.attempts += 1
        if message.door == "smtp":
            sender, data = message.payload
            verdict, answer, number = await loop.run_in_executor(run.threads, smtp.send, sender, data)
        else:
            verdict, answer, number = await send_http(run, message)
        message.answers[answer] += 1
        if verdict != "retry":
            message.outcome, message.number = verdict, number
            return
        if run.rng.random() < run.give_up:  # a customer who closes the browser: no retry
            message.outcome = "abandoned"
            return
        await asyncio.sleep(run.rng.uniform(0, backoff))
        backoff = min(2.0, backoff * 2)


async def client(run: Run, queue: asyncio.Queue[Message]) -> None:
    smtp = SmtpClient(run.smtp_port)
    try:
        while not queue.empty():
            # a fast run must not end before its kills: past a kill that is due, wait for it
            while run.kills_due and run.finished >= run.kills_due[0] + run.kill_slack:
                await asyncio.sleep(0.01)
            if queue.empty():
                break
            message = queue.get_nowait()
            await deliver(run, message, smtp)
            run.finished += 1
    finally:
        await asyncio.get_running_loop().run_in_executor(run.threads, smtp.close)


async def killer(run: Run, gateway: GatewayProcess, stop: asyncio.Event, events: Counter[str]) -> None:
    """SIGKILL the gateway when the run passes each of ``run.kills_due`` (plus a random delay)
    and start it again after a random pause; restart it too if it ever dies on its own."""
    while not stop.is_set():
        if gateway.exited():
            events["unexpected_exits"] += 1
            await gateway.start()
        if run.kills_due and run.finished >= run.kills_due[0]:
            await asyncio.sleep(run.rng.uniform(0, 0.3))
            gateway.kill()
            events["kills"] += 1
            run.kills_due.pop(0)  # the clients waiting for this kill go on, against a gateway down
            await asyncio.sleep(run.rng.uniform(0, 0.5))
            await gateway.start()
        await asyncio.sleep(0.02)


async def progress(run: Run, total: int, started: float, stop: asyncio.Event, events: Counter[str]) -> None:
    step = max(1, total // 10)
    shown = 0
    while not stop.is_set():
        if run.finished >= shown + step:
            shown = run.finished - run.finished % step
            print(f"  {run.finished}/{total} delivered, {events['kills']} kills, {time.monotonic() - started:.1f} s",
                  file=sys.stderr, flush=True)
        await asyncio.sleep(0.2)


# -- the check --------------------------------------------------------------------------------
async def read_registry(config_path: Path) -> dict[str, Any]:
    """Every registered message, every queue event (a fresh consumer group) and dead letter."""
    config = load_config(config_path)
    registry = build_registry(config.registry, config.section("normalizer"))
    await registry.open()
    try:
        messages, before = [], None
        while page := await registry.list_messages(limit=1000, before=before):
            messages.extend(page)
            before = page[-1].id
        events = []
        while batch := await registry.read_events("soak-check", "soak", count=1000):
            events.extend(batch)
        dead_letters = await registry.list_dead_letters(include_resolved=True)
    finally:
        await registry.close()
    return {"messages": messages, "events": events, "dead_letters": dead_letters, "blobs": BlobStore(config.blobs_path)}


def original_kept(complaint: Complaint, blobs: BlobStore) -> bool:
    """Whether the message's raw original is kept: a small one's text in the complaint itself,
    a larger one in the blob store."""
    raw = complaint.meta.get("raw") or {}
    return isinstance(raw.get("text"), str) or (bool(raw.get("sha256")) and blobs.exists(raw["sha256"]))


def check(messages: list[Message], found: dict[str, Any]) -> tuple[dict[str, dict[str, int]], list[tuple[str, int, int]]]:
    """Per-door figures and the promises as (promise, broken count, checked count)."""
    ours = {(CHANNEL_OF[m.door], m.key): m for m in messages}
    registered: Counter[tuple[str, str]] = Counter()
    queued: Counter[tuple[str, str]] = Counter()
    number_of: dict[tuple[str, str], str | None] = {}
    without_original = 0
    for complaint in found["messages"]:
        key = registry_key(complaint.channel, complaint.channel_message_id)
        registered[key] += 1
        number_of[key] = complaint.registration_number
        without_original += not original_kept(complaint, found["blobs"])
    event_ids = set()
    kinds: Counter[str] = Counter()
    registrations = [e for e in found["events"] if e.event in EVENT_KINDS]  # not the actions on them
    for event in found["events"]:
        kinds[event.event] += 1
    for event in registrations:
        complaint = event.payload.get("complaint") or {}
        queued[registry_key(complaint.get("channel", "?"), complaint.get("channel_message_id", "?"))] += 1
        event_ids.add(event.complaint_id)
    message_ids = {c.id for c in found["messages"]}
    unqueued = sum(1 for c in found["messages"] if not c.auto_submitted and c.id not in event_ids)
    orphan_events = sum(1 for e in registrations if e.complaint_id not in message_ids)

    succeeded = [m for m in messages if m.outcome == "success"]
    others = [m for m in messages if m.outcome != "success"]
    keys = set(registered) | set(queued)
    numbered = [m for m in succeeded if m.door in ("web", "smtp")]
    server_errors = sum(n for m in messages for answer, n in m.answers.items() if answer in ("500", "502", "504"))
    promises = [
        ("success answer -> registered and queued exactly once",
         sum(1 for m in succeeded if (registered[(CHANNEL_OF[m.door], m.key)], queued[(CHANNEL_OF[m.door], m.key)]) != (1, 1)),
         len(succeeded)),
        ("no message registered or queued twice", sum(1 for k in keys if registered[k] > 1 or queued[k] > 1), len(keys)),
        ("no registration without its event, no event without its registration", unqueued + orphan_events,
         len(found["messages"]) + len(registrations)),
        ("no success -> absent or registered once (with its event)",
         sum(1 for m in others if (registered[(CHANNEL_OF[m.door], m.key)], queued[(CHANNEL_OF[m.door], m.key)]) not in ((0, 0), (1, 1))),
         len(others)),
        ("only messages that were sent are registered", sum(1 for k in keys if k not in ours), len(keys)),
        ("answered registration number = registered one",
         sum(1 for m in numbered if m.number != number_of.get((CHANNEL_OF[m.door], m.key))), len(numbered)),
        ("raw original kept (in the complaint or the blob store)", without_original, len(found["messages"])),
        ("no dead letters from valid messages", len(found["dead_letters"]), len(messages)),
        ("no 5xx other than 503", server_errors, sum(m.attempts for m in messages)),
    ]
    figures: dict[str, dict[str, int]] = {}
    for door in (*DOORS, "total"):
        group = [m for m in messages if door in (m.door, "total")]
        channels = {CHANNEL_OF[d] for d in DOORS} if door == "total" else {CHANNEL_OF[door]}
        figures[door] = {
            "sent": len(group),
            "succeeded": sum(m.outcome == "success" for m in group),
            "retried messages": sum(m.attempts > 1 for m in group),
            "retry attempts": sum(m.attempts - 1 for m in group),
            "no success": sum(m.outcome != "success" for m in group),
            "  client gave up": sum(m.outcome == "abandoned" for m in group),
            "  refused": sum(m.outcome == "refused" for m in group),
            "  no success by deadline": sum(m.outcome == "unfinished" for m in group),
            "  of these registered": sum(registered[(CHANNEL_OF[m.door], m.key)] > 0 for m in group if m.outcome != "success"),
            "answers: try again": sum(n for m in group for a, n in m.answers.items() if a in ("503", "451")),
            "answers: none (conn. error)": sum(n for m in group for a, n in m.answers.items() if not a.isdigit()),
            "web answers 200 (duplicate)": sum(m.answers["200"] for m in group if m.door == "web"),
            "registered": sum(n for k, n in registered.items() if k[0] in channels),
            "queued": sum(n for k, n in queued.items() if k[0] in channels),
        }
    figures["events"] = dict(kinds)
    return figures, promises


def print_report(args: argparse.Namespace, figures: dict[str, dict[str, int]], promises: list[tuple[str, int, int]],
                 events: Counter[str], seconds: float, stop_status: int) -> None:
    print(f"\nsoak: backend={args.backend} messages={args.messages} clients={args.clients} "
          f"kills={events['kills']}/{args.kills} unexpected exits={events['unexpected_exits']} "
          f"graceful stop exit={stop_status} seconds={seconds:.1f}")
    print(f"{'':30}" + "".join(f"{d:>10}" for d in (*DOORS, "total")))
    for row in figures["total"]:
        print(f"{row:30}" + "".join(f"{figures[d][row]:>10}" for d in (*DOORS, "total")))
    print("queue events by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(figures["events"].items())))
    print(f"\n{'promise':70}{'broken':>8}{'checked':>9}  result")
    for name, broken, checked in promises:
        print(f"{name:70}{broken:>8}{checked:>9}  {'ok' if not broken else 'BROKEN'}")


def delete_keys(url: str, prefix: str) -> None:
    """Remove this run's keys from a shared Redis (only those under its own prefix)."""
    client = redis.Redis.from_url(url)
    try:
        batch = []
        for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


# -- the run ----------------------------------------------------------------------------------
def write_config(path: Path, args: argparse.Namespace, http_port: int, smtp_port: int, redis_url: str, prefix: str,
                 telegram: FakeTelegram) -> None:
    config = {
        "http": {"host": "127.0.0.1", "port": http_port, "shutdown_timeout_seconds": 10},
        "registry": {"backend": args.backend,
                     "sqlite": {"path": str(path.parent / "registry.sqlite3"), "synchronous": args.sqlite_synchronous,
                                "writer_process": args.sqlite_writer_process},
                     "redis": {"url": redis_url, "prefix": prefix}},
        "blobs": {"path": str(path.parent / "blobs"), "fsync": True},
        "normalizer": {"default_region": "RU", "timezone": "Europe/Moscow", "default_language": "ru"},
        "logging": {"level": "WARNING", "format": "json"},
        "channels": {
            "web": {"adapter": "web_form", "rate_limit_per_minute": 0},
            "email": {"adapter": "smtp", "host": "127.0.0.1", "port": smtp_port, "recipients": [RECIPIENT],
                      "from_address": RECIPIENT},
            "telegram": {"adapter": "telegram", "mode": "webhook", "token": TELEGRAM_TOKEN, "secret_token": TELEGRAM_SECRET,
                         "api_base_url": telegram.base_url, "file_base_url": telegram.base_file_url},
        },
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")


async def soak(args: argparse.Namespace, workdir: Path) -> int:
    started = time.monotonic()
    rng = random.Random(args.seed)
    run_id = secrets.token_hex(4)
    own_redis = OwnRedis(workdir) if args.backend == "redis" and not args.redis_url else None
    if own_redis is not None:
        if shutil.which("redis-server") is None:
            raise SystemExit("soak: redis-server is not installed; give --redis-url")
        own_redis.start()
    redis_url = args.redis_url or (own_redis.url if own_redis else "redis://127.0.0.1:6379/0")
    prefix = f"soak-{run_id}:"
    telegram = FakeTelegram(TELEGRAM_TOKEN)
    await telegram.start()
    http_port, smtp_port = free_port(), free_port()
    config_path = workdir / "config.yaml"
    write_config(config_path, args, http_port, smtp_port, redis_url, prefix, telegram)
    gateway = GatewayProcess(config_path, http_port, workdir / "gateway.log")
    messages = make_messages(args.messages, run_id, rng, args.customers)
    queue: asyncio.Queue[Message] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)
    reserve = min(120.0, args.max_seconds * 0.25)  # for stopping the gateway and reading the registry
    events: Counter[str] = Counter()
    # the last kill leaves the clients room to run past it (kill_slack) and messages in flight
    latest = max(int(args.messages * 0.05), min(int(args.messages * 0.95), args.messages - 2 * args.clients))
    thresholds = sorted(rng.randint(int(args.messages * 0.05), latest) for _ in range(args.kills))
    stop_status = -1
    try:
        await gateway.start()
        connector = aiohttp.TCPConnector(limit=args.clients * 2)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            with ThreadPoolExecutor(max_workers=args.clients, thread_name_prefix="smtp-client") as threads:
                run = Run(f"http://127.0.0.1:{http_port}", session, threads, smtp_port,
                          started + args.max_seconds - reserve, rng, args.give_up, kills_due=thresholds,
                          kill_slack=args.clients)
                stop = asyncio.Event()
                side = [asyncio.create_task(killer(run, gateway, stop, events)),
                        asyncio.create_task(progress(run, len(messages), started, stop, events))]
                clients = [asyncio.create_task(client(run, queue)) for _ in range(args.clients)]
                try:
                    await asyncio.wait_for(asyncio.gather(*clients), timeout=max(1.0, run.deadline - time.monotonic() + 5))
                except TimeoutError:
                    print("soak: the deadline passed with messages still in flight", file=sys.stderr)
                stop.set()
                await asyncio.gather(*side)
        stop_status = await gateway.stop()
        found = await read_registry(config_path)
    finally:
        if gateway.proc is not None and gateway.proc.poll() is None:
            gateway.kill()
        await telegram.close()
        if own_redis is not None:
            own_redis.stop()

    figures, promises = check(messages, found)
    if stop_status != 0:
        promises.append(("graceful stop (SIGTERM) exits 0", 1, 1))
    if events["unexpected_exits"]:
        promises.append(("the gateway exits only when killed", events["unexpected_exits"], gateway.starts))
    seconds = time.monotonic() - started
    print_report(args, figures, promises, events, seconds, stop_status)
    broken = any(b for _, b, _ in promises)
    total = figures["total"]
    incomplete = total["  refused"] + total["  no success by deadline"] > 0 or events["kills"] < args.kills
    if args.json:
        print(json.dumps({"backend": args.backend, "seconds": round(seconds, 1), "kills": events["kills"],
                          "figures": figures, "promises": [{"promise": p, "broken": b, "checked": c} for p, b, c in promises],
                          "broken": broken, "incomplete": incomplete}, ensure_ascii=False))
    if broken:
        where = f" and under {prefix!r} at {redis_url}" if args.backend == "redis" and own_redis is None else ""
        print(f"\nsoak: PROMISE BROKEN; gateway log and data kept in {workdir}{where}", file=sys.stderr)
        return 1
    if args.backend == "redis" and own_redis is None:
        delete_keys(redis_url, prefix)
    if incomplete:
        print(f"\nsoak: run incomplete; gateway log and data kept in {workdir}", file=sys.stderr)
        return 2
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--messages", type=int, default=20_000, help="messages to send (default 20000)")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs of the gateway during the run (default 5)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--customers", type=int, default=500, help="distinct customers the messages come from")
    parser.add_argument("--give-up", type=float, default=0.1,
                        help="chance that a client gives up after an attempt without success (default 0.1)")
    parser.add_argument("--max-seconds", type=float, default=900, help="the whole run's time limit (default 900)")
    parser.add_argument("--redis-url", default=os.environ.get("SOAK_REDIS_URL"),
                        help="an existing Redis to use (keys under a fresh prefix); default: a private redis-server")
    parser.add_argument("--sqlite-synchronous", choices=("NORMAL", "FULL"), default="FULL")
    parser.add_argument("--sqlite-writer-process", action="store_true",
                        help="SQLite's submits in a writer process (registry.sqlite.writer_process); a kill leaves it to end alone")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one each run)")
    parser.add_argument("--workdir", type=Path, help="keep config, data and the gateway log here")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the fake Telegram API sees acknowledgements cut off by the kills: expected, not worth a traceback
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.messages} messages, {args.kills} kills, backend {args.backend}, seed {args.seed}, in {workdir}",
          file=sys.stderr)
    status = asyncio.run(soak(args, workdir))
    if status == 0 and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
