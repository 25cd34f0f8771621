"""A fake platform API as a real aiohttp server on 127.0.0.1, port 0: it records every
call, serves files, and lets a test wait for a call to arrive."""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(slots=True)
class Call:
    """One API call as the fake received it."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """Base of the fakes: ``async with FakeVk() as vk: ... vk.url ...``."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_get("/files/{name}", self._serve_file)
        self.calls: list[Call] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.file_requests: list[str] = []
        self._changed = asyncio.Condition()
        self._failures: dict[str, list[Any]] = {}
        self._open: dict[str, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None
        #: Set before ``start`` to serve over TLS (``https://``), as the real platforms do.
        self.ssl_context: ssl.SSLContext | None = None
        self.url = ""

    async def start(self) -> FakeServer:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- recording --------------------------------------------------------------------
    async def record(self, method: str, params: dict[str, Any], request: web.Request | None = None) -> Call:
        call = Call(method, params, dict(request.headers) if request is not None else {})
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        return call

    def fail_next(self, method: str, *failures: Any) -> None:
        """Answer the next calls of ``method`` with these failures, one call each, in the
        fake's own terms (Telegram: an HTTP status and a description; VK: an error code and
        a message; None: that call goes through); the calls after them go through."""
        self._failures.setdefault(method, []).extend(failures)

    def pause(self, method: str) -> None:
        """Hold the answers to ``method``'s calls (each is recorded first) until ``resume``:
        a platform that takes a call and has not answered it yet."""
        self._open[method] = asyncio.Event()

    def resume(self, method: str) -> None:
        gate = self._open.pop(method, None)
        if gate is not None:
            gate.set()

    async def wait_if_paused(self, method: str) -> None:
        gate = self._open.get(method)
        if gate is not None:
            await gate.wait()

    def next_failure(self, method: str) -> Any | None:
        queued = self._failures.get(method)
        return queued.pop(0) if queued else None

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Wait until ``count`` calls of ``method`` arrived (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.calls_of(method)) >= count)
        return self.calls_of(method)

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- files ------------------------------------------------------------------------
    def add_file(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at ``/files/<name>``; returns its URL."""
        self.files[name] = (data, content_type)
        return f"{self.url}/files/{name}"

    async def _serve_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.file_requests.append(name)
        if name not in self.files:
            return web.Response(status=404, text="not found")
        data, content_type = self.files[name]
        return web.Response(body=data, content_type=content_type)

