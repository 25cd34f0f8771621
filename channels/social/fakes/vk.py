"""A fake VK API: method calls (``POST /method/<name>``, form-encoded, answered with
``{"response": ...}`` or ``{"error": {...}}``; ``execute`` as vk-api's request pool sends
it), the Bots Long Poll server (``GET /lp``) and file hosting; plus builders of Callback
API events shaped like API 5.199's."""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from typing import Any

from aiohttp import web

from channels.social.fakes.base import FakeServer


class FakeVk(FakeServer):
    """Point vk-api at ``fake.api_url``. ``users`` maps user ids to (first, last) names."""

    def __init__(self, token: str = "vk-group-token", group_id: int = 123456) -> None:
        super().__init__()
        self.token = token
        self.group_id = group_id
        self.users: dict[int, tuple[str, str]] = {}
        self.lp_key = uuid.uuid4().hex
        self.lp_updates: list[tuple[int, dict[str, Any]]] = []
        self.next_ts = 1000
        self.lp_requests: list[dict[str, str]] = []
        self._ids = itertools.count(1)
        self._random_ids: dict[tuple[str, str], int] = {}
        self.app.router.add_post("/method/{method}", self._method)
        self.app.router.add_get("/lp", self._long_poll)

    @property
    def api_url(self) -> str:
        return f"{self.url}/method/"

    # -- API methods ------------------------------------------------------------------
    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        params.update(request.query)
        await self.record(method, params, request)
        await self.wait_if_paused(method)
        request_params = [{"key": k, "value": v} for k, v in params.items() if k != "access_token"]
        if params.get("access_token") != self.token:
            return _error(5, "User authorization failed: invalid access_token (4).", request_params)
        if not params.get("v"):
            return _error(8, "Invalid request: v (version) is required", request_params)
        if method == "execute":
            return await self._execute(params, request_params)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return _error(3, "Unknown method passed", request_params)
        failure = self.next_failure(method)
        if failure is not None:
            code, message = failure
            return _error(code, message, request_params)
        return web.json_response({"response": handler(params)})

    async def _execute(self, params: dict[str, str], request_params: list[dict[str, str]]) -> web.Response:
        """``execute`` of the one VKScript shape vk-api's request pool sends for calls of one
        method: each call recorded and answered as alone; a failed one is ``false`` in
        ``response`` and its error in ``execute_errors``, in order."""
        failure = self.next_failure("execute")
        if failure is not None:
            code, message = failure
            return _error(code, message, request_params)
        shape = _POOL_SCRIPT.fullmatch(params.get("code", ""))
        handler = getattr(self, "_" + shape.group(2).replace(".", "_"), None) if shape else None
        if shape is None or handler is None:
            return _error(12, "Unable to compile code", request_params)
        method, response, errors = shape.group(2), [], []
        for values in json.loads(shape.group(1)):
            call = {k: str(v) for k, v in values.items()}
            await self.record(method, call)
            failed = self.next_failure(method)
            if failed is None:
                response.append(handler(call))
            else:
                response.append(False)
                errors.append({"method": method, "error_code": failed[0], "error_msg": failed[1]})
        return web.json_response({"response": response, **({"execute_errors": errors} if errors else {})})

    def _users_get(self, params: dict[str, str]) -> list[dict[str, Any]]:
        found = []
        for raw in params.get("user_ids", "").split(","):
            if raw.strip().isdigit() and int(raw) in self.users:
                first, last = self.users[int(raw)]
                found.append({"id": int(raw), "first_name": first, "last_name": last,
                              "can_access_closed": True, "is_closed": False})
        return found

    def _messages_send(self, params: dict[str, str]) -> int:
        key = (params.get("peer_id", ""), params.get("random_id", ""))
        if key[1] not in ("", "0") and key in self._random_ids:
            return self._random_ids[key]  # VK does not send a message twice for one random_id
        self._random_ids[key] = message_id = next(self._ids)
        return message_id

    def _wall_createComment(self, params: dict[str, str]) -> dict[str, Any]:
        return {"comment_id": next(self._ids), "parents_stack": []}

    def _board_createComment(self, params: dict[str, str]) -> int:
        return next(self._ids)

    def _groups_getLongPollServer(self, params: dict[str, str]) -> dict[str, Any]:
        return {"key": self.lp_key, "server": f"{self.url}/lp", "ts": str(self.next_ts)}

    # -- Bots Long Poll -----------------------------------------------------------------
    async def push_update(self, event: dict[str, Any]) -> int:
        """Queue an event for the long poll; returns its ts."""
        async with self._changed:
            ts = self.next_ts
            self.lp_updates.append((ts, event))
            self.next_ts += 1
            self._changed.notify_all()
        return ts

    def expire_key(self) -> None:
        self.lp_key = uuid.uuid4().hex

    async def _long_poll(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.lp_requests.append(q)
        status = self.next_failure("a_check")  # fail_next("a_check", 502): the long poll server answers that status
        if status is not None:
            return web.Response(status=status, text="Bad Gateway")
        if q.get("act") != "a_check" or q.get("key") != self.lp_key:
            return web.json_response({"failed": 2})
        try:
            ts = int(q.get("ts", ""))
        except ValueError:
            return web.json_response({"failed": 1, "ts": str(self.next_ts)})
        if ts > self.next_ts or ts < 1:
            return web.json_response({"failed": 1, "ts": str(self.next_ts)})
        wait = min(float(q.get("wait", "25") or 25), 90.0)
        try:
            async with asyncio.timeout(wait):
                async with self._changed:
                    await self._changed.wait_for(lambda: self.next_ts > ts)
        except TimeoutError:
            pass
        updates = [u for t, u in self.lp_updates if t >= ts]
        return web.json_response({"ts": str(self.next_ts), "updates": updates})


#: The VKScript of vk-api's request pool for calls of one method (``vk_one_method``, minified).
_POOL_SCRIPT = re.compile(r"var values = (\[.*\]),i = 0,result = \[\];while\(i < values\.length\) "
                          r"\{result\.push\(API\.([\w.]+)\(values\[i\]\)\);i = i \+ 1;\}return result;", re.DOTALL)


def _error(code: int, message: str, request_params: list[dict[str, str]]) -> web.Response:
    return web.json_response({"error": {"error_code": code, "error_msg": message, "request_params": request_params}})


# -- Callback API events, shaped like API 5.199 -------------------------------------------
def _envelope(kind: str, obj: dict[str, Any], group_id: int, secret: str | None, event_id: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {"group_id": group_id, "type": kind, "event_id": event_id or uuid.uuid4().hex[:40],
                             "v": "5.199", "object": obj}
    if secret is not None:
        event["secret"] = secret
    return event


def confirmation_event(group_id: int, secret: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "confirmation", "group_id": group_id}
    if secret is not None:
        event["secret"] = secret
    return event


def message_new(group_id: int, user_id: int, text: str, *, secret: str | None = None, event_id: str | None = None,
                attachments: list[dict[str, Any]] | None = None, peer_id: int | None = None, lang_id: int = 0,
                message_id: int = 1, reply_message: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "date": int(time.time()), "from_id": user_id, "id": message_id, "out": 0, "version": 10000000 + message_id,
        "attachments": attachments or [], "conversation_message_id": message_id, "fwd_messages": [],
        "important": False, "is_hidden": False, "peer_id": peer_id or user_id, "random_id": 0, "text": text,
    }
    if reply_message is not None:
        message["reply_message"] = reply_message
    client_info = {"button_actions": ["text", "vkpay", "open_app", "location", "open_link", "callback",
                                      "intent_subscribe", "intent_unsubscribe"],
                   "keyboard": True, "inline_keyboard": True, "carousel": True, "lang_id": lang_id}
    return _envelope("message_new", {"message": message, "client_info": client_info}, group_id, secret, event_id)


def wall_reply_new(group_id: int, user_id: int, text: str, *, post_id: int = 34, comment_id: int = 12,
                   secret: str | None = None, event_id: str | None = None,
                   attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": comment_id, "from_id": user_id, "post_id": post_id, "owner_id": -group_id,
                           "parents_stack": [], "date": int(time.time()), "text": text, "thread": {"count": 0},
                           "post_owner_id": -group_id}
    if attachments:
        obj["attachments"] = attachments
    return _envelope("wall_reply_new", obj, group_id, secret, event_id)


def board_post_new(group_id: int, user_id: int, text: str, *, topic_id: int = 77, comment_id: int = 5,
                   secret: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    obj = {"id": comment_id, "from_id": user_id, "date": int(time.time()), "text": text,
           "topic_owner_id": -group_id, "topic_id": topic_id}
    return _envelope("board_post_new", obj, group_id, secret, event_id)


def wall_post_new(group_id: int, user_id: int, text: str, *, post_type: str = "suggest", post_id: int = 40,
                  secret: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    obj = {"id": post_id, "owner_id": -group_id, "from_id": user_id, "date": int(time.time()), "marked_as_ads": 0,
           "post_type": post_type, "text": text, "can_edit": 1, "created_by": user_id, "can_delete": 1,
           "attachments": [], "comments": {"count": 0}}
    return _envelope("wall_post_new", obj, group_id, secret, event_id)


def photo_attachment(url: str, owner_id: int, photo_id: int = 457239017, small_url: str | None = None) -> dict[str, Any]:
    """A photo in three sizes: ``url`` is the largest (960x1280), ``small_url`` the others."""
    small = small_url or url + "?size=s"
    return {"type": "photo", "photo": {
        "album_id": -3, "date": int(time.time()), "id": photo_id, "owner_id": owner_id, "access_key": "a1b2c3",
        "sizes": [{"height": 75, "type": "s", "width": 56, "url": small},
                  {"height": 1280, "type": "w", "width": 960, "url": url},
                  {"height": 604, "type": "x", "width": 453, "url": small}],
        "text": "", "has_tags": False}}


def doc_attachment(url: str, owner_id: int, title: str, ext: str, size: int, doc_id: int = 600001) -> dict[str, Any]:
    return {"type": "doc", "doc": {"id": doc_id, "owner_id": owner_id, "title": title, "size": size, "ext": ext,
                                   "date": int(time.time()), "type": 1, "url": url, "access_key": "d4e5f6"}}


def audio_message_attachment(url: str, owner_id: int, voice_id: int = 700001) -> dict[str, Any]:
    return {"type": "audio_message", "audio_message": {
        "duration": 4, "id": voice_id, "link_mp3": url + "?format=mp3", "link_ogg": url, "owner_id": owner_id,
        "access_key": "g7h8i9", "waveform": [0, 3, 7, 12, 9, 4, 0]}}
