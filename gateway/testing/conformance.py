"""The adapter conformance suite: the tests every channel adapter must pass.

Subclass ``PushAdapterConformance`` or ``PullAdapterConformance`` in a test module, declare
the adapter, its settings and recorded payloads with the complaints they must give; pytest
collects the inherited tests. They check normalisation, redelivery idempotency, rejection
of forged requests, malformed input, the acknowledgement, and (pull adapters) that the
cursor never advances before ``submit()`` returned. See docs/adapters.md.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
from aiohttp.test_utils import TestClient

from gateway import plugins
from gateway.acknowledgements import AcknowledgementTexts, spoken_number
from gateway.adapters import Adapter, AdapterContext, Submitted, TemporaryFailure
from gateway.blobs import BlobStore
from gateway.config import GatewayConfig
from gateway.inbound import Inbound
from gateway.intake import Intake
from gateway.metrics import Metrics
from gateway.registry import Registry, build_registry
from gateway.registry.base import Event
from gateway.testing.plugin import registry_of
from normalizer.pipeline import Normalizer, NormalizerSettings
from normalizer.schema import json_schema


@dataclass
class Expect:
    """What the complaint from a payload must say. Only the fields given are checked."""

    identities: list[tuple[str, str]] = field(default_factory=list)
    text_contains: list[str] = field(default_factory=list)
    subject: str | None = None
    language: str | None = None
    attachments: int | None = None
    auto_submitted: bool | None = None
    urgency: str | None = None
    reply_to: tuple[str, str] | None = None
    name: str | None = None

    def check(self, complaint: dict[str, Any]) -> None:
        jsonschema.Draft202012Validator(json_schema()).validate(complaint)
        have = {(i["kind"], i["value"]) for i in complaint["customer"]["identities"]}
        for identity in self.identities:
            assert identity in have, f"identity {identity} not in {sorted(have)}"
        for piece in self.text_contains:
            assert piece in complaint["text"], f"{piece!r} not in text {complaint['text']!r}"
        for name in ("subject", "language", "auto_submitted", "urgency"):
            wanted = getattr(self, name)
            if wanted is not None:
                assert complaint[name] == wanted, f"{name}: {complaint[name]!r} != {wanted!r}"
        if self.name is not None:
            assert complaint["customer"]["name"] == self.name
        if self.attachments is not None:
            assert len(complaint["attachments"]) == self.attachments, complaint["attachments"]
        if self.reply_to is not None:
            assert complaint["reply_to"] == {"kind": self.reply_to[0], "value": self.reply_to[1]}


@dataclass
class Delivery:
    """A request as the door sends it (recorded from the platform), and what it must give."""

    name: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    expect_status: int = 200
    expect: Expect | None = None


async def wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.05)


async def _complaint_events(registry: Registry, group: str) -> list[Event]:
    return [e for e in await registry.read_events(group, "conformance", count=100)
            if e.event in ("new", "follow_up", "repeat")]


class PushAdapterConformance:
    """Inherited tests for an adapter the door calls (webhook, form)."""

    adapter: ClassVar[str]
    instance: ClassVar[str] = "door"
    backend: ClassVar[str] = "sqlite"
    #: True only for a door that is public by design (a web form): it has nothing to forge.
    public_door: ClassVar[bool] = False

    # -- what the subclass declares ------------------------------------------------------
    async def channel_settings(self) -> dict[str, Any]:
        """The channel's settings; start the platform's fake here if the door needs one."""
        return {}

    async def cleanup(self) -> None:
        """Stop what ``channel_settings`` started."""

    def deliveries(self) -> list[Delivery]:
        raise NotImplementedError

    def forged(self, delivery: Delivery) -> Delivery | None:
        """The same request with a wrong signature or secret (None for a public door)."""
        return None

    def malformed(self) -> Delivery:
        raise NotImplementedError

    async def acknowledgements(self) -> list[str]:
        """Texts the door received back from the gateway (from the fake), for adapters with
        the ``acknowledge`` capability."""
        return []

    # -- the harness ---------------------------------------------------------------------
    @pytest.fixture
    async def door(self, make_config: Callable[..., GatewayConfig], start_gateway: Any,
                   redis_url: str) -> AsyncIterator[TestClient]:
        settings = await self.channel_settings()
        try:
            yield await start_gateway(make_config(backend=self.backend,
                                                  channels={self.instance: {"adapter": self.adapter, **settings}}))
        finally:
            await self.cleanup()

    async def send(self, client: TestClient, delivery: Delivery) -> tuple[int, str]:
        resp = await client.request(delivery.method, delivery.path, data=delivery.body, headers=delivery.headers)
        return resp.status, await resp.text()

    # -- the tests -----------------------------------------------------------------------
    async def test_conformance_deliveries_give_the_declared_complaints(self, door: TestClient) -> None:
        registry = registry_of(door)
        cases = self.deliveries()
        assert cases, "declare at least one recorded delivery"
        for case in cases:
            status, body = await self.send(door, case)
            assert status == case.expect_status, f"{case.name}: {status} {body[:300]}"
            if case.expect is None:
                continue
            events = await wait_for(lambda: _complaint_events(registry, "conformance"))
            assert len(events) == 1, f"{case.name}: {len(events)} events"
            case.expect.check(events[0].payload["complaint"])
            assert events[0].payload["complaint"]["channel"] == self.instance

    async def test_conformance_redelivery_adds_nothing(self, door: TestClient) -> None:
        registry = registry_of(door)
        case = next(c for c in self.deliveries() if c.expect is not None)
        first = await self.send(door, case)
        await wait_for(lambda: registry.queue_length())
        second = await self.send(door, case)
        assert first[0] == case.expect_status
        assert 200 <= second[0] < 300, f"a redelivery must be answered as a success, got {second[0]}"
        assert await registry.queue_length() == 1  # the door answers only after deliver() returned
        metrics = await (await door.get("/metrics")).text()
        assert f'complaint_gateway_duplicate_total{{channel="{self.instance}"}} 1.0' in metrics

    async def test_conformance_forged_request_is_rejected(self, door: TestClient) -> None:
        case = next(c for c in self.deliveries() if c.expect is not None)
        forged = self.forged(case)
        if self.public_door:
            assert forged is None, "a public door declares no forged request"
            return
        assert forged is not None, "declare the forged request, or public_door = True for a public form"
        status, _ = await self.send(door, forged)
        assert status in (401, 403), status
        assert await registry_of(door).queue_length() == 0
        metrics = await (await door.get("/metrics")).text()
        assert f'complaint_gateway_rejected_total{{channel="{self.instance}"' in metrics

    async def test_conformance_malformed_input_gets_400_and_the_gateway_keeps_serving(self, door: TestClient) -> None:
        status, _ = await self.send(door, self.malformed())
        assert status == 400
        assert await registry_of(door).queue_length() == 0
        assert (await door.get("/healthz")).status == 200
        case = next(c for c in self.deliveries() if c.expect is not None)
        assert (await self.send(door, case))[0] == case.expect_status

    async def test_conformance_customer_gets_the_registration_number(self, door: TestClient) -> None:
        registry = registry_of(door)
        case = next(c for c in self.deliveries() if c.expect is not None)
        _, body = await self.send(door, case)
        events = await wait_for(lambda: _complaint_events(registry, "conformance-ack"))
        number = events[0].registration_number
        cls = plugins.load(self.adapter)
        if "acknowledge" in cls.capabilities:
            texts = await wait_for(lambda: self._acks_with(number))
            assert any(number in t for t in texts)
        else:
            assert number and (number in body or spoken_number(number) in body), \
                "the answer does not carry the registration number (written, or spoken digit by digit)"

    async def _acks_with(self, number: str | None) -> list[str]:
        return [t for t in await self.acknowledgements() if number and number in t]


# -- pull adapters -----------------------------------------------------------------------
class RecordingState:
    """A StateStore that records, in order, every cursor change among the sink's calls."""

    def __init__(self, inner: Any, timeline: list[str]) -> None:
        self.inner = inner
        self.timeline = timeline

    async def get_cursor(self, name: str) -> str | None:
        return await self.inner.get_cursor(name)

    async def set_cursor(self, name: str, value: str) -> None:
        self.timeline.append(f"cursor:{name}")
        await self.inner.set_cursor(name, value)

    async def get_entries(self, name: str) -> dict[str, str]:
        return await self.inner.get_entries(name)

    async def set_entry(self, name: str, key: str, value: str | None) -> None:
        await self.inner.set_entry(name, key, value)

    async def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return await self.inner.acquire_lock(name, owner, ttl_seconds)

    async def release_lock(self, name: str, owner: str) -> None:
        await self.inner.release_lock(name, owner)


class RecordingSink:
    """Wraps the real sink; ``fail=True`` makes every submit a TemporaryFailure."""

    def __init__(self, inner: Intake, timeline: list[str]) -> None:
        self.inner = inner
        self.timeline = timeline
        self.fail = False

    async def submit(self, inbound: Inbound) -> Submitted:
        self.timeline.append("submit")
        if self.fail:
            self.timeline.append("failed")
            raise TemporaryFailure("conformance: the registry is down")
        submitted = await self.inner.submit(inbound)
        self.timeline.append("submitted")
        return submitted


@dataclass
class PullHarness:
    adapter: Adapter
    registry: Registry
    sink: RecordingSink
    timeline: list[str]

    async def pull(self) -> None:
        await self.adapter.pull()  # type: ignore[attr-defined]

    async def events(self) -> list[Event]:
        return await _complaint_events(self.registry, "conformance")


@asynccontextmanager
async def open_pull_harness(config: GatewayConfig, instance: str) -> AsyncIterator[PullHarness]:
    """One pull adapter instance of ``config.channels[instance]`` with the real registry and
    intake behind a recording sink and state store; call ``harness.pull()`` for a cycle."""
    section = config.channels[instance]
    settings = {k: v for k, v in section.items() if k not in ("adapter", "enabled")}
    registry = build_registry(config.registry, config.section("normalizer"))
    await registry.open()
    timeline: list[str] = []
    intake = Intake(registry, BlobStore(config.blobs_path, fsync=False),
                    Normalizer(NormalizerSettings.from_config(config.section("normalizer"))), Metrics())
    sink = RecordingSink(intake, timeline)
    context = AdapterContext(instance=instance, settings=settings, sink=sink,
                             state=RecordingState(registry, timeline), metrics=intake.metrics, config=config,
                             texts=AcknowledgementTexts(), number_pattern=registry.number_format.pattern())
    adapter = plugins.load(section["adapter"])(context)
    try:
        yield PullHarness(adapter, registry, sink, timeline)
    finally:
        await adapter.close()  # type: ignore[attr-defined]
        await adapter.drain()
        await registry.close()


class PullAdapterConformance:
    """Inherited tests for an adapter that fetches from the door (mailbox, long poll)."""

    adapter: ClassVar[str]
    instance: ClassVar[str] = "door"

    async def channel_settings(self) -> dict[str, Any]:
        return {}

    async def cleanup(self) -> None:
        pass

    async def put_message(self, index: int) -> None:
        """Place message number ``index`` at the door (APPEND to a mailbox, queue an update...)."""
        raise NotImplementedError

    def expect(self, index: int) -> Expect:
        raise NotImplementedError

    async def prepare(self, harness: PullHarness) -> None:
        """Bring the adapter to where it reads new messages, before the first ``put_message``
        (a door that starts from "now", as VK's Long Poll, runs one pull here). What it does
        is not part of the test: the timeline is cleared afterwards."""

    async def _prepared(self, harness: PullHarness) -> None:
        await self.prepare(harness)
        harness.timeline.clear()

    @pytest.fixture
    async def harness(self, make_config: Callable[..., GatewayConfig], tmp_path: Path) -> AsyncIterator[PullHarness]:
        settings = await self.channel_settings()
        config = make_config(channels={self.instance: {"adapter": self.adapter, **settings}})
        try:
            async with open_pull_harness(config, self.instance) as harness:
                yield harness
        finally:
            await self.cleanup()

    async def test_conformance_pulled_message_gives_the_declared_complaint(self, harness: PullHarness) -> None:
        await self._prepared(harness)
        await self.put_message(0)
        await harness.pull()
        events = await wait_for(harness.events)
        assert len(events) == 1
        self.expect(0).check(events[0].payload["complaint"])

    async def test_conformance_cursor_never_advances_before_submit_returned(self, harness: PullHarness) -> None:
        await self._prepared(harness)
        await self.put_message(0)
        harness.sink.fail = True
        try:
            await harness.pull()
        except Exception:  # the adapter may raise (the base class then backs off) or carry on
            pass
        assert "submit" in harness.timeline, "the adapter did not try to deliver the message"
        first_failure = harness.timeline.index("failed")
        assert not any(step.startswith("cursor:") for step in harness.timeline[first_failure:]), harness.timeline
        harness.sink.fail = False
        harness.timeline.clear()
        await harness.pull()
        events = await wait_for(harness.events)
        assert len(events) == 1, "the message that failed to submit was lost"
        for i, step in enumerate(harness.timeline):
            if step.startswith("cursor:"):
                assert "submitted" in harness.timeline[:i], f"cursor advanced before submit returned: {harness.timeline}"

    async def test_conformance_next_pull_adds_nothing(self, harness: PullHarness) -> None:
        await self._prepared(harness)
        await self.put_message(0)
        await harness.pull()
        await wait_for(harness.events)
        await harness.pull()
        assert await harness.events() == []
        assert await harness.registry.queue_length() == 1
