"""Redis outage: the doors answer "try again" while the registry is unreachable, nothing is
half-registered, and intake resumes by itself when Redis returns."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.testing.plugin import registry_of
from gateway.testing.servers import OwnRedis

COMPLAINT = {"phone": "+79161234567", "text": "Нет связи с утра, прошу разобраться"}


@pytest.fixture
def own_redis(tmp_path: Path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed for the outage tests")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_registry_outage_gets_try_again_and_recovers(own_redis: OwnRedis, make_config, start_gateway) -> None:
    client = await start_gateway(make_config(backend="redis", redis_url=own_redis.url))
    first = await client.post("/web/complaints", json=COMPLAINT, headers={"Idempotency-Key": "before"})
    assert first.status == 201
    number = (await first.json())["registration_number"]

    own_redis.stop()
    during = await client.post("/web/complaints", json={**COMPLAINT, "text": "Пишу во время сбоя"},
                               headers={"Idempotency-Key": "during"})
    assert during.status == 503
    assert (await client.get("/healthz")).status == 503
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_failed_total{channel="web",reason="temporary"} 1.0' in metrics

    own_redis.start()
    retried = await client.post("/web/complaints", json={**COMPLAINT, "text": "Пишу во время сбоя"},
                                headers={"Idempotency-Key": "during"})
    assert retried.status == 201
    again = await client.post("/web/complaints", json=COMPLAINT, headers={"Idempotency-Key": "before"})
    assert (await again.json())["registration_number"] == number
    registry = registry_of(client)
    events = await registry.read_events("check", "c", count=10)
    assert [e.event for e in events] == ["new", "new"]
