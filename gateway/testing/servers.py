"""Real servers for tests, started privately on free loopback ports."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import resource
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import redis
from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A private redis-server on a free port with an append-only file, so it can be
    stopped and started again with its data (the shared test Redis is never touched)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
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


def memory_cap(limit_bytes: int = 4 << 30) -> Callable[[], None]:
    """A ``preexec_fn`` that caps a child process's address space: a gateway under a fuzz
    run that runs away fails with MemoryError instead of taking the machine down."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


#: Headers that concern one hop, not the request a proxy forwards (RFC 9110, 7.6.1).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                         "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
_PROXY_AUTH_REQUIRED = (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"proxy\"\r\n"
                        b"Content-Length: 0\r\nConnection: close\r\n\r\n")


class ForwardProxy:
    """An HTTP proxy on a free loopback port, for a door's calls to a fake platform. A
    request in absolute form (``POST http://127.0.0.1:8081/bot.../sendMessage``) is
    forwarded as it came and its answer passed back; ``CONNECT host:port`` opens a tunnel
    (an ``https://`` address: TLS from the client to the fake, through the proxy). ``seen``
    keeps, per request or tunnel, its method, its URL (``host:port`` for a tunnel) and its
    ``Proxy-Authorization`` user (None: none, or not the expected one). With
    ``credentials``, a request without them gets 407."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.seen: list[tuple[str, str, str | None]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._server: asyncio.Server | None = None
        self._forwarder_port = 0
        self._pipes: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)  # plain requests, handed over by _connection
        await site.start()
        self._forwarder_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _user(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        return user if self.credentials is None or (user, password) == self.credentials else None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A tunnel for ``CONNECT``; any other request goes, bytes as they came, to ``_forward``."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        first, *lines = head.decode("latin-1").split("\r\n")
        if not first.startswith("CONNECT "):
            upstream = await asyncio.open_connection("127.0.0.1", self._forwarder_port)
            upstream[1].write(head)
        else:
            target = first.split()[1]
            headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
            user = self._user(headers.get("proxy-authorization"))
            self.seen.append(("CONNECT", target, user))
            if self.credentials is not None and user is None:
                writer.write(_PROXY_AUTH_REQUIRED)
                await writer.drain()
                writer.close()
                return
            host, _, port = target.rpartition(":")
            upstream = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for source, sink in ((reader, upstream[1]), (upstream[0], writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Bytes one way until that side ends or a side goes away (reset): either ends the tunnel."""
        try:
            with contextlib.suppress(ConnectionError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
        finally:
            sink.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        user = self._user(request.headers.get("Proxy-Authorization"))
        self.seen.append((request.method, str(request.url), user))
        if self.credentials is not None and user is None:
            return web.Response(status=407, headers={"Proxy-Authenticate": 'Basic realm="proxy"'})
        assert self._session is not None
        headers = {name: value for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP}
        async with self._session.request(request.method, request.url, headers=headers, data=await request.read(),
                                         allow_redirects=False) as answer:
            body = await answer.read()
            kept = {name: value for name, value in answer.headers.items() if name.lower() not in _HOP_BY_HOP}
            return web.Response(status=answer.status, body=body, headers=kept)
