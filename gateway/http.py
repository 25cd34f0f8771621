"""Shared helpers for push adapters: bounded bodies, rate limits, JSON errors."""
from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.batching import Batcher

log = logging.getLogger("complaint_gateway.http")


class BodyTooLarge(web.HTTPRequestEntityTooLarge):
    pass


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes with 413 before reading it all."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(max_size=limit, actual_size=request.content_length)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


class MalformedBody(ValueError):
    """A request body that is not what the door expects; the message says why."""


def parse_json(body: bytes | str) -> Any:
    """JSON from a request body. Anything that is not JSON text — invalid UTF-8, a lone
    surrogate (``"\\ud800"``: valid JSON, but no text that could ever be stored), NaN,
    truncated, nested deeper than 1024 levels — raises ``MalformedBody`` (answer 400).
    orjson checks all of these while it parses."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from exc


def dumps(value: Any) -> str:
    """Compact JSON for answers made of the gateway's own values (``web.json_response(...,
    dumps=dumps)``), written by orjson. Not for what a sender wrote: orjson refuses lone
    surrogates, which a broken form's field names can hold (``json_error`` escapes them)."""
    return orjson.dumps(value).decode("utf-8")


def json_error(status: int, error: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, **extra}, status=status)


def client_address(request: web.Request, trust_forwarded: bool = False) -> str:
    """The client's address. Behind our own proxy (``trust_forwarded``) it is the last
    ``X-Forwarded-For`` entry, the one the proxy appended: earlier ones the client wrote."""
    if trust_forwarded:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()
    return request.remote or "?"


class RateLimiter:
    """A token bucket per key (client address): ``per_minute`` requests, bursts up to
    ``burst``. ``per_minute: 0`` turns the limit off. Memory is bounded by ``max_keys``."""

    def __init__(self, per_minute: float, burst: int | None = None, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, int(per_minute)))
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, key: str) -> bool:
        if not self.enabled:
            return True
        now = time.monotonic()
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed


#: Takes a token from each of several shared buckets: (names, tokens per second, burst) -> per name, whether there was one.
TakeTokens = Callable[[list[str], float, float], Awaitable[list[bool]]]
#: Requests answered by one registry call at most.
SHARED_BATCH = 256


class SharedRateLimiter:
    """A door's rate limit as its handlers use it: ``await allow(key)``. Without ``take``,
    ``RateLimiter``'s buckets in this process; with it (``AdapterContext.rate_limiter`` gives
    the registry's ``take_tokens``), one bucket per key for every process of ``http.workers``
    and every machine on the same registry. Requests that arrive while the registry answers
    the ones before are answered together by its next call (``Batcher``), so under load the
    cost per request is a share of a round trip. When the registry cannot answer, this
    process's own bucket decides, and a warning says so at most once a minute."""

    def __init__(self, per_minute: float, burst: int | None = None, take: TakeTokens | None = None, name: str = "") -> None:
        self.local = RateLimiter(per_minute, burst)
        self.take = take
        self.name = name
        self._batcher: Batcher[str, bool] = Batcher(self._take_many, SHARED_BATCH)
        self._warned_at = -math.inf

    @property
    def enabled(self) -> bool:
        return self.local.enabled

    async def allow(self, key: str) -> bool:
        if self.take is None or not self.local.enabled:
            return self.local.allow(key)
        return await self._batcher(key)

    async def _take_many(self, keys: list[str]) -> list[bool | Exception]:
        take = self.take
        assert take is not None  # allow() batches only with it
        try:
            return list(await take([f"{self.name}:{key}" for key in keys], self.local.rate, self.local.capacity))
        except Exception as exc:  # the registry is down: the limit still holds, per process
            now = time.monotonic()
            if now - self._warned_at >= 60:
                self._warned_at = now
                log.warning("shared rate limit unavailable: counted in this process",
                            extra={"limit": self.name, "error": repr(exc)})
            return [self.local.allow(key) for key in keys]
