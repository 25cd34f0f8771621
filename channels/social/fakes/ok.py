"""A fake OK Bot API for groups (``/graph/me/...?access_token=``, JSON bodies, errors as
``{"error_code", "error_msg"}`` with HTTP 200) and builders of webhook events shaped like
the ones OK posts (``MESSAGE_CREATED``)."""
from __future__ import annotations

import itertools
import json
import time
from typing import Any

from aiohttp import web

from channels.social.fakes.base import FakeServer


class FakeOk(FakeServer):
    """Point the adapter's ``api_base_url`` at ``fake.api_url``."""

    def __init__(self, token: str = "tkn1-ok-group-token") -> None:
        super().__init__()
        self.token = token
        self.subscriptions: dict[str, int] = {}
        self._ids = itertools.count(1)
        self.app.router.add_post("/graph/me/messages/{chat_id}", self._send_message)
        self.app.router.add_post("/graph/me/subscribe", self._subscribe)
        self.app.router.add_post("/graph/me/unsubscribe", self._unsubscribe)
        self.app.router.add_get("/graph/me/subscriptions", self._subscriptions)

    @property
    def api_url(self) -> str:
        return f"{self.url}/graph"

    async def _body(self, request: web.Request, method: str) -> tuple[dict[str, Any] | None, web.Response | None]:
        body: dict[str, Any] = {}
        if request.method == "POST":
            if not request.content_type.startswith("application/json"):
                return None, _error(100, "PARAM : Content-Type application/json is required")
            try:
                body = json.loads(await request.read())
            except ValueError:
                return None, _error(100, "PARAM : invalid JSON")
        await self.record(method, {"query": dict(request.query), "body": body, **request.match_info}, request)
        if request.query.get("access_token") != self.token:
            return None, _error(102, "PARAM_SESSION_EXPIRED : Session expired")
        return body, None

    async def _send_message(self, request: web.Request) -> web.Response:
        body, error = await self._body(request, "messages")
        if error is not None:
            return error
        failure = self.next_failure("messages")  # fail_next("messages", (8, "FLOOD_BLOCKED : ...")): OK's error
        if failure is not None:
            return _error(*failure)
        assert body is not None
        if (body.get("recipient") or {}).get("chat_id") != request.match_info["chat_id"]:
            return _error(100, "PARAM : recipient.chat_id does not match the chat in the URL")
        if not (body.get("message") or {}).get("text"):
            return _error(100, "PARAM : message.text is empty")
        return web.json_response({"success": True, "message_id": f"mid:{request.match_info['chat_id']}.{next(self._ids):x}"})

    async def _subscribe(self, request: web.Request) -> web.Response:
        body, error = await self._body(request, "subscribe")
        if error is not None:
            return error
        assert body is not None
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _error(100, "PARAM : url must be an http: or https: URL")
        self.subscriptions.setdefault(url, int(time.time() * 1000))
        return web.json_response({"success": True})

    async def _unsubscribe(self, request: web.Request) -> web.Response:
        body, error = await self._body(request, "unsubscribe")
        if error is not None:
            return error
        assert body is not None
        return web.json_response({"success": self.subscriptions.pop(str(body.get("url")), None) is not None})

    async def _subscriptions(self, request: web.Request) -> web.Response:
        _, error = await self._body(request, "subscriptions")
        if error is not None:
            return error
        return web.json_response({"subscriptions": [{"url": u, "time": t} for u, t in self.subscriptions.items()]})


def _error(code: int, message: str) -> web.Response:
    return web.json_response({"error_code": code, "error_msg": message, "error_data": None})


# -- webhook events, shaped like OK's ---------------------------------------------------------
def message_created(user_id: str, chat_id: str, text: str, *, name: str | None = None, mid: str | None = None,
                    seq: int = 98211023614189660, attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``MESSAGE_CREATED`` webhook: ``user_id`` like ``user:123456789012``, ``chat_id`` like
    ``chat:C3ecb9d02a600``."""
    sender: dict[str, Any] = {"user_id": user_id}
    if name is not None:
        sender["name"] = name
    message: dict[str, Any] = {"text": text, "seq": seq,
                               "mid": mid or f"mid:{chat_id.removeprefix('chat:')}.{seq:x}"}
    if attachments:
        message["attachments"] = attachments
    return {"sender": sender, "recipient": {"chat_id": chat_id}, "message": message,
            "timestamp": int(time.time() * 1000), "webhookType": "MESSAGE_CREATED"}


def image_attachment(url: str, image_id: str = "895214812336") -> dict[str, Any]:
    return {"type": "IMAGE", "payload": {"url": url, "id": image_id}}


def share_attachment(url: str) -> dict[str, Any]:
    return {"type": "SHARE", "payload": {"url": url}}
