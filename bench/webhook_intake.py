"""Webhook intake: Telegram updates and VK Callback API events through the gateway's
``telegram`` (webhook mode) and ``vk`` (callback mode) doors, against the bare aiohttp +
XADD handler; same load generator (wrk with bench/wrk_telegram.lua, bench/wrk_vk.lua).

The doors' Bot API and VK API calls (Telegram and VK acknowledgements, VK's users.get for
the sender's name) go to the fake Telegram and VK servers of channels/social/fakes, run in
a process of their own (``python bench/webhook_intake.py fakes TELEGRAM_PORT VK_PORT``), so
the doors do everything they do in production. The row "no acknowledgement" runs the
Telegram door with ``acknowledge: false``: the difference is the cost of answering the
customer; the row "acknowledged in the webhook response" answers with
``acknowledge_in_webhook_response: true`` (the ``sendMessage`` call rides on the webhook's
200, and Telegram makes it: no request of the gateway's own). VK rows: 200 returning
users (names cached after the warm-up), and a new user every event (one users.get each,
and vk-api allows 20 VK calls per second). On SQLite, the Telegram door without
acknowledgements and VK's returning users run also with the registry's writer process
(``registry.sqlite.writer_process``).
"""
from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from common import ROOT, Contender, Server, against, compare, cpu_seconds, flush_redis, free_port, gateway, process, redis_cpu_seconds, row
from http_intake import bare_server, contender

TELEGRAM_TOKEN = "7000000001:AAH-fake-token_for-tests"  # the fake's default token
TELEGRAM_SECRET = "bench-secret-token"
VK_TOKEN, VK_GROUP, VK_SECRET = "vk-group-token", 123456, "bench-vk-secret"
TELEGRAM_SCRIPT = ROOT / "bench" / "wrk_telegram.lua"
VK_SCRIPT = ROOT / "bench" / "wrk_vk.lua"
#: VK writers in the "returning users" rows: their names are looked up once (users.get) and cached.
RETURNING_VK_USERS = 200
os.environ.update(BENCH_TELEGRAM_SECRET=TELEGRAM_SECRET, BENCH_VK_SECRET=VK_SECRET, BENCH_VK_GROUP=str(VK_GROUP))


def fakes(telegram_port: int, vk_port: int) -> None:
    """The fake Telegram Bot API and VK API on the given ports, until terminated."""
    from aiohttp import web

    from channels.social.fakes.telegram import FakeTelegram
    from channels.social.fakes.vk import FakeVk

    async def serve() -> None:
        runners = []
        for fake, port in ((FakeTelegram(TELEGRAM_TOKEN), telegram_port), (FakeVk(VK_TOKEN, VK_GROUP), vk_port)):
            runner = web.AppRunner(fake.app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        await asyncio.Event().wait()

    asyncio.run(serve())


def wait_port(*ports: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listens on port {port}") from None
                time.sleep(0.05)


def channels(telegram_api: str, vk_api: str) -> dict[str, Any]:
    """Both doors as docs/channels/telegram.md and vk.md set them up, their APIs the fakes.
    ``telegram_quiet`` is the Telegram door once more without acknowledgements, and
    ``telegram_answering`` with them in the webhook's response. The VK door
    runs without acknowledgements: vk-api keeps a community's calls to VK's 20 per second,
    and 25 messages.send to an execute cap an acknowledging VK door at 500 complaints/s
    whatever the machine, below the load's rate (the backlog would outlast the run)."""
    telegram = {"adapter": "telegram", "mode": "webhook", "token": TELEGRAM_TOKEN, "secret_token": TELEGRAM_SECRET,
                "api_base_url": f"{telegram_api}/bot", "file_base_url": f"{telegram_api}/file/bot"}
    vk = {"adapter": "vk", "mode": "callback", "group_id": VK_GROUP, "access_token": VK_TOKEN, "secret": VK_SECRET,
          "confirmation_code": "bench-confirmation", "api_base_url": f"{vk_api}/method/", "acknowledge": False}
    return {"telegram": telegram, "telegram_quiet": {**telegram, "acknowledge": False},
            "telegram_answering": {**telegram, "acknowledge_in_webhook_response": True}, "vk": vk}


PATH = "http://127.0.0.1:{port}/channels/"
RETURNING = {"BENCH_VK_USERS": str(RETURNING_VK_USERS)}


def fake_apis(stack: ExitStack) -> tuple[dict[str, Any], Callable[[], float]]:
    """The fake APIs started in a process of their own until ``stack`` closes: the doors'
    channels pointed at them, and the CPU seconds of Redis and the fakes, which the doors call."""
    telegram_port, vk_port = free_port(), free_port()
    fakes_process = stack.enter_context(process([sys.executable, __file__, "fakes", str(telegram_port), str(vk_port)],
                                                    ready=lambda: wait_port(telegram_port, vk_port)))
    return (channels(f"http://127.0.0.1:{telegram_port}", f"http://127.0.0.1:{vk_port}"),
            lambda: redis_cpu_seconds() + cpu_seconds(fakes_process.pid))


def vk_returning(name: str, server: Server, seconds: float, connections: int, helpers: Callable[[], float]) -> Contender:
    """VK events from the returning users, to the ``vk`` door (or the bare server)."""
    # the warm-up looks up the returning users' names (users.get, 20 calls/s at most)
    return contender(name, server, seconds, connections, PATH + "vk/vk", script=VK_SCRIPT, env=RETURNING,
                     warm_up=RETURNING_VK_USERS / 20 * 1.5, helpers=helpers)


def run(seconds: float = 10, connections: int = 32) -> list[dict[str, Any]]:
    flush_redis()
    with ExitStack() as stack:
        doors, helpers = fake_apis(stack)
        bare = bare_server(stack)
        bares = {"telegram": contender("webhook: bare aiohttp + XADD, telegram updates", bare, seconds, connections,
                                       PATH + "telegram/telegram", script=TELEGRAM_SCRIPT, helpers=helpers),
                 "vk": contender("webhook: bare aiohttp + XADD, vk events", bare, seconds, connections,
                                 PATH + "vk/vk", script=VK_SCRIPT, env=RETURNING, helpers=helpers)}
        sides: list[tuple[str, Contender]] = []
        for backend in ("redis", "sqlite"):
            server = stack.enter_context(gateway(backend, channels=doors, flush=False))
            sides.append(("telegram", contender(f"webhook: telegram, {backend}, 1 process", server, seconds, connections,
                                                PATH + "telegram/telegram", script=TELEGRAM_SCRIPT, helpers=helpers)))
            sides.append(("telegram", contender(f"webhook: telegram, {backend}, 1 process, no acknowledgement", server,
                                                seconds, connections, PATH + "telegram/telegram_quiet",
                                                script=TELEGRAM_SCRIPT, helpers=helpers)))
            if backend == "redis":
                sides.append(("telegram", contender(f"webhook: telegram, {backend}, 1 process, acknowledged in the webhook "
                                                    "response", server, seconds, connections,
                                                    PATH + "telegram/telegram_answering", script=TELEGRAM_SCRIPT,
                                                    helpers=helpers)))
            sides.append(("vk", vk_returning(f"webhook: vk, {backend}, 1 process, {RETURNING_VK_USERS} returning users",
                                             server, seconds, connections, helpers)))
            if backend == "redis":
                sides.append(("vk", contender(f"webhook: vk, {backend}, 1 process, a new user every event", server,
                                              seconds, connections, PATH + "vk/vk", script=VK_SCRIPT, helpers=helpers)))
        with_writer = stack.enter_context(gateway("sqlite_writer_process", channels=doors, flush=False))
        sides.append(("telegram", contender("webhook: telegram, sqlite, 1 process and its writer process, no acknowledgement",
                                            with_writer, seconds, connections, PATH + "telegram/telegram_quiet",
                                            script=TELEGRAM_SCRIPT, helpers=helpers)))
        sides.append(("vk", vk_returning(f"webhook: vk, sqlite, 1 process and its writer process, {RETURNING_VK_USERS} "
                                         "returning users", with_writer, seconds, connections, helpers)))
        compare([*bares.values(), *(side for _, side in sides)])
    rows = [row(b.name, b.best()) for b in bares.values()]
    for door, side in sides:
        rows.append(row(side.name, against(side, bares[door])))
    return rows


if __name__ == "__main__" and sys.argv[1] == "fakes":
    fakes(int(sys.argv[2]), int(sys.argv[3]))
