"""VK (VKontakte) community door: Callback API endpoint or Bots Long Poll, one channel per group.

Private messages, public wall and board comments and suggested posts become complaints;
the customer is told the registration number by private message (messages.send) or, for
a public comment, by a reply comment that repeats no personal data. Redeliveries carry the
same ``event_id`` and add nothing. API calls go through the vk-api library.
"""
from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any, ClassVar

import aiohttp
import vk_api
from aiohttp import web
from cachetools import TTLCache

from channels.social.common import (
    COMMON_SETTINGS,
    AttachmentFetcher,
    MalformedPayload,
    first_number,
    json_object,
    reject,
    stable_int,
    without_keys,
)
from channels.social.vk_client import VK_API_URL, VkClient
from channels.social.vk_events import EventIgnored, VkEvent, event_key, parse_event
from gateway.adapters import AdapterContext, PullAdapter, PushAdapter, Submitted, TemporaryFailure
from gateway.batching import Batcher
from gateway.http import BodyTooLarge, read_body
from gateway.inbound import Inbound, Receipt
from gateway.outbound import proxy_arguments
from normalizer.schema import Complaint

#: Hosts VK serves photos, documents and voice messages from.
VK_FILE_HOSTS = ["vk.com", "vk.ru", "userapi.com", "vkuser.net", "vkuseraudio.net", "vk-cdn.net", "vkuservideo.net",
                 "mycdn.me", "vk.me"]


#: VK errors a second try of the same call cannot mend: 5 the key is not valid, 7 and 15 no
#: right to it, 27 a group key cannot do it, 100 a parameter is wrong, 900-902 the user has
#: blocked the community, not allowed its messages, or their privacy settings forbid them.
FINAL_ERROR_CODES = frozenset({5, 7, 15, 27, 100, 900, 901, 902})
#: ``messages.send`` calls in one ``execute`` at most (VK runs up to 25 API calls in one).
SENDS_PER_CALL = 25


class VkAdapter(PushAdapter, PullAdapter):
    """One VK community: ``mode: callback`` (VK calls us) or ``mode: longpoll`` (we ask VK)."""

    name = "vk"
    version = "1.0"
    description = "VK community: private messages, wall and board comments, suggested posts (Callback API or Long Poll)."
    capabilities = frozenset({"push", "pull", "acknowledge", "reply", "attachments"})
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["group_id", "access_token"],
        "properties": {
            **COMMON_SETTINGS,
            "group_id": {"type": "integer", "minimum": 1},
            "access_token": {"type": "string", "minLength": 1},
            "mode": {"enum": ["callback", "longpoll"]},
            "path": {"type": "string", "pattern": "^/"},
            "confirmation_code": {"type": "string", "minLength": 1},
            "secret": {"type": "string", "minLength": 1, "maxLength": 50},
            "api_version": {"type": "string", "pattern": r"^5\.\d+$"},
            "api_base_url": {"type": "string", "pattern": "^https?://"},
            "api_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "public_reply": {"type": "boolean"},
            "name_cache_size": {"type": "integer", "minimum": 0},
            "name_cache_ttl_seconds": {"type": "number", "exclusiveMinimum": 0},
            "name_lookup_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "longpoll_wait_seconds": {"type": "integer", "minimum": 1, "maximum": 90},
        },
        "if": {"properties": {"mode": {"const": "longpoll"}}, "required": ["mode"]},
        "else": {"required": ["confirmation_code", "secret"]},
    }

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        s = self.settings
        self.group_id = int(s["group_id"])
        self.mode = s.get("mode", "callback")
        self.path = s.get("path", f"/channels/vk/{self.instance}").rstrip("/")
        self.confirmation_code = str(s.get("confirmation_code", ""))
        self.secret = str(s.get("secret", "")).encode("utf-8")
        self.max_body = int(s.get("max_body_bytes", 1024 * 1024))
        self.public_reply = bool(s.get("public_reply", True))
        self.name_timeout = float(s.get("name_lookup_timeout_seconds", 3.0))
        self.wait = int(s.get("longpoll_wait_seconds", 25))
        self.client = VkClient(s["access_token"], s.get("api_version", "5.199"), s.get("api_base_url", VK_API_URL),
                               float(s.get("api_timeout_seconds", 10.0)))
        size = int(s.get("name_cache_size", 10_000))
        # writers' names waiting together are asked for in one users.get (up to 1000 ids), and
        # acknowledgements waiting together go out in one execute: VK allows 20 calls a second
        self._names: Batcher[int, str | None] = Batcher(self._look_up_names, 1000, self.spawn)
        self._name_lookups: dict[int, asyncio.Future[str | None]] = {}
        self._sends: Batcher[dict[str, Any], Any] = Batcher(self._send_many, SENDS_PER_CALL, self.spawn)
        self.names: TTLCache[int, str | None] | None = TTLCache(size, float(s.get("name_cache_ttl_seconds", 86_400))) \
            if size else None
        self.cursor_name = f"vk:{self.instance}:ts"
        self.session: aiohttp.ClientSession | None = None
        self.fetcher: AttachmentFetcher | None = None
        self._server: dict[str, Any] | None = None
        self._ts = ""
        self._reset_ts = False

    # -- life cycle -------------------------------------------------------------------
    def runs_in_every_worker(self) -> bool:
        return self.mode == "callback"  # one long poll per group, in the first worker

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(self.path, self.callback)] if self.mode == "callback" else []

    async def start(self) -> None:
        self.http()
        if self.mode == "longpoll":
            await PullAdapter.start(self)

    async def stop(self) -> None:
        await super().stop()
        self.client.close()

    async def close(self) -> None:
        """Forget the long-poll key (a new one is fetched) and close the HTTP session."""
        self._server = None
        if self.session is not None:
            await self.session.close()
            self.session = self.fetcher = None

    def http(self) -> tuple[aiohttp.ClientSession, AttachmentFetcher]:
        """The HTTP session for the long-poll server and file downloads, opened on first use."""
        if self.session is None or self.fetcher is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
            # VK retries an event it got no quick "ok" for: files get 5 seconds by default
            self.fetcher = AttachmentFetcher.from_settings(self.session, self.settings, VK_FILE_HOSTS, default_timeout=5.0)
        return self.session, self.fetcher

    # -- Callback API -----------------------------------------------------------------
    async def callback(self, request: web.Request) -> web.Response:
        """VK's request: answer the confirmation code, ``ok`` once stored, 503 to be retried."""
        try:
            event = json_object(await read_body(request, self.max_body))
        except BodyTooLarge:
            return reject(self, 413, "too_large", "request body too large")
        except MalformedPayload as exc:
            return reject(self, 400, "malformed", "malformed request", error=str(exc))
        given = event.get("secret")
        if not isinstance(given, str) or not given:
            return reject(self, 403, "unsigned", "request without secret")
        if not hmac.compare_digest(given.encode("utf-8"), self.secret):
            return reject(self, 403, "forged", "request with a wrong secret")
        if event.get("group_id") != self.group_id:
            return reject(self, 403, "wrong_group", "request for another group", group_id=str(event.get("group_id")))
        if event.get("type") == "confirmation":
            self.log.info("confirmation requested", extra={"channel": self.instance})
            return web.Response(text=self.confirmation_code)
        retry = request.headers.get("X-Retry-Counter")
        try:
            await self.handle_event(event, retry=retry)
        except TemporaryFailure:
            return web.Response(status=503, text="try again later", headers={"Retry-After": "30"})
        return web.Response(text="ok")

    # -- Long Poll --------------------------------------------------------------------
    async def pull(self) -> None:
        """One long-poll request (``a_check``) and the delivery of what it brought. A key
        comes from groups.getLongPollServer when there is none; ``ts`` is saved only after
        every update of the batch was delivered, so a failed batch is fetched again."""
        session, _ = self.http()
        if self._server is None:
            self._server = await self.client.call("groups.getLongPollServer", group_id=self.group_id)
            saved = None if self._reset_ts else await self.context.state.get_cursor(self.cursor_name)
            self._reset_ts = False
            self._ts = saved or str(self._server["ts"])
            if saved is None:  # remember where we started, so a failed first batch is fetched again
                await self.context.state.set_cursor(self.cursor_name, self._ts)
        server = self._server
        params = {"act": "a_check", "key": server["key"], "ts": self._ts, "wait": str(self.wait)}
        async with session.get(server["server"], params=params, timeout=aiohttp.ClientTimeout(total=self.wait + 15),
                               **proxy_arguments(server["server"])) as resp:
            if resp.status >= 400:  # not raise_for_status: its error carries the URL, and the URL the key
                raise aiohttp.ClientError(f"VK long poll: HTTP {resp.status}")
            data = await resp.json(content_type=None)
        failed = data.get("failed")
        if failed == 1:  # history partly lost: go on from the ts VK gives
            self.log.warning("long poll history lost", extra={"channel": self.instance})
            self._ts = str(data["ts"])
            await self.context.state.set_cursor(self.cursor_name, self._ts)
        elif failed in (2, 3):  # key expired (2) or key and ts lost (3): a new key next time
            self._server, self._reset_ts = None, failed == 3
        elif failed is not None:
            raise RuntimeError(f"long poll failed: {failed!r}")
        else:
            for update in data.get("updates") or []:
                if isinstance(update, dict):
                    await self.handle_event(update, retry=None)
            self._ts = str(data["ts"])
            await self.context.state.set_cursor(self.cursor_name, self._ts)

    # -- events -----------------------------------------------------------------------
    async def handle_event(self, event: dict[str, Any], retry: str | None) -> Submitted | None:
        """Deliver one event (raises ``TemporaryFailure``). Events that are no complaint
        are answered and skipped; an event we cannot read is kept as a dead letter."""
        key = event_key(event)
        raw = without_keys(event, "secret")
        try:
            parsed = parse_event(event, self.group_id)
        except EventIgnored as exc:
            self.log.debug("event skipped", extra={"channel": self.instance, "event_id": key, "why": str(exc)})
            return None
        except Exception as exc:  # any shape we cannot read is kept, never dropped
            self.log.warning("event not understood; kept as dead letter",
                             extra={"channel": self.instance, "event_id": key, "error": repr(exc)})
            return await self.deliver(Inbound(channel=self.instance, message_id=key, raw=raw,
                                              raw_content_type="application/json",
                                              meta={"vk_event": event.get("type"), "parse_error": repr(exc)}))
        return await self.deliver(await self._inbound(parsed, key, raw, retry))

    async def _inbound(self, event: VkEvent, key: str, raw: bytes, retry: str | None) -> Inbound:
        _, fetcher = self.http()
        if event.files:  # fetched while the name is asked for
            (attachments, skipped), name = await asyncio.gather(fetcher.fetch_all(event.files),
                                                                self.user_name(event.user_id))
        else:  # without the two tasks gather makes
            attachments, skipped, name = [], [], await self.user_name(event.user_id)
        meta = dict(event.meta, vk_public=event.public)
        if skipped:
            meta["attachments_not_fetched"] = skipped
            self.log.info("attachments not fetched", extra={"channel": self.instance, "event_id": key, "count": len(skipped)})
        if event.unsupported_attachments:
            meta["vk_unsupported_attachments"] = event.unsupported_attachments
        if retry:
            meta["vk_retry_counter"] = retry
        user = str(event.user_id)
        return Inbound(
            channel=self.instance, message_id=key, identities=[("vk", user)], name=name, subject=event.subject,
            text=event.text, attachments=attachments, raw=raw, raw_content_type="application/json", reply_to=("vk", user),
            in_reply_to=first_number(self.context.number_pattern, event.text, event.quoted_text),
            language=event.language, meta=meta)

    async def user_name(self, user_id: int) -> str | None:
        """The user's name from users.get, cached; None when VK does not answer in time.
        Names of writers not known yet are asked for together: one ``users.get`` for every
        writer waiting (up to 1000), because VK allows a community 20 calls a second."""
        if self.names is not None and user_id in self.names:
            return self.names[user_id]
        lookup = self._name_lookups.get(user_id)  # a writer already being looked up is not asked for again
        if lookup is None:
            lookup = self._name_lookups[user_id] = self._names.submit(user_id)
            lookup.add_done_callback(lambda _: self._name_lookups.pop(user_id, None))
        try:
            async with asyncio.timeout(self.name_timeout):
                return await asyncio.shield(lookup)  # the look-up goes on for the cache
        except TimeoutError:  # a name is nice to have; the complaint goes on without it
            self.log.info("users.get did not answer in time", extra={"channel": self.instance})
            return None

    async def _look_up_names(self, user_ids: list[int]) -> list[str | None | Exception]:
        names: dict[int, str | None] = dict.fromkeys(user_ids)  # a writer waiting twice is asked for once
        try:
            users = await self.client.call("users.get", user_ids=",".join(map(str, names)))
        except Exception as exc:  # the complaints go on without names
            self.log.info("users.get failed", extra={"channel": self.instance, "error": repr(exc)})
            return [None] * len(user_ids)
        for user in users if isinstance(users, list) else []:
            if isinstance(user, dict) and user.get("id") in names:
                names[user["id"]] = " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p) or None
        if self.names is not None:
            for user_id, name in names.items():
                self.names[user_id] = name
        return [names[user_id] for user_id in user_ids]

    # -- answers ----------------------------------------------------------------------
    def acknowledgement_retry_delay(self, error: Exception, backoff: float) -> float | None:
        """Never again for VK's errors that a second try cannot mend (the key, the rights, the
        user's privacy settings, a wrong parameter: ``FINAL_ERROR_CODES``). A second
        ``messages.send`` carries the same ``random_id``: VK delivers it once however often
        it is sent."""
        if isinstance(error, vk_api.ApiError) and error.code in FINAL_ERROR_CODES:
            return None
        return backoff

    async def acknowledge(self, receipt: Receipt, complaint: Complaint) -> None:
        meta = complaint.meta
        event = meta.get("vk_event")
        if event in ("wall_reply_new", "board_post_new"):
            if self.public_reply:
                await self._public_reply(complaint, self.context.texts.render(complaint, receipt, door="chat", public=True))
            return
        text = self.context.texts.render(complaint, receipt, door="chat")
        peer = meta.get("vk_peer_id") or (complaint.reply_to.value if complaint.reply_to else None)
        if peer is None:
            raise ValueError("the complaint has no VK user to answer")
        await self._send_message(peer_id=int(peer), random_id=stable_int(f"ack:{complaint.id}"), message=text,
                                 group_id=self.group_id)

    async def _send_message(self, **params: Any) -> Any:
        """``messages.send`` of an acknowledgement (a short text). Those waiting together go
        out together, up to ``SENDS_PER_CALL`` in one ``execute``: VK allows a community 20
        calls a second, so one call each would hold an acknowledging door to 20 complaints
        a second. A call that fails as a whole fails each message, which its own retries
        send again."""
        return await self._sends(params)

    async def _send_many(self, batch: list[dict[str, Any]]) -> list[Any]:
        if len(batch) == 1:
            return [await self.client.call("messages.send", **batch[0])]
        return list(await self.client.call_many("messages.send", batch))

    async def _public_reply(self, complaint: Complaint, text: str) -> None:
        meta = complaint.meta
        if meta.get("vk_event") == "wall_reply_new":
            await self.client.call("wall.createComment", owner_id=meta["vk_owner_id"], post_id=meta["vk_post_id"],
                                   from_group=self.group_id, reply_to_comment=meta["vk_comment_id"], message=text,
                                   guid=f"ack-{complaint.id}")
        else:
            await self.client.call("board.createComment", group_id=self.group_id, topic_id=meta["vk_topic_id"],
                                   from_group=1, message=text, guid=f"ack-{complaint.id}")

    async def send_reply(self, complaint: Complaint, text: str) -> None:
        """An operator's answer, always as a private message (it may hold personal data)."""
        if complaint.reply_to is None or complaint.reply_to.kind != "vk":
            raise ValueError("the complaint has no VK user to answer")
        digest = json.dumps([complaint.id, text], ensure_ascii=False)
        await self.client.call("messages.send", peer_id=int(complaint.reply_to.value), random_id=stable_int(digest),
                               message=text, group_id=self.group_id)  # alone: an answer may be long
