"""Helpers the social adapters share: bounded attachment downloads from the platforms'
file hosts, JSON bodies, counted rejections, and the settings every social door has."""
from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from gateway.http import MalformedBody, parse_json
from gateway.inbound import InboundAttachment, safe_filename
from gateway.outbound import proxy_arguments

if TYPE_CHECKING:
    from gateway.adapters import Adapter

#: Settings every social adapter accepts (merged into each adapter's ``settings_schema``).
COMMON_SETTINGS: dict[str, Any] = {
    "acknowledge": {"type": "boolean"},
    "max_body_bytes": {"type": "integer", "minimum": 1024},
    "max_attachments": {"type": "integer", "minimum": 0},
    "max_attachment_bytes": {"type": "integer", "minimum": 0},
    "download_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
    "download_hosts": {"type": "array", "items": {"type": "string", "minLength": 1}},
    "backoff_initial_seconds": {"type": "number", "exclusiveMinimum": 0},
    "backoff_max_seconds": {"type": "number", "exclusiveMinimum": 0},
}


class MalformedPayload(ValueError):
    """The request body is not the JSON object the platform sends."""


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``MalformedPayload`` saying why not (also for invalid
    UTF-8, lone surrogates and nesting deeper than the parser goes)."""
    try:
        data = parse_json(body)
    except MalformedBody as exc:
        raise MalformedPayload(str(exc)) from exc
    if not isinstance(data, dict):
        raise MalformedPayload("a JSON object is expected")
    return data


def reject(adapter: Adapter, status: int, reason: str, message: str, **extra: Any) -> web.Response:
    """Refuse a request: count it, log it (no personal data), answer ``status``."""
    adapter.context.metrics.rejected.labels(adapter.instance, reason).inc()
    adapter.log.warning(message, extra={"channel": adapter.instance, "reason": reason, **extra})
    return web.Response(status=status, text=reason)


def first_number(pattern: re.Pattern[str], *texts: str | None) -> str | None:
    """The first registration number quoted in any of ``texts`` (for follow-ups)."""
    for text in texts:
        if text:
            found = pattern.findall(text)
            if found:
                return str(found[0])
    return None


def stable_int(key: str, bits: int = 31) -> int:
    """A deterministic positive integer from ``key`` (idempotency ids the platforms want)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % (2**bits - 1) + 1


def without_keys(data: dict[str, Any], *keys: str) -> bytes:
    """``data`` as JSON bytes without ``keys`` (secrets are never kept in the raw store)."""
    return orjson.dumps({k: v for k, v in data.items() if k not in keys})


@dataclass(slots=True)
class WantedFile:
    """A file a message refers to. Either ``url`` (fetched over HTTP from an allowed host)
    or ``fetch`` (a platform client's own download, e.g. Telegram getFile)."""

    filename: str
    content_type: str
    ref: str
    url: str | None = None
    size: int | None = None
    fetch: Callable[[int], Awaitable[bytes]] | None = None


class DownloadError(Exception):
    """A file could not be fetched; ``reason`` is short and safe to store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AttachmentFetcher:
    """Fetches the files of one message: at most ``max_count``, each at most ``max_bytes``,
    all within ``timeout`` seconds, only from ``hosts`` (and their subdomains). A file that
    is not fetched is reported with the reason, never silently dropped."""

    def __init__(self, session: aiohttp.ClientSession | None, *, max_count: int, max_bytes: int, timeout: float,
                 hosts: list[str], max_redirects: int = 3) -> None:
        self.session = session
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.hosts = [h.lower().lstrip(".") for h in hosts]
        self.max_redirects = max_redirects

    @classmethod
    def from_settings(cls, session: aiohttp.ClientSession | None, settings: dict[str, Any], default_hosts: list[str],
                      default_timeout: float = 10.0) -> AttachmentFetcher:
        return cls(session, max_count=int(settings.get("max_attachments", 10)),
                   max_bytes=int(settings.get("max_attachment_bytes", 20 * 1024 * 1024)),
                   timeout=float(settings.get("download_timeout_seconds", default_timeout)),
                   hosts=list(settings.get("download_hosts", default_hosts)))

    def host_allowed(self, url: str) -> bool:
        parsed = URL(url)
        host = (parsed.host or "").lower()
        return parsed.scheme in ("http", "https") and any(host == h or host.endswith("." + h) for h in self.hosts)

    async def fetch_all(self, wanted: list[WantedFile]) -> tuple[list[InboundAttachment], list[dict[str, Any]]]:
        """The fetched attachments, and a record of every file that was not fetched."""
        if not wanted:  # most messages: no tasks to make
            return [], []
        skipped = [_skip(w, "too_many_attachments") for w in wanted[self.max_count:]]
        results = await asyncio.gather(*(self._fetch_one(w) for w in wanted[: self.max_count]))
        attachments = []
        for w, result in zip(wanted, results):
            if isinstance(result, DownloadError):
                skipped.append(_skip(w, result.reason))
            else:
                attachments.append(InboundAttachment(filename=safe_filename(w.filename), content_type=w.content_type,
                                                     data=result, size=len(result)))
        return attachments, skipped

    async def _fetch_one(self, wanted: WantedFile) -> bytes | DownloadError:
        if wanted.size is not None and wanted.size > self.max_bytes:
            return DownloadError("too_large")
        try:
            async with asyncio.timeout(self.timeout):
                if wanted.fetch is not None:
                    data = await wanted.fetch(self.max_bytes)
                elif wanted.url:
                    data = await self._download(wanted.url)
                else:
                    return DownloadError("no_url")
        except DownloadError as exc:
            return exc
        except TimeoutError:
            return DownloadError("timeout")
        except Exception as exc:  # any failure of one file leaves the message intact
            return DownloadError(f"failed: {type(exc).__name__}")
        if len(data) > self.max_bytes:
            return DownloadError("too_large")
        return data

    async def _download(self, url: str) -> bytes:
        if self.session is None:
            raise DownloadError("no_http_session")
        for _ in range(self.max_redirects + 1):
            if not self.host_allowed(url):
                raise DownloadError("host_not_allowed")
            async with self.session.get(url, allow_redirects=False, **proxy_arguments(url)) as resp:
                if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                    url = str(URL(url).join(URL(resp.headers["Location"])))
                    continue
                if resp.status != 200:
                    raise DownloadError(f"http_{resp.status}")
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise DownloadError("too_large")
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise DownloadError("too_large")
                    chunks.append(chunk)
                return b"".join(chunks)
        raise DownloadError("too_many_redirects")


def _skip(wanted: WantedFile, reason: str) -> dict[str, Any]:
    return {"filename": safe_filename(wanted.filename), "content_type": wanted.content_type, "ref": wanted.ref,
            "size": wanted.size, "reason": reason}
