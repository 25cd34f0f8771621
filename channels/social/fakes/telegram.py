"""A fake Telegram Bot API (``/bot<token>/<method>``, answers ``{"ok": true, "result": ...}``
or ``{"ok": false, "error_code", "description"}``) with file downloads
(``/file/bot<token>/<path>``), long-polled getUpdates and webhooks; plus builders of
``Update`` objects as Telegram sends them."""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp import web

from channels.social.fakes.base import FakeServer

BOT_USER = {"id": 7000000001, "is_bot": True, "first_name": "Complaints", "username": "complaints_test_bot",
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}


class FakeTelegram(FakeServer):
    """Point ``telegram.Bot(base_url=fake.base_url, base_file_url=fake.base_file_url)`` here."""

    def __init__(self, token: str = "7000000001:AAH-fake-token_for-tests") -> None:
        super().__init__()
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None
        self.tg_files: dict[str, tuple[str, bytes]] = {}
        self._message_ids = itertools.count(100)
        self.app.router.add_route("*", "/bot{token}/{method}", self._method)
        self.app.router.add_get("/file/bot{token}/{path:.+}", self._file)

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def add_tg_file(self, file_id: str, data: bytes, file_path: str) -> None:
        """A file getFile can describe and /file/bot<token>/<file_path> serves."""
        self.tg_files[file_id] = (file_path, data)

    async def push_update(self, update: dict[str, Any]) -> None:
        async with self._changed:
            self.updates.append(update)
            self._changed.notify_all()

    # -- methods ----------------------------------------------------------------------
    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        await self.record(method, params, request)
        await self.wait_if_paused(method)
        if request.match_info["token"] != self.token:
            return _fail(401, "Unauthorized")
        handler = getattr(self, "_" + method.lower(), None)
        if handler is None:
            return _fail(404, "Not Found")
        failure = self.next_failure(method)
        if failure is not None:
            return _fail(*failure)
        return await handler(params)

    async def _getme(self, params: dict[str, Any]) -> web.Response:
        return _ok(BOT_USER)

    async def _getupdates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook is not None:
            return _fail(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
                              "delete the webhook first")
        offset = int(params.get("offset") or 0)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]  # earlier ones are confirmed
        timeout = min(float(params.get("timeout") or 0), 50.0)
        if not self.updates and timeout > 0:
            try:
                async with asyncio.timeout(timeout):
                    async with self._changed:
                        await self._changed.wait_for(lambda: bool(self.updates))
            except TimeoutError:
                pass
        limit = int(params.get("limit") or 100)
        return _ok(self.updates[:limit])

    async def _sendmessage(self, params: dict[str, Any]) -> web.Response:
        if not params.get("chat_id") or not params.get("text"):
            return _fail(400, "Bad Request: message text is empty")
        chat_id = int(params["chat_id"])
        message = {"message_id": next(self._message_ids), "from": BOT_USER, "date": int(time.time()),
                   "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}, "text": params["text"]}
        return _ok(message)

    async def _setwebhook(self, params: dict[str, Any]) -> web.Response:
        if not str(params.get("url", "")).startswith("https://"):
            return _fail(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook = {"url": params["url"], "secret_token": params.get("secret_token"),
                        "allowed_updates": params.get("allowed_updates")}
        return _ok(True, "Webhook was set")

    async def _deletewebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook = None
        return _ok(True, "Webhook was deleted")

    async def _getwebhookinfo(self, params: dict[str, Any]) -> web.Response:
        info = {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self.updates)}
        return _ok(info)

    async def _getfile(self, params: dict[str, Any]) -> web.Response:
        file_id = str(params.get("file_id", ""))
        if file_id not in self.tg_files:
            return _fail(400, "Bad Request: invalid file_id")
        path, data = self.tg_files[file_id]
        return _ok({"file_id": file_id, "file_unique_id": "u" + file_id[-8:], "file_size": len(data), "file_path": path})

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        self.file_requests.append(path)
        for stored_path, data in self.tg_files.values():
            if stored_path == path:
                return web.Response(body=data)
        return web.Response(status=404)


async def _params(request: web.Request) -> dict[str, Any]:
    """Bot API parameters from the query, a JSON body or a form (complex values are JSON)."""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            params.update(json.loads(await request.read() or b"{}"))
        else:
            for key, value in (await request.post()).items():
                if isinstance(value, str):
                    params[key] = _maybe_json(value)
    return params


def _maybe_json(value: str) -> Any:
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _ok(result: Any, description: str | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return web.json_response(body)


def _fail(code: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:  # flood control (429): how long to wait, as Telegram says it
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=code)


# -- Update objects, as Telegram sends them -----------------------------------------------------
def user(user_id: int, first_name: str = "Anna", last_name: str | None = "Nowak", language_code: str | None = "ru",
         username: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    for key, value in (("last_name", last_name), ("username", username), ("language_code", language_code)):
        if value is not None:
            found[key] = value
    return found


def message_update(update_id: int, sender: dict[str, Any] | None, *, text: str | None = None, message_id: int = 1,
                   chat: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """An update with a ``message``; a private chat with ``sender`` unless ``chat`` is given.
    ``fields`` are further Message fields (photo, document, voice, contact, caption ...)."""
    if chat is None and sender is not None:
        chat = {"id": sender["id"], "type": "private", "first_name": sender["first_name"]}
        if "last_name" in sender:
            chat["last_name"] = sender["last_name"]
    message: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": chat}
    if sender is not None:
        message["from"] = sender
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            message["entities"] = [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]
    message.update(fields)
    return {"update_id": update_id, "message": message}


def channel_post_update(update_id: int, channel_id: int, title: str, text: str, message_id: int = 1) -> dict[str, Any]:
    chat = {"id": channel_id, "title": title, "type": "channel"}
    return {"update_id": update_id, "channel_post": {"message_id": message_id, "sender_chat": chat, "chat": chat,
                                                     "date": int(time.time()), "text": text}}


def photo_sizes(file_id: str, sizes: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """PhotoSize objects: ``(width, height, file_size)`` each; ids ``<file_id>-<n>``."""
    return [{"file_id": f"{file_id}-{i}", "file_unique_id": f"uq{file_id}{i}", "width": w, "height": h, "file_size": size}
            for i, (w, h, size) in enumerate(sizes)]


def document(file_id: str, file_name: str, mime_type: str, file_size: int) -> dict[str, Any]:
    return {"file_name": file_name, "mime_type": mime_type, "file_id": file_id, "file_unique_id": "uq" + file_id,
            "file_size": file_size}


def voice(file_id: str, file_size: int, duration: int = 3) -> dict[str, Any]:
    return {"duration": duration, "mime_type": "audio/ogg", "file_id": file_id, "file_unique_id": "uq" + file_id,
            "file_size": file_size}


def contact(phone_number: str, first_name: str, user_id: int | None = None, last_name: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"phone_number": phone_number, "first_name": first_name}
    if last_name is not None:
        found["last_name"] = last_name
    if user_id is not None:
        found["user_id"] = user_id
    return found
