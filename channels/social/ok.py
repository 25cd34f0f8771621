"""Odnoklassniki (OK) group door: the Bot API webhook for the group's chats.

OK does not sign webhook requests. Two guards stand in: an allow-list of source networks
(OK's published ranges by default) and a secret path segment compared in constant time and
never logged. Each ``MESSAGE_CREATED`` is stored before OK gets its 200; the customer is
told the registration number by a message to the same chat. ``complaint-gateway ok
subscribe|unsubscribe|subscriptions`` manages the webhook subscription.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import hmac
import ipaddress
import json
import mimetypes
import sys
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from channels.social.common import (
    COMMON_SETTINGS,
    AttachmentFetcher,
    MalformedPayload,
    WantedFile,
    first_number,
    json_object,
    reject,
)
from channels.social.ok_client import OK_API_URL, OkApiError, OkClient
from gateway.adapters import AdapterContext, PushAdapter, TemporaryFailure
from gateway.http import BodyTooLarge, read_body
from gateway.inbound import Inbound, Receipt
from normalizer.schema import Complaint

#: Networks OK sends webhook requests from (apiok.ru, graph.user.subscribe).
OK_NETWORKS = ["217.20.145.192/28", "217.20.151.160/28", "217.20.153.48/28"]
#: Hosts OK serves images, audio, video and files from.
OK_FILE_HOSTS = ["ok.ru", "mycdn.me", "okcdn.ru", "odnoklassniki.ru"]
FILE_TYPES = {"IMAGE": "image/jpeg", "AUDIO": "audio/mpeg", "VIDEO": "video/mp4", "FILE": "application/octet-stream"}
#: OK's error codes (``error_code``, answered with HTTP 200) that a second try cannot mend: the
#: method or the request is wrong (3, 4, 100), the token or its rights (10, 101-105, 200, 210),
#: the group or the chat (160, 300), the text refused by OK's censor (454), the group's or the
#: user's restrictions (456-458). Every other failure is sent again: OK's own outage or flood
#: limits (2, 7, 8, 9, 11), a network error, a code not known here.
FINAL_ERROR_CODES = frozenset({3, 4, 10, 100, 101, 102, 103, 104, 105, 160, 200, 210, 300, 454, 456, 457, 458})


class OkAdapter(PushAdapter):
    """One OK group's chats through a Bot API webhook subscription."""

    name = "ok"
    version = "1.0"
    description = "Odnoklassniki group chats (Bot API webhook); network allow-list and secret path."
    capabilities = frozenset({"push", "acknowledge", "reply", "attachments"})
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["access_token", "path_secret"],
        "properties": {
            **COMMON_SETTINGS,
            "access_token": {"type": "string", "minLength": 1},
            "path": {"type": "string", "pattern": "^/"},
            "path_secret": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,128}$"},
            "allowed_networks": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "trust_forwarded_for": {"type": "boolean"},
            "api_base_url": {"type": "string", "pattern": "^https?://"},
            "api_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "webhook_url": {"type": "string", "pattern": "^https?://"},
        },
    }

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        s = self.settings
        self.path = s.get("path", f"/channels/ok/{self.instance}").rstrip("/")
        self.path_secret = str(s["path_secret"]).encode("ascii")
        self.networks = parse_networks(s.get("allowed_networks", OK_NETWORKS))
        self.trust_forwarded = bool(s.get("trust_forwarded_for", False))
        self.max_body = int(s.get("max_body_bytes", 1024 * 1024))
        self.session: aiohttp.ClientSession | None = None
        self.fetcher: AttachmentFetcher | None = None
        self.client: OkClient | None = None

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(self.path + "/{secret}", self.webhook)]

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        # OK waits 5 seconds for the answer: files get at most 3 of them by default
        self.fetcher = AttachmentFetcher.from_settings(self.session, self.settings, OK_FILE_HOSTS, default_timeout=3.0)
        self.client = OkClient(self.session, self.settings["access_token"], self.settings.get("api_base_url", OK_API_URL),
                               float(self.settings.get("api_timeout_seconds", 10.0)))

    async def stop(self) -> None:
        await self.drain()
        if self.session is not None:
            await self.session.close()

    # -- webhook ----------------------------------------------------------------------
    def source_address(self, request: web.Request) -> str:
        """The sender's address; behind a proxy, the one the proxy appended last to
        X-Forwarded-For (entries further left are whatever the client claimed)."""
        if self.trust_forwarded:
            hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
            if hops:
                return hops[-1]
        return request.remote or ""

    async def webhook(self, request: web.Request) -> web.Response:
        """OK's request: 200 once stored, 503 to be retried; refused from elsewhere."""
        address = self.source_address(request)
        if not address_allowed(address, self.networks):
            return reject(self, 403, "forbidden_network", "request from a network not allowed", source=address)
        if not hmac.compare_digest(request.match_info["secret"].encode("utf-8"), self.path_secret):
            return reject(self, 404, "bad_secret", "request with a wrong path secret", source=address)
        try:
            body = await read_body(request, self.max_body)
            data = json_object(body)
        except BodyTooLarge:
            return reject(self, 413, "too_large", "request body too large")
        except MalformedPayload as exc:
            return reject(self, 400, "malformed", "malformed request", error=str(exc))
        kind = data.get("webhookType", "MESSAGE_CREATED" if "message" in data else None)
        if kind != "MESSAGE_CREATED":
            self.log.debug("webhook event skipped", extra={"channel": self.instance, "webhook_type": str(kind)})
            return web.json_response({"success": True})
        try:
            inbound = await self._inbound(data, body)
        except Exception as exc:  # any shape we cannot read is kept, never dropped
            self.log.warning("message not understood; kept as dead letter", extra={"channel": self.instance, "error": repr(exc)})
            inbound = Inbound(channel=self.instance, message_id=message_key(data, body), raw=body,
                              raw_content_type="application/json", meta={"parse_error": repr(exc)})
        try:
            await self.deliver(inbound)
        except TemporaryFailure:
            return web.Response(status=503, text="try again later", headers={"Retry-After": "30"})
        return web.json_response({"success": True})

    async def _inbound(self, data: dict[str, Any], body: bytes) -> Inbound:
        assert self.fetcher is not None
        sender, message = data["sender"], data["message"]
        user_id = str(sender["user_id"]).removeprefix("user:")
        chat_id = str(data["recipient"]["chat_id"])
        text = str(message.get("text") or "")
        wanted, unsupported = files_of(message.get("attachments"))
        attachments, skipped = await self.fetcher.fetch_all(wanted)
        meta: dict[str, Any] = {"ok_chat_id": chat_id, "ok_user_id": str(sender["user_id"]), "ok_mid": message.get("mid")}
        if skipped:
            meta["attachments_not_fetched"] = skipped
        if unsupported:
            meta["ok_unsupported_attachments"] = unsupported
        return Inbound(channel=self.instance, message_id=message_key(data, body), identities=[("ok", user_id)],
                       name=sender.get("name") or None, text=text, attachments=attachments, raw=body,
                       raw_content_type="application/json", reply_to=("ok", user_id),
                       in_reply_to=first_number(self.context.number_pattern, text), meta=meta)

    # -- answers ----------------------------------------------------------------------
    def acknowledgement_retry_delay(self, error: Exception, backoff: float) -> float | None:
        """Never again for OK's errors that a second try cannot mend (``FINAL_ERROR_CODES``)."""
        if isinstance(error, OkApiError) and error.code in FINAL_ERROR_CODES:
            return None
        return backoff

    async def acknowledge(self, receipt: Receipt, complaint: Complaint) -> None:
        await self._send(complaint, self.context.texts.render(complaint, receipt, door="chat"))

    async def send_reply(self, complaint: Complaint, text: str) -> None:
        await self._send(complaint, text)

    async def _send(self, complaint: Complaint, text: str) -> None:
        chat_id = complaint.meta.get("ok_chat_id")
        if not chat_id or self.client is None:
            raise ValueError("the complaint has no OK chat to answer in")
        await self.client.send_message(str(chat_id), text)

    # -- command line -----------------------------------------------------------------
    @classmethod
    def add_cli_commands(cls, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        ok = subparsers.add_parser("ok", help="manage the OK (Odnoklassniki) webhook subscription")
        commands = ok.add_subparsers(dest="ok_command", required=True)
        for command, text in (("subscribe", "subscribe the gateway's webhook URL to the group's chat events"),
                              ("unsubscribe", "remove the webhook subscription"),
                              ("subscriptions", "list the group's webhook subscriptions")):
            parser = commands.add_parser(command, help=text)
            parser.add_argument("--channel", help="the ok channel in config.yaml (default: the only one)")
            if command != "subscriptions":
                parser.add_argument("--url", help="webhook URL (default: webhook_url, or http.public_base_url + path + secret)")
            parser.set_defaults(func=functools.partial(run_cli, command))


def run_cli(command: str, args: argparse.Namespace) -> int:
    """``complaint-gateway ok <command>``: prints one JSON line per result, secrets masked."""
    from gateway.cli import _load
    from gateway.config import ConfigError, validate

    config = _load(args)
    found = {name: s for name, s in config.channels.items() if s.get("adapter") == OkAdapter.name}
    if args.channel:
        if args.channel not in found:
            raise ConfigError(f"channels.{args.channel}: no ok channel of that name (ok channels: {', '.join(found) or 'none'})")
        name = args.channel
    elif len(found) == 1:
        name = next(iter(found))
    else:
        raise ConfigError(f"channels: {'no ok channel' if not found else 'several ok channels'}; name one with --channel")
    settings = {k: v for k, v in found[name].items() if k not in ("adapter", "enabled")}
    validate(settings, OkAdapter.settings_schema, prefix=f"channels.{name}")
    secret = str(settings["path_secret"])
    url = str(getattr(args, "url", None) or settings.get("webhook_url") or "")
    if command != "subscriptions" and not url:
        base = config.http.get("public_base_url")
        if not base:
            raise ConfigError(f"channels.{name}.webhook_url: not set, and http.public_base_url is not set either")
        url = f"{str(base).rstrip('/')}{settings.get('path', f'/channels/ok/{name}').rstrip('/')}/{secret}"

    async def main() -> int:
        async with aiohttp.ClientSession() as session:
            client = OkClient(session, settings["access_token"], settings.get("api_base_url", OK_API_URL),
                              float(settings.get("api_timeout_seconds", 10.0)))
            if command == "subscriptions":
                for item in await client.subscriptions():
                    print(json.dumps({**item, "url": mask(str(item.get("url", "")), secret)}, ensure_ascii=False))
                return 0
            result = await (client.subscribe(url) if command == "subscribe" else client.unsubscribe(url))
            print(json.dumps({"command": command, "url": mask(str(url), secret), **result}, ensure_ascii=False))
            return 0 if result.get("success") else 1

    try:
        return asyncio.run(main())
    except Exception as exc:  # the command reports, it does not trace back
        print(f"ok {command} failed: {mask(str(exc), secret)}", file=sys.stderr)
        return 1


def mask(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def parse_networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def address_allowed(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def message_key(data: dict[str, Any], body: bytes) -> str:
    """OK's message id (``mid``), or for a message without one, a hash of the body."""
    message = data.get("message")
    mid = message.get("mid") if isinstance(message, dict) else None
    if isinstance(mid, str) and mid:
        return mid
    return "sha256:" + hashlib.sha256(body).hexdigest()


def files_of(items: Any) -> tuple[list[WantedFile], list[str]]:
    """Attachments with a URL to fetch (images, audio, video, files) and the types of the rest."""
    if isinstance(items, dict):  # OK sends one attachment as an object, several as a list
        items = [items]
    wanted: list[WantedFile] = []
    unsupported: list[str] = []
    for i, item in enumerate(items or []):
        kind = str(item.get("type")) if isinstance(item, dict) else "?"
        payload = item.get("payload") if isinstance(item, dict) else None
        url = payload.get("url") if isinstance(payload, dict) else None
        if kind not in FILE_TYPES or not url or not isinstance(payload, dict):
            unsupported.append(kind)
            continue
        name = str(payload.get("name") or payload.get("fileName") or f"{kind.lower()}_{payload.get('id') or i + 1}")
        guessed = mimetypes.guess_type(name)[0]
        if not guessed and "." not in name:
            name += mimetypes.guess_extension(FILE_TYPES[kind]) or ""
        wanted.append(WantedFile(name, guessed or FILE_TYPES[kind], ref=str(url), url=str(url),
                                 size=payload.get("size") if isinstance(payload.get("size"), int) else None))
    return wanted, unsupported
