"""Pytest fixtures for gateway and adapter tests: ``redis_url``, ``make_config``,
``start_gateway``. Any project that installs complaint-gateway gets them."""
from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import REGISTRY, create_app
from gateway.config import GatewayConfig, from_dict

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def base_config(tmp_path: Path, backend: str = "sqlite", redis_url: str | None = None,
                channels: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """A complete config for tests: files under ``tmp_path``, Redis keys under ``cgtest:``."""
    config: dict[str, Any] = {
        "registry": {
            "backend": backend,
            "sqlite": {"path": str(tmp_path / "registry.sqlite3"), "synchronous": "NORMAL"},
            "redis": {"url": redis_url or REDIS_URL, "prefix": "cgtest:"},
        },
        "blobs": {"path": str(tmp_path / "blobs"), "fsync": False},
        "normalizer": {"default_region": "RU", "timezone": "Europe/Moscow", "default_language": "ru"},
        "logging": {"level": "DEBUG"},
        "channels": channels if channels is not None else {
            "web": {"adapter": "web_form", "rate_limit_per_minute": 0},
        },
    }
    for name, value in sections.items():
        config[name] = {**config.get(name, {}), **value}
    return config


def registry_of(client: TestClient) -> Any:
    """The registry of a gateway started by ``start_gateway``."""
    return client.app[REGISTRY]


@pytest.fixture
def redis_url() -> str:
    """The test database from ``REDIS_URL``, flushed before the test (only that database)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"no Redis answers at {REDIS_URL}")
    client.flushdb()
    client.close()
    return REDIS_URL


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., GatewayConfig]:
    """``make_config(backend=..., channels={...}, <section>={...})`` -> a validated config."""
    def make(**kwargs: Any) -> GatewayConfig:
        return from_dict(base_config(tmp_path, **kwargs), base_dir=tmp_path)

    return make


@pytest.fixture
async def start_gateway() -> AsyncIterator[Callable[[GatewayConfig], Any]]:
    """Start a gateway app over real HTTP on a free loopback port; returns an aiohttp TestClient."""
    clients: list[TestClient] = []

    async def start(config: GatewayConfig) -> TestClient:
        client = TestClient(TestServer(create_app(config), host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        await client.close()
