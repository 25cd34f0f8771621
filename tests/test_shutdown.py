"""Graceful shutdown: a gateway process gets SIGTERM while messages are in flight. Each one
either finishes with success (and is registered once, with its queue event and its raw
original) or gets a "try again" answer or none (and is then absent, never half-written)."""
from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.blobs import BlobStore
from gateway.testing.plugin import base_config
from gateway.testing.servers import OwnRedis
from scripts.soak import GatewayProcess, free_port, original_kept, read_registry, registry_key

RECIPIENT = "complaints@example.com"
SHUTDOWN_SECONDS = 3
COMPLAINT = {"email": "anna@example.com", "text": "Нет связи третий день, прошу разобраться."}


@dataclass
class Gateway:
    """A gateway process, its registry backend, and a way to hold that backend still."""

    process: GatewayProcess
    smtp_port: int
    backend: str
    folder: Path
    redis: OwnRedis | None = None

    @contextmanager
    def registry_blocked(self) -> Iterator[None]:
        """Submits wait while inside: an SQLite write lock held, or the Redis server stopped."""
        if self.redis is not None:
            assert self.redis.proc is not None
            self.redis.proc.send_signal(signal.SIGSTOP)
            try:
                yield
            finally:
                self.redis.proc.send_signal(signal.SIGCONT)
            return
        db = sqlite3.connect(self.folder / "registry.sqlite3", isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()

    def blobs(self) -> int:
        """Blobs stored (not counting temporaries of blobs being written)."""
        return len(list(BlobStore(self.folder / "blobs").digests()))


@pytest.fixture(params=["sqlite", "sqlite_writer_process", "redis"])
async def gateway(request: pytest.FixtureRequest, tmp_path: Path):
    own = OwnRedis(tmp_path) if request.param == "redis" else None
    if own is not None:
        own.start()
    http_port, smtp_port = free_port(), free_port()
    backend = "redis" if request.param == "redis" else "sqlite"
    raw = base_config(tmp_path, backend=backend, redis_url=own.url if own else None, channels={
        "web": {"adapter": "web_form", "rate_limit_per_minute": 0},
        "email": {"adapter": "smtp", "host": "127.0.0.1", "port": smtp_port, "recipients": [RECIPIENT]}})
    raw["http"] = {"host": "127.0.0.1", "port": http_port, "shutdown_timeout_seconds": SHUTDOWN_SECONDS}
    raw["logging"] = {"level": "WARNING"}
    raw["registry"]["sqlite"]["writer_process"] = request.param == "sqlite_writer_process"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    process = GatewayProcess(config_path, http_port, tmp_path / "gateway.log")
    await process.start()
    yield Gateway(process, smtp_port, request.param, tmp_path, own)
    if not process.exited():
        process.kill()
    if own is not None:
        own.stop()


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


async def until(predicate: Any, timeout: float = 30.0) -> None:
    """Wait for a condition (raises TimeoutError), polling it."""
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(predicate):
            await asyncio.sleep(0.02)


async def terminate(gateway: Gateway) -> None:
    """SIGTERM, and wait until the gateway no longer accepts connections: it is shutting down."""
    process = gateway.process
    assert process.proc is not None
    process.proc.send_signal(signal.SIGTERM)
    await until(lambda: refuses_connections(process.http_port))


async def exit_status(gateway: Gateway) -> int:
    assert gateway.process.proc is not None
    return int(await asyncio.to_thread(gateway.process.proc.wait, SHUTDOWN_SECONDS * 3))


async def registered(gateway: Gateway) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (channel, key): how often registered and queued, the registration numbers, and
    whether every registered message has its raw original (in itself or in the blob store)."""
    found = await read_registry(gateway.process.config_path)
    keys: dict[tuple[str, str], dict[str, Any]] = {}
    for complaint in found["messages"]:
        entry = keys.setdefault(registry_key(complaint.channel, complaint.channel_message_id),
                                {"messages": 0, "events": 0, "numbers": set(), "raw_stored": True})
        entry["messages"] += 1
        entry["numbers"].add(complaint.registration_number)
        entry["raw_stored"] &= original_kept(complaint, found["blobs"])
    for event in found["events"]:
        complaint = event.payload["complaint"]
        key = registry_key(complaint["channel"], complaint["channel_message_id"])
        keys.setdefault(key, {"messages": 0, "events": 0, "numbers": set(), "raw_stored": False})["events"] += 1
    return keys


def request_head(key: str, length: int) -> bytes:
    return (f"POST /web/complaints HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {key}\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n").encode()


def complaint_body(key: str, padding: int = 0) -> bytes:
    return json.dumps({**COMPLAINT, "text": COMPLAINT["text"] + " " + key + " " + "." * padding}, ensure_ascii=False).encode()


async def test_request_waiting_for_the_registry_at_sigterm_finishes_and_is_registered(gateway: Gateway) -> None:
    body = complaint_body("in-flight-1", padding=2000)  # an original too large to keep in the complaint: a blob
    with gateway.registry_blocked():
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.process.http_port)
        writer.write(request_head("in-flight-1", len(body)) + body)
        await writer.drain()
        await until(lambda: gateway.blobs() == 1)  # the raw original is stored: the handler waits in submit()
        await terminate(gateway)
    response = await asyncio.wait_for(reader.read(), timeout=SHUTDOWN_SECONDS * 2)
    writer.close()
    status_line = response.split(b"\r\n\r\n")[1]  # after "100 Continue"
    assert status_line.startswith(b"HTTP/1.1 201"), response[:300]
    number = json.loads(response.rpartition(b"\r\n\r\n")[2])["registration_number"]
    assert await exit_status(gateway) == 0

    assert await registered(gateway) == {
        ("web", "in-flight-1"): {"messages": 1, "events": 1, "numbers": {number}, "raw_stored": True}}


async def test_upload_still_arriving_at_sigterm_gets_no_answer_and_nothing_is_written(gateway: Gateway) -> None:
    """aiohttp reads nothing more from a connection once it shuts down: the sender hears
    nothing (a retry, as for a crash) and the registry holds nothing of the message."""
    body = complaint_body("slow-upload-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.process.http_port)
    writer.write(request_head("slow-upload-1", len(body)) + body[:20])
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")  # the handler is reading the body
    await terminate(gateway)
    writer.write(body[20:])
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=SHUTDOWN_SECONDS * 2)
    writer.close()
    assert answer == b""  # closed after shutdown_timeout_seconds without an answer
    assert await exit_status(gateway) == 0
    assert await registered(gateway) == {}

    await gateway.process.start()  # the sender retries with the same key after the restart
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{gateway.process.http_port}/web/complaints", data=body,
            headers={"Idempotency-Key": "slow-upload-1", "Content-Type": "application/json"}) as resp:
        assert resp.status == 201
        number = (await resp.json())["registration_number"]
    await gateway.process.stop()
    assert await registered(gateway) == {
        ("web", "slow-upload-1"): {"messages": 1, "events": 1, "numbers": {number}, "raw_stored": True}}


async def test_mail_in_flight_at_sigterm_is_accepted_or_deferred_never_half_written(gateway: Gateway) -> None:
    port = gateway.smtp_port
    client = await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", port, timeout=SHUTDOWN_SECONDS * 2)
    mail = (f"From: anna@example.com\r\nTo: {RECIPIENT}\r\nSubject: slow\r\nMessage-ID: <slow-1@example.com>\r\n\r\n"
            "Пропал интернет, пишу медленно.\r\n").encode()
    await asyncio.to_thread(client.ehlo)
    assert (await asyncio.to_thread(client.mail, "anna@example.com"))[0] == 250
    assert (await asyncio.to_thread(client.rcpt, RECIPIENT))[0] == 250
    await asyncio.to_thread(client.putcmd, "data")
    assert (await asyncio.to_thread(client.getreply))[0] == 354
    await asyncio.to_thread(client.send, mail[:40])

    await terminate(gateway)
    await until(lambda: refuses_connections(port))  # the SMTP door is closed too: the registry is going away
    try:
        await asyncio.to_thread(client.send, mail[40:] + b".\r\n")
        code, reply = await asyncio.to_thread(client.getreply)
    except (OSError, smtplib.SMTPServerDisconnected):
        code, reply = 0, b"connection closed"  # no answer: the sender keeps the mail and retries
    assert await exit_status(gateway) == 0

    keys = await registered(gateway)
    entry = keys.get(("email", "slow-1@example.com"))
    if code == 250:
        assert entry is not None and (entry["messages"], entry["events"], entry["raw_stored"]) == (1, 1, True)
        assert entry["numbers"] == {reply.decode().split()[-1]}
    else:
        assert code in (0, 421, 451), (code, reply)
        assert entry is None, entry


async def test_sigterm_under_load_leaves_nothing_half_written(gateway: Gateway) -> None:
    """Clients keep sending until the gateway is gone; every answer agrees with the registry."""
    answers: dict[str, tuple[int, str | None]] = {}
    url = f"http://127.0.0.1:{gateway.process.http_port}/web/complaints"

    async def web_client(session: aiohttp.ClientSession, name: str) -> None:
        for i in range(10_000):
            key = f"{name}-{i}"
            try:
                async with session.post(url, data=complaint_body(key), headers={
                        "Idempotency-Key": key, "Content-Type": "application/json"}) as resp:
                    body = await resp.json(content_type=None)
                    answers[key] = (resp.status, body.get("registration_number"))
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
                answers[key] = (0, None)
                return  # the gateway is gone

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SHUTDOWN_SECONDS * 2)) as session:
        clients = [asyncio.create_task(web_client(session, f"load{n}")) for n in range(8)]
        await until(lambda: sum(status == 201 for status, _ in answers.values()) >= 40)
        assert gateway.process.proc is not None
        gateway.process.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*clients), timeout=SHUTDOWN_SECONDS * 3)
    assert await exit_status(gateway) == 0

    keys = await registered(gateway)
    assert set(keys) <= {("web", key) for key in answers}
    for key, (status, number) in answers.items():
        entry = keys.get(("web", key))
        if status in (200, 201):
            assert entry is not None and entry["numbers"] == {number}, (key, entry)
        elif status == 503:
            assert entry is None, (key, entry)  # told to try again: nothing was written
        else:
            assert status == 0, (key, status)  # no answer: absent or registered whole
        if entry is not None:
            assert (entry["messages"], entry["events"], entry["raw_stored"]) == (1, 1, True), (key, entry)
    assert sum(status == 201 for status, _ in answers.values()) >= 40
