"""Test helpers to go with the fakes: a sink that fails on purpose, waiting for a
condition, reading a metric, and the acknowledgement text a fake should have received."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.adapters import Adapter, Submitted, TemporaryFailure
from gateway.inbound import Inbound


class FlakySink:
    """Wraps an adapter's sink: the first ``failures`` submits raise ``TemporaryFailure``
    (the registry is down), later ones go through. ``attempts`` lists the message ids."""

    def __init__(self, adapter: Adapter, failures: int = 1) -> None:
        self.inner = adapter.context.sink
        self.failures = failures
        self.attempts: list[str] = []
        adapter.context.sink = self

    async def submit(self, inbound: Inbound) -> Submitted:
        self.attempts.append(inbound.message_id)
        if len(self.attempts) <= self.failures:
            raise TemporaryFailure("the registry is down (on purpose)")
        return await self.inner.submit(inbound)


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0, step: float = 0.02) -> None:
    """Poll ``predicate`` until it is true (raises TimeoutError after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(step)


async def has_metric(client: TestClient, line: str) -> bool:
    """Whether ``GET /metrics`` has exactly this sample line."""
    return line in (await (await client.get("/metrics")).text()).splitlines()


def expected_acknowledgement(app: web.Application, event: Any, *, door: str = "chat", public: bool = False) -> str:
    """The acknowledgement the gateway renders for a registry queue ``event``: what a fake
    should have received (templates change; tests compare with the real rendering)."""
    from gateway.app import TEXTS
    from gateway.inbound import Receipt
    from normalizer.schema import Complaint

    complaint = Complaint.from_dict(event.payload["complaint"])
    receipt = Receipt(event.event, event.registration_number, event.customer_id, event.complaint_id)
    return app[TEXTS].render(complaint, receipt, door=door, public=public)
