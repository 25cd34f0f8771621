"""Core behaviour: config validation, adapter discovery, the intake sink, dead letters and
replay, health and metrics, the pull adapter's backoff, the CLI and graceful shutdown."""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.adapters import AdapterContext, PullAdapter
from gateway.app import BLOBS, INTAKE, create_app
from gateway.blobs import BlobStore
from gateway.config import ConfigError, from_dict, load_config
from gateway.inbound import Inbound, InboundAttachment
from gateway.logs import JsonFormatter, TextFormatter
from gateway.metrics import Metrics
from gateway.testing.servers import free_port
from normalizer.schema import json_schema
from tests.conftest import base_config, registry_of
from tests.test_registry_contract import complaint as contract_complaint

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "gateway.cli"]


async def started(start_gateway: Any, config: Any) -> tuple[Any, Any, Any]:
    """A gateway started with ``config``: its test client, its intake and its registry."""
    client = await start_gateway(config)
    return client, client.server.app[INTAKE], registry_of(client)


# -- configuration ------------------------------------------------------------------------
def test_unknown_adapter_fails_with_did_you_mean(tmp_path: Path) -> None:
    config = from_dict(base_config(tmp_path, channels={"site": {"adapter": "web_from"}}))
    with pytest.raises(ConfigError, match=r"channels\.site\.adapter: unknown adapter 'web_from'; did you mean 'web_form'\?"):
        create_app(config)


def test_channel_settings_are_validated_naming_the_key(tmp_path: Path) -> None:
    config = from_dict(base_config(tmp_path, channels={"site": {"adapter": "web_form", "max_attachments": "many"}}))
    with pytest.raises(ConfigError, match=r"channels\.site\.max_attachments: 'many' is not of type 'integer'"):
        create_app(config)


def test_core_sections_are_validated_naming_the_key(tmp_path: Path) -> None:
    raw = base_config(tmp_path)
    raw["registry"]["backend"] = "postgres"
    with pytest.raises(ConfigError, match=r"registry\.backend: 'postgres' is not one of"):
        from_dict(raw)


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("http: {port: '${TEST_PORT:-8081}'}\nregistry: {redis: {url: '${SECRET_URL}'}}\n")
    with pytest.raises(ConfigError, match=r"registry\.redis\.url: environment variable SECRET_URL is not set"):
        load_config(path, env={})
    config = load_config(path, env={"SECRET_URL": "redis://:s3cret@127.0.0.1:6379/2"})
    assert config.http["port"] == 8081
    assert config.section("registry")["redis"]["url"] == "redis://:s3cret@127.0.0.1:6379/2"


def test_shipped_config_is_valid_and_has_no_literal_secrets() -> None:
    config = load_config(ROOT / "config.yaml", env={})
    assert config.section("registry")["backend"] == "sqlite"
    assert config.http["host"] == "127.0.0.1"
    text = (ROOT / "config.yaml").read_text()
    for line in text.splitlines():
        key = line.split("#")[0].strip().lower()
        if any(word in key for word in ("password:", "token:", "secret:", "auth_token:")):
            assert "${" in key, f"literal secret in config.yaml: {line!r}"


# -- the sink -----------------------------------------------------------------------------
async def test_raw_and_attachments_are_stored_before_registration(make_config, start_gateway, tmp_path: Path) -> None:
    client = await start_gateway(make_config())
    intake = client.server.app[INTAKE]
    raw = b"raw bytes of the request " + b"x" * 1024  # above intake.inline_original_max_bytes: a blob
    inbound = Inbound(channel="web", message_id="m-1", identities=[("email", "A@Example.com")],
                      text="Счёт за март выставлен дважды", raw=raw,
                      attachments=[InboundAttachment("bill.pdf", "application/pdf", data=b"%PDF bill")])
    submitted = await intake.submit(inbound)
    assert submitted.receipt.status == "new"
    blobs = intake.blobs
    assert blobs.get_sync(inbound.raw_sha256 or "") == raw
    assert submitted.complaint.meta["raw"] == {"sha256": inbound.raw_sha256, "content_type": "application/octet-stream"}
    attachment = submitted.complaint.attachments[0]
    assert blobs.get_sync(attachment.sha256) == b"%PDF bill" and attachment.size == 9


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_small_text_original_is_kept_in_the_complaint_and_a_binary_one_in_the_blob_store(
        make_config, start_gateway, redis_url: str, backend: str) -> None:
    client, intake, registry = await started(
        start_gateway, make_config(backend=backend, redis_url=redis_url, intake={"inline_original_max_bytes": 64}))
    originals = {
        "form": (b'{"text":"\xd0\x9d\xd0\xb5\xd1\x82 \xd1\x81\xd0\xb2\xd0\xb5\xd1\x82\xd0\xb0"}', "text"),
        "lines": (b"line one\r\n\tline two\n", "text"),
        "nul": (b"text\x00with a NUL", "sha256"),  # a control character: kept as it came, in the blob store
        "latin1": ("Zażółć".encode("latin-1", "replace"), "sha256"),  # not UTF-8
        "long": (b"y" * 65, "sha256"),  # above the limit
    }
    for i, (name, (raw, kept_as)) in enumerate(originals.items()):
        inbound = Inbound(channel="web", message_id=f"m-{name}", identities=[("phone", f"+7916123{i:04d}")],
                          text="Нет света в подъезде", raw=raw, raw_content_type="application/json")
        submitted = await intake.submit(inbound)
        assert submitted.complaint is not None
        stored = await registry.get_message(submitted.complaint.id)
        assert stored is not None
        kept = stored.meta["raw"]
        assert set(kept) == {"content_type", kept_as}, name
        assert kept["content_type"] == "application/json"
        if kept_as == "text":
            assert kept["text"].encode("utf-8") == raw and inbound.raw_sha256 is None
            assert not intake.blobs.exists(hashlib.sha256(raw).hexdigest())
        else:
            assert intake.blobs.get_sync(kept["sha256"]) == raw


async def test_a_dead_letter_keeps_its_small_original_as_text_for_the_replay(make_config, start_gateway) -> None:
    client, intake, registry = await started(start_gateway, make_config())
    inbound = Inbound(channel="web", message_id="m-empty", identities=[("phone", "+79161230001")], text="   ",
                      raw=b'{"text":"   "}', raw_content_type="application/json")
    assert (await intake.submit(inbound)).receipt.status == "dead_letter"
    dead = await registry.list_dead_letters()
    assert dead[0]["record"]["raw_text"] == '{"text":"   "}' and dead[0]["record"]["raw_sha256"] is None
    record = {**dead[0], "record": {**dead[0]["record"], "text": "Теперь с текстом: нет воды"}}  # an operator's fix
    replayed = await intake.replay(record)
    assert replayed.receipt.status == "new" and replayed.complaint is not None
    assert replayed.complaint.meta["raw"] == {"content_type": "application/json", "text": '{"text":"   "}'}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_messages_arriving_together_are_written_in_batches_each_with_its_own_answer(
        make_config, start_gateway, redis_url: str, backend: str) -> None:
    client, intake, registry = await started(start_gateway, make_config(backend=backend, redis_url=redis_url, intake={"max_batch": 8}))
    batches: list[int] = []
    real_submit_many = registry.submit_many

    async def counting(complaints: Any, plans: Any = None) -> Any:
        batches.append(len(complaints))
        return await real_submit_many(complaints, plans)

    registry.submit_many = counting
    inbounds = [Inbound(channel="web", message_id=f"m-{i}", identities=[("phone", f"+7916123{i:04d}")],
                        text=f"Нет связи в квартире номер {i}", raw=f"raw {i}".encode()) for i in range(20)]
    inbounds[5].text = "   "  # unusable: a dead letter in the middle of a batch
    inbounds[9] = Inbound(channel="web", message_id="m-3", identities=[("phone", "+79161230003")],
                          text="a redelivery of m-3", raw=b"raw 3")
    results = await asyncio.gather(*(intake.submit(inbound) for inbound in inbounds))
    assert batches == [7, 8, 4]  # 20 messages handed over at once in batches of 8; the first holds the dead letter
    statuses = [r.receipt.status for r in results]
    assert statuses[5] == "dead_letter" and statuses[9] == "duplicate"
    assert statuses.count("new") == 18
    numbers = [r.receipt.registration_number for r in results]
    assert numbers[9] == numbers[3]
    assert len({n for i, n in enumerate(numbers) if i not in (5, 9)}) == 18
    for inbound, result in zip(inbounds, results):
        if result.complaint is not None:
            assert result.complaint.customer.identities[0].value == inbound.identities[0][1]
            assert result.complaint.meta["raw"]["text"] == inbound.raw.decode()  # small text: kept in the complaint
    assert await registry.queue_length() == 18
    assert len(await registry.list_dead_letters()) == 1


class HeldRegistrations:
    """The registry's round trips held until ``release`` is set; ``batches``: each one's message ids."""

    def __init__(self, registry: Any) -> None:
        self.real_submit_many = registry.submit_many
        self.batches: list[list[str]] = []
        self.registering, self.release = asyncio.Event(), asyncio.Event()
        registry.submit_many = self.submit_many

    async def submit_many(self, complaints: Any, plans: Any = None) -> Any:
        self.batches.append([c.channel_message_id for c in complaints])
        self.registering.set()
        await self.release.wait()
        return await self.real_submit_many(complaints, plans)


def record_calls(owner: Any, method: str, what: Any) -> list[Any]:
    """``owner.method`` replaced by itself recording ``what(argument)`` of each call, in the list returned."""
    real, calls = getattr(owner, method), []

    def recording(argument: Any) -> Any:
        calls.append(what(argument))
        return real(argument)

    setattr(owner, method, recording)
    return calls


def submit_numbered(intake: Any, i: int, raw: bytes | None = None) -> asyncio.Future[Any]:
    return asyncio.ensure_future(intake.submit(Inbound(channel="web", message_id=f"m-{i}", identities=[("phone", f"+7916123{i:04d}")],
                                                       text=f"Нет связи в квартире номер {i}", raw=raw)))


async def submitted_while_the_first_registers(intake: Any, held: HeldRegistrations, more: int,
                                              raw: bytes | None = None) -> list[asyncio.Future[Any]]:
    """m-1 handed over and held in its registration, then ``more`` messages one at a time."""
    submitted = [submit_numbered(intake, 1, raw)]
    await asyncio.wait_for(held.registering.wait(), 5)
    for i in range(2, 2 + more):
        submitted.append(submit_numbered(intake, i, raw))
        await asyncio.sleep(0.01)
    return submitted


async def test_a_message_handed_over_while_the_last_batch_registers_is_registered_too(make_config, start_gateway) -> None:
    client, intake, registry = await started(start_gateway, make_config())
    held = HeldRegistrations(registry)
    try:
        submitted = await submitted_while_the_first_registers(intake, held, 1)
    finally:
        held.release.set()
    done = await asyncio.wait_for(asyncio.gather(*submitted), 5)
    assert [(d.receipt.status, d.receipt.registration_number[-6:]) for d in done] == [("new", "000001"), ("new", "000002")]
    assert await registry.queue_length() == 2


async def test_messages_are_prepared_while_earlier_ones_register_and_then_registered_together_in_order(
        make_config, start_gateway) -> None:
    client, intake, registry = await started(start_gateway, make_config())
    normalized = record_calls(intake.normalizer, "normalize", lambda inbound: inbound.message_id)
    held = HeldRegistrations(registry)
    try:  # m-2, m-3 and m-4 each a batch of its own
        submitted = await submitted_while_the_first_registers(intake, held, 3)
        assert normalized == ["m-1", "m-2", "m-3", "m-4"]  # prepared while the first registration waits
        assert held.batches == [["m-1"]]
    finally:
        held.release.set()  # or the gateway's shutdown waits for the held registration
    done = await asyncio.wait_for(asyncio.gather(*submitted), 5)
    assert held.batches == [["m-1"], ["m-2", "m-3", "m-4"]]  # what was prepared meanwhile: one round trip
    assert [d.receipt.registration_number[-6:] for d in done] == ["000001", "000002", "000003", "000004"]
    assert await registry.queue_length() == 4


async def test_messages_with_blobs_to_flush_gather_while_a_registration_is_under_way_and_share_one_flush(
        make_config, start_gateway) -> None:
    client, intake, registry = await started(start_gateway, make_config())
    staged = record_calls(intake.blobs, "stage", len)  # messages per flush
    held = HeldRegistrations(registry)
    try:  # mail-sized originals: above the 1 KB kept in the complaint, so each a blob
        submitted = await submitted_while_the_first_registers(intake, held, 3, raw=b"x" * 2000)
        assert staged == [1]  # the others wait for the registration under way
    finally:
        held.release.set()
    done = await asyncio.wait_for(asyncio.gather(*submitted), 5)
    assert staged == [1, 3]  # and then reach the disk with one flush
    assert held.batches == [["m-1"], ["m-2", "m-3", "m-4"]]
    assert [d.receipt.registration_number[-6:] for d in done] == ["000001", "000002", "000003", "000004"]
    assert all(intake.blobs.exists(d.complaint.meta["raw"]["sha256"]) for d in done)


async def test_a_registry_failure_for_one_message_fails_only_that_message(make_config, start_gateway) -> None:
    client, intake, registry = await started(start_gateway, make_config())
    real_submit_many = registry.submit_many

    async def second_fails(complaints: Any, plans: Any = None) -> Any:
        receipts = await real_submit_many(complaints, plans)
        return [ConnectionError("lost") if i == 1 else r for i, r in enumerate(receipts)]

    registry.submit_many = second_fails
    inbounds = [Inbound(channel="web", message_id=f"m-{i}", identities=[("phone", f"+7916123{i:04d}")],
                        text=f"Нет связи в квартире номер {i}") for i in range(3)]
    results = await asyncio.gather(*(intake.submit(inbound) for inbound in inbounds), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["Submitted", "TemporaryFailure", "Submitted"]
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_failed_total{channel="web",reason="temporary"} 1.0' in metrics
    assert 'complaint_gateway_registered_total{channel="web",status="new"} 2.0' in metrics


async def test_unusable_message_goes_to_dead_letters_and_replays(make_config, start_gateway) -> None:
    client, intake, registry = await started(start_gateway, make_config())
    empty = Inbound(channel="web", message_id="m-empty", identities=[("phone", "+48 22 123 45 67")], text="   ",
                    raw=b'{"text": "   "}')
    submitted = await intake.submit(empty)
    assert submitted.receipt.status == "dead_letter" and submitted.complaint is None
    dead = await registry.list_dead_letters()
    assert len(dead) == 1 and "no text" in dead[0]["reason"]
    assert dead[0]["record"]["raw_sha256"] == empty.raw_sha256
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_failed_total{channel="web",reason="dead_letter"} 1.0' in metrics
    assert "complaint_gateway_dead_letters 1.0" in metrics

    # still unusable: stays a dead letter
    again = await intake.replay(dead[0])
    assert again.receipt.status == "dead_letter"
    # an operator fixed the record (or the normaliser was fixed): replay registers it once
    dead[0]["record"]["text"] = "Текст из скана, введённый оператором"
    replayed = await intake.replay(dead[0])
    assert replayed.receipt.status == "new"
    assert await registry.list_dead_letters() == []
    assert await registry.queue_length() == 1


async def test_metrics_count_open_registrations_and_overdue_ones_per_deadline(make_config, start_gateway) -> None:
    client, _, registry = await started(start_gateway, make_config())
    now = datetime.now(timezone.utc)

    def at(hours: float) -> str:
        return (now + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")

    numbers = []
    for i, deadlines in enumerate([{"acknowledge": at(-1), "respond": at(40)}, {"acknowledge": at(0.5), "respond": at(40)},
                                   {"acknowledge": at(-3), "respond": at(-2)}]):
        c = contract_complaint(f"Жалоба {i}: нет связи", ids=[("phone", f"+7916555{i:04d}")])
        c.deadlines = deadlines
        numbers.append((await registry.submit(c)).registration_number)
    await registry.apply_action(numbers[2], "claim", "olga")
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_registrations_pending{deadline="acknowledge"} 2.0' in metrics
    assert 'complaint_gateway_registrations_overdue{deadline="acknowledge"} 1.0' in metrics
    assert 'complaint_gateway_registrations_due_soon{deadline="acknowledge"} 1.0' in metrics  # within the hour
    assert 'complaint_gateway_registrations_pending{deadline="respond"} 1.0' in metrics
    assert 'complaint_gateway_registrations_overdue{deadline="respond"} 1.0' in metrics
    await registry.apply_action(numbers[2], "close", "olga")  # no registration waits for "respond" any more
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_registrations_overdue{deadline="acknowledge"} 1.0' in metrics
    assert 'deadline="respond"' not in metrics


async def test_registry_failure_is_a_temporary_failure_for_the_door(make_config, start_gateway) -> None:
    client = await start_gateway(make_config())
    registry = registry_of(client)

    async def broken(complaints: Any, plans: Any = None) -> Any:
        raise ConnectionError("registry down")

    registry.submit_many = broken  # type: ignore[method-assign]
    resp = await client.post("/web/complaints", json={"phone": "+79161234567", "text": "Нет связи весь день сегодня"})
    assert resp.status == 503
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_failed_total{channel="web",reason="temporary"} 1.0' in metrics


async def test_published_schema_validates_registered_complaints(make_config, start_gateway) -> None:
    client = await start_gateway(make_config())
    await client.post("/web/complaints", json={"name": "Jan Kowalski", "phone": "+48 601 234 567",
                                               "text": "Brak internetu od trzech dni", "lang": "pl"})
    events = await registry_of(client).read_events("t", "c")
    jsonschema.Draft202012Validator(json_schema()).validate(events[0].payload["complaint"])
    assert events[0].payload["complaint"]["language"] == "pl"


async def test_healthz_reports_backend_state(make_config, start_gateway) -> None:
    client = await start_gateway(make_config())
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json()) == {"status": "ok", "backend": "sqlite", "pid": os.getpid()}

    async def down() -> bool:
        return False

    registry_of(client).healthy = down  # type: ignore[method-assign]
    resp = await client.get("/healthz")
    assert resp.status == 503 and (await resp.json())["status"] == "unavailable"


async def test_the_blob_store_is_ready_before_the_first_message(make_config, start_gateway) -> None:
    client = await start_gateway(make_config())
    store = client.app[BLOBS]
    assert (store.root / "small.sqlite3").is_file() and store._db is not None  # opened at start, in a thread


async def test_redis_backend_healthz(make_config, start_gateway, redis_url) -> None:
    client = await start_gateway(make_config(backend="redis"))
    resp = await client.get("/healthz")
    assert (await resp.json())["backend"] == "redis"


# -- the pull adapter base ----------------------------------------------------------------
class FlakyDoor(PullAdapter):
    name = "flaky"

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self.calls = 0
        self.closed = 0
        self.delays: list[float] = []

    async def pull(self) -> None:
        self.calls += 1
        if self.calls <= 4:
            raise ConnectionError(f"door down #{self.calls}")

    async def close(self) -> None:
        self.closed += 1

    def backoff_delay(self, failures: int) -> float:
        delay = super().backoff_delay(failures)
        self.delays.append(delay)
        return delay / 1000  # keep the test fast; the ceiling is what is checked


async def test_pull_adapter_reconnects_with_exponential_backoff_and_jitter(tmp_path: Path) -> None:
    metrics = Metrics()
    context = AdapterContext(instance="flaky", settings={"backoff_initial_seconds": 1, "backoff_max_seconds": 4,
                                                         "poll_interval_seconds": 0.01},
                             sink=None, state=None, metrics=metrics, config=from_dict({}), texts=None)  # type: ignore[arg-type]
    door = FlakyDoor(context)
    await door.start()
    for _ in range(200):
        if door.calls >= 6:
            break
        await asyncio.sleep(0.01)
    await door.stop()
    assert door.calls >= 6
    assert len(door.delays) == 4
    ceilings = [1, 2, 4, 4]
    assert all(0 <= d <= c for d, c in zip(door.delays, ceilings))
    assert door.failures == 0  # reset after the first successful pull
    assert door.closed >= 5  # after each failure and at stop
    assert metrics.pull_failures.labels("flaky")._value.get() == 4


class CancelTurnedIntoAnError(PullAdapter):
    """A door whose client library, cancelled in the middle of a pull, raises an error of its own."""

    name = "cancel_to_error"

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self.pulling = asyncio.Event()

    async def pull(self) -> None:
        self.pulling.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise ConnectionError("the read was cut short") from None


async def test_a_pull_loop_stops_when_the_doors_client_turns_the_cancellation_into_an_error() -> None:
    metrics = Metrics()
    context = AdapterContext(instance="door", settings={"backoff_initial_seconds": 0.01}, sink=None, state=None,  # type: ignore[arg-type]
                             metrics=metrics, config=from_dict({}), texts=None)  # type: ignore[arg-type]
    door = CancelTurnedIntoAnError(context)
    await door.start()
    await asyncio.wait_for(door.pulling.wait(), 5)
    await asyncio.wait_for(door.stop(), 5)  # before: the error looked like a failed pull, and the loop pulled on
    assert door._runner is not None and door._runner.done()
    assert door.failures == 0 and metrics.pull_failures.labels("door")._value.get() == 0


# -- the command line ---------------------------------------------------------------------


def _write_config(tmp_path: Path, port: int, channels: dict[str, Any] | None = None) -> Path:
    raw = base_config(tmp_path, channels=channels)
    raw["http"] = {"host": "127.0.0.1", "port": port, "shutdown_timeout_seconds": 5}
    raw["logging"] = {"level": "INFO", "format": "json"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _post(port: int, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/web/complaints", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def test_cli_run_queue_read_ack_and_sigterm(tmp_path: Path) -> None:
    port, smtp_port = free_port(), free_port()
    config = _write_config(tmp_path, port, channels={
        "web": {"adapter": "web_form", "rate_limit_per_minute": 0},
        "email": {"adapter": "smtp", "port": smtp_port, "recipients": ["complaints@example.com"]}})
    proc = subprocess.Popen([*CLI, "--config", str(config), "run"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        secret_phone, secret_text = "+79035551234", "Сосед шумит, а интернет не работает"
        receipt = _post(port, {"phone": secret_phone, "text": secret_text})
        assert receipt["status"] == "new"
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.sendmail("secret.sender@example.org", ["complaints@example.com"],
                          b"From: secret.sender@example.org\r\nTo: complaints@example.com\r\nSubject: x\r\n\r\n"
                          b"Private words of the customer\r\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert receipt["registration_number"] in stderr  # the registration is logged ...
    assert secret_phone not in stderr and "Сосед" not in stderr  # ... personal data is not
    assert "secret.sender" not in stderr and "Private words" not in stderr
    for line in stderr.splitlines():
        if line.startswith("{"):
            json.loads(line)  # structured: every log line is JSON

    read = subprocess.run([*CLI, "--config", str(config), "queue", "read", "--group", "crm", "--count", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    events = [json.loads(line) for line in read.stdout.splitlines()]
    assert [(e["event"], e["complaint"]["channel"]) for e in events] == [("new", "web"), ("new", "email")]
    assert events[0]["registration_number"] == receipt["registration_number"]
    ack = subprocess.run([*CLI, "--config", str(config), "queue", "ack", "--group", "crm", events[0]["id"], events[1]["id"]],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert json.loads(ack.stdout) == {"acknowledged": 2} and ack.returncode == 0
    again = subprocess.run([*CLI, "--config", str(config), "queue", "read", "--group", "crm"],
                           cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert again.stdout == ""


def test_cli_schema_and_check_config(tmp_path: Path) -> None:
    out = subprocess.run([*CLI, "schema"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    schema = json.loads(out.stdout)
    assert schema["title"] == "Complaint" and "registration_number" in schema["required"]
    ok = subprocess.run([*CLI, "--config", str(ROOT / "config.yaml"), "check-config"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=60, env={**os.environ, "REDIS_URL": "redis://x"})
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels:\n  web:\n    adapter: telegramm\n")
    out = subprocess.run([*CLI, "--config", str(bad), "check-config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "did you mean 'telegram'?" in out.stderr
    for template, why in (("{year}-{seq}/{seq}", "exactly once"), ("{year}\\n{seq}", "control characters")):
        bad.write_text(f'registry:\n  registration_number: {{format: "{template}"}}\n')
        out = subprocess.run([*CLI, "--config", str(bad), "check-config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "registry.registration_number.format" in out.stderr and why in out.stderr, out.stderr
    for term, why in (("газ(", "not a valid regular expression"), (r"(\\w+\\s?)+газ", "repeats a part that repeats itself"),
                      ("@nowhere", "not in words")):  # urgency rules are compiled as `run` compiles them
        bad.write_text(f'normalizer:\n  urgency:\n    rules:\n      - {{name: odd, level: high, patterns: {{ru: ["{term}"]}}}}\n')
        out = subprocess.run([*CLI, "--config", str(bad), "check-config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "normalizer.urgency rule 'odd'" in out.stderr and why in out.stderr, out.stderr
    for section, where in (("{retry: {attempts: 0}}", "acknowledgements"), ("{retry: {every: 5}}", "acknowledgements"),
                           ("{templates: {ru: {short: 'No {number'}}}", "acknowledgements.templates.ru.short")):  # as `run` reads them
        bad.write_text(f"acknowledgements: {section}\n")
        out = subprocess.run([*CLI, "--config", str(bad), "check-config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and where in out.stderr, out.stderr
    bad.write_text("channels:\n  mail:\n    adapter: smtp\n    recipients: [c@example.com]\n    fax:\n      rules:\n"
                   "        - {from_domains: [fax.example.com], subject_pattern: 'Fax from (\\d+\\s?)+'}\n")
    out = subprocess.run([*CLI, "--config", str(bad), "check-config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "channels.mail.fax.rules[0].subject_pattern" in out.stderr, out.stderr  # an adapter's check_settings


def test_cli_replay_processes_dead_letters(tmp_path: Path) -> None:
    config_path = _write_config(tmp_path, free_port())

    async def make_dead_letter() -> str:
        config = load_config(config_path)
        app = create_app(config)
        registry = app[INTAKE].registry
        await registry.open()
        try:
            submitted = await app[INTAKE].submit(Inbound(channel="web", message_id="x", identities=[("phone", "+79161112233")], text=""))
            dead = await registry.list_dead_letters()
            dead_id = dead[0]["id"]
            assert submitted.receipt.dead_letter_id == dead_id
            # the operator's fix: the text was recovered from the raw original
            entry = dead[0]["record"]
            entry["text"] = "Текст восстановлен"
            await registry.resolve_dead_letter(dead_id, submitted.receipt)  # close the old one ...
            return await registry.add_dead_letter(entry, "fixed by operator")  # ... and queue the fixed one
        finally:
            await registry.close()

    dead_id = asyncio.run(make_dead_letter())
    listed = subprocess.run([*CLI, "--config", str(config_path), "dead-letters"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert json.loads(listed.stdout)["id"] == dead_id
    out = subprocess.run([*CLI, "--config", str(config_path), "replay"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    result = json.loads(out.stdout)
    assert out.returncode == 0 and result["dead_letter_id"] == dead_id and result["status"] == "new"
    listed = subprocess.run([*CLI, "--config", str(config_path), "dead-letters"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert listed.stdout == ""


def test_cli_channels_lists_installed_adapters_with_versions() -> None:
    out = subprocess.run([*CLI, "channels", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    rows = {row["adapter"]: row for row in json.loads(out.stdout)}
    assert rows["web_form"]["version"] == "1.0"
    assert rows["web_form"]["distribution"].startswith("complaint-gateway ")
    assert "push" in rows["web_form"]["capabilities"]
    assert rows["scanned_post"]["distribution"].startswith("complaint-gateway-scanned-post ")
    assert "pull" in rows["scanned_post"]["capabilities"]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_multi_process_mode_shares_the_port_and_registers_once(tmp_path: Path, backend: str, redis_url: str) -> None:
    port = free_port()
    raw = base_config(tmp_path, backend=backend)
    raw["http"] = {"host": "127.0.0.1", "port": port, "workers": 3, "shutdown_timeout_seconds": 5}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen([*CLI, "--config", str(config), "run"], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        pids: set[int] = set()
        deadline = time.monotonic() + 60  # spawned workers import everything: give them time
        while len(pids) < 2 and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    pids.add(json.loads(resp.read())["pid"])
            except OSError:
                pass
            time.sleep(0.05)
        assert len(pids) >= 2, "requests were not spread over the workers"
        receipts = [_post(port, {"phone": f"+7916555{i % 4:04d}", "text": f"Жалоба номер {i}: {'связь' * (i % 3 + 1)} {i * 17}",
                                 }) for i in range(24)]
        again = _post_with_key(port, {"phone": "+79165550000", "text": "Повтор по ключу"}, "k-1")
        same = _post_with_key(port, {"phone": "+79165550000", "text": "Повтор по ключу"}, "k-1")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    numbers = [r["registration_number"] for r in receipts]
    assert len(set(numbers)) == 24 and all(r["status"] == "new" for r in receipts)
    assert same["registration_number"] == again["registration_number"]

    read = subprocess.run([*CLI, "--config", str(config), "queue", "read", "--group", "crm", "--count", "100"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    events = [json.loads(line) for line in read.stdout.splitlines()]
    assert len(events) == 25
    assert len({e["customer_id"] for e in events}) == 4


def _post_with_key(port: int, body: dict[str, Any], key: str) -> dict[str, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/web/complaints", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Idempotency-Key": key}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def test_cli_purge_deletes_raw_originals_past_retention_once_not_stored_lately(tmp_path: Path) -> None:
    config_path = _write_config(tmp_path, free_port())
    old = datetime.now(timezone.utc) - timedelta(days=800)

    async def register() -> tuple[str, str]:
        app = create_app(load_config(config_path))
        registry = app[INTAKE].registry
        await registry.open()
        try:
            in_blob = Inbound(channel="web", message_id="old", identities=[("phone", "+79161112233")],
                              text="Жалоба двухлетней давности", raw=b"old raw original\x00", received_at=old)
            inline = Inbound(channel="web", message_id="old-form", identities=[("phone", "+79161112244")],
                             text="Ещё одна старая жалоба", raw=b'{"text": "old form"}', received_at=old)
            await app[INTAKE].submit(in_blob)
            submitted = await app[INTAKE].submit(inline)
            assert submitted.complaint is not None and submitted.complaint.meta["raw"]["text"] == '{"text": "old form"}'
            return in_blob.raw_sha256 or "", submitted.complaint.id
        finally:
            await registry.close()

    async def stored(complaint_id: str) -> Any:
        registry = create_app(load_config(config_path))[INTAKE].registry
        await registry.open()
        try:
            return await registry.get_message(complaint_id)
        finally:
            await registry.close()

    sha, inline_id = asyncio.run(register())
    blobs = BlobStore(tmp_path / "blobs")
    assert blobs.get_sync(sha) == b"old raw original\x00"
    out = subprocess.run([*CLI, "--config", str(config_path), "purge", "--older-than", "730"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    result = json.loads(out.stdout)
    # stored a moment ago (retention.blob_grace_minutes, 60): a message being registered may name it
    assert (result["messages"], result["blobs_deleted"], result["blobs_deferred"]) == (2, 0, 1)
    assert blobs.get_sync(sha) == b"old raw original\x00"
    raw = yaml.safe_load(config_path.read_text())
    raw["retention"] = {"blob_grace_minutes": 0}
    config_path.write_text(yaml.safe_dump(raw))
    out = subprocess.run([*CLI, "--config", str(config_path), "purge", "--older-than", "730"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    result = json.loads(out.stdout)  # the next purge checks the blob again, and it is still not named
    assert (result["messages"], result["blobs_deleted"], result["blobs_deferred"]) == (0, 1, 0)
    assert not blobs.exists(sha)
    purged = asyncio.run(stored(inline_id))
    assert "raw" not in purged.meta and "old form" not in purged.to_json()  # the original kept inline went with the rest
    missing = subprocess.run([*CLI, "--config", str(config_path), "purge"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "retention.days" in missing.stderr


def test_disabled_channels_need_no_secrets_in_the_environment(tmp_path: Path) -> None:
    raw = base_config(tmp_path, channels={"sms": {"adapter": "twilio_sms", "enabled": False, "auth_token": "${NOT_SET_TOKEN}"}})
    config = from_dict(raw, env={})
    assert config.enabled_channels() == {}
    raw["channels"]["sms"]["enabled"] = True
    with pytest.raises(ConfigError, match=r"channels\.sms\.auth_token: environment variable NOT_SET_TOKEN is not set"):
        from_dict(raw, env={})


def test_passwords_in_urls_are_masked_in_every_log_line() -> None:
    try:
        raise ConnectionError("redis at redis://:pw0rd@redis.internal:6379/0: Connection refused")
    except ConnectionError:
        record = logging.makeLogRecord({"msg": "proxy %s failed", "args": ("http://gw:s3cret%2F1@proxy.corp:3128",),
                                        "levelname": "WARNING", "exc_info": sys.exc_info(),
                                        "error": "ConnectionKey(proxy=URL('http://gw:s3cret%2F1@proxy.corp:3128'))"})
    for formatter in (JsonFormatter(), TextFormatter("%(message)s")):
        line = formatter.format(record)
        assert "s3cret" not in line and "pw0rd" not in line
        assert "http://gw:***@proxy.corp:3128" in line and "redis://:***@redis.internal:6379/0" in line
    entry = json.loads(JsonFormatter().format(record))
    assert entry["error"] == "ConnectionKey(proxy=URL('http://gw:***@proxy.corp:3128'))"
    assert TextFormatter("%(message)s").format(logging.makeLogRecord({"msg": "https://api.telegram.org/bot1:AB/getMe"})) \
        == "https://api.telegram.org/bot1:AB/getMe"  # no user in it: nothing to mask
    queries = logging.makeLogRecord({"msg": "url='https://api.ok.ru/graph/me/chats?access_token=tkn-1&count=5' "
                                            "url='https://lp.vk.com/wh1?act=a_check&KEY=k3y&ts=9' https://x.example/?page=2"})
    assert TextFormatter("%(message)s").format(queries) == (
        "url='https://api.ok.ru/graph/me/chats?access_token=***&count=5' "
        "url='https://lp.vk.com/wh1?act=a_check&KEY=***&ts=9' https://x.example/?page=2")
