"""The stack's own limit: an aiohttp handler that reads the body and does one Redis XADD
(any POST path: the web form's and the webhooks')."""
from __future__ import annotations

import sys

import redis.asyncio as aioredis
from aiohttp import web


def main() -> None:
    port, url = int(sys.argv[1]), sys.argv[2]
    r = aioredis.Redis.from_url(url)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        event_id = await r.xadd("bare:events", {"body": body})
        return web.json_response({"id": event_id.decode()}, status=201)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{path:.*}", handle)  # the web form's and the webhooks' paths alike
    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=lambda *a: None)


if __name__ == "__main__":
    main()
