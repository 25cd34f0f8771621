"""Redis outage: the doors answer "try again" while the registry is unreachable, nothing is
half-registered, and intake resumes by itself when Redis returns."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from gateway.testing.plugin import registry_of

COMPLAINT = {"phone": "+79161234567", "text": "Нет связи с утра, прошу разобраться"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A private redis-server on a free port with an append-only file, so it can be
    stopped and started again with its data (the shared test Redis is never touched)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


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
