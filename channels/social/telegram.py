"""Telegram bot door: webhook (secret token header) or long polling (getUpdates), through
python-telegram-bot pointed at a configurable Bot API address.

Private chats give complaints with text, photos, documents and voice messages; group and
channel messages only when enabled. ``update_id`` is the idempotency key; a polling offset
is saved only after the update was delivered. ``/start`` greets in the user's language
and offers a button to share the phone number; a shared contact of the user's own links
the ``telegram`` identity to the ``phone`` identity. Acknowledgements reply to the message.
"""
from __future__ import annotations

import hmac
import json
import warnings
from typing import Any, ClassVar

import aiohttp
import orjson
from aiohttp import web
from telegram import Bot, KeyboardButton, Message, ReplyKeyboardMarkup, ReplyKeyboardRemove, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.request import BaseRequest, RequestData
from telegram.warnings import PTBDeprecationWarning, PTBUserWarning

from channels.social.common import (
    COMMON_SETTINGS,
    AttachmentFetcher,
    DownloadError,
    MalformedPayload,
    WantedFile,
    first_number,
    json_object,
    reject,
)
from gateway.adapters import AdapterContext, PullAdapter, PushAdapter, Submitted, TemporaryFailure
from gateway.http import BodyTooLarge, read_body
from gateway.inbound import Inbound, InboundAttachment, Receipt
from gateway.outbound import proxy_arguments
from normalizer.schema import Complaint

# getUpdates is called raw (each update parsed on its own, so one odd update cannot block
# the poll), and so is sendMessage for texts (see ``_send_message``); PTB would otherwise
# suggest its parsing wrappers on every call.
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.(getUpdates|sendMessage)'", category=PTBUserWarning)

TELEGRAM_API_URL = "https://api.telegram.org/bot"
TELEGRAM_FILE_URL = "https://api.telegram.org/file/bot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

#: What the bot says besides acknowledgements; every text can be overridden per language.
DEFAULT_TEXTS: dict[str, dict[str, str]] = {
    "ru": {"greeting": "Здравствуйте! Опишите, пожалуйста, вашу проблему в одном сообщении — мы зарегистрируем "
                       "обращение и сообщим его номер. Чтобы мы узнавали вас и в других каналах, можно поделиться "
                       "номером телефона кнопкой ниже.",
           "contact_button": "Поделиться номером телефона",
           "contact_thanks": "Спасибо, номер телефона сохранён."},
    "pl": {"greeting": "Dzień dobry! Opisz proszę swój problem w jednej wiadomości — zarejestrujemy zgłoszenie i podamy "
                       "jego numer. Abyśmy rozpoznawali Cię także w innych kanałach, możesz udostępnić numer telefonu "
                       "przyciskiem poniżej.",
           "contact_button": "Udostępnij numer telefonu",
           "contact_thanks": "Dziękujemy, numer telefonu został zapisany."},
    "en": {"greeting": "Hello! Please describe your problem in one message — we will register your complaint and tell "
                       "you its number. So that we recognise you in our other channels too, you can share your phone "
                       "number with the button below.",
           "contact_button": "Share my phone number",
           "contact_thanks": "Thank you, your phone number has been saved."},
}


class TelegramAdapter(PushAdapter, PullAdapter):
    """One Telegram bot: ``mode: webhook`` (Telegram calls us) or ``mode: polling``."""

    name = "telegram"
    version = "1.0"
    description = "Telegram bot: private chats (optionally groups and channels), webhook or long polling."
    capabilities = frozenset({"push", "pull", "acknowledge", "reply", "attachments"})
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["token"],
        "properties": {
            **{k: v for k, v in COMMON_SETTINGS.items() if k != "download_hosts"},
            "token": {"type": "string", "minLength": 1},
            "mode": {"enum": ["webhook", "polling"]},
            "path": {"type": "string", "pattern": "^/"},
            "secret_token": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,256}$"},
            "webhook_url": {"type": "string", "pattern": "^https://"},
            "api_base_url": {"type": "string", "pattern": "^https?://"},
            "file_base_url": {"type": "string", "pattern": "^https?://"},
            "api_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "polling_timeout_seconds": {"type": "integer", "minimum": 0, "maximum": 50},
            "accept_groups": {"type": "boolean"},
            "accept_channels": {"type": "boolean"},
            "acknowledge_in_webhook_response": {"type": "boolean"},
            "texts": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {k: {"type": "string", "minLength": 1} for k in ("greeting", "contact_button", "contact_thanks")}}},
        },
        "if": {"properties": {"mode": {"const": "polling"}}, "required": ["mode"]},
        "then": {"properties": {"acknowledge_in_webhook_response": {"const": False}}},  # no webhook to answer
        "else": {"required": ["secret_token"]},
    }

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        s = self.settings
        self.mode = s.get("mode", "webhook")
        self.path = s.get("path", f"/channels/telegram/{self.instance}").rstrip("/")
        self.secret = str(s.get("secret_token", "")).encode("ascii")
        self.max_body = int(s.get("max_body_bytes", 1024 * 1024))
        self.accept_groups = bool(s.get("accept_groups", False))
        self.accept_channels = bool(s.get("accept_channels", False))
        self.acknowledge_in_response = bool(s.get("acknowledge_in_webhook_response", False))
        self.poll_timeout = int(s.get("polling_timeout_seconds", 25))
        timeout = float(s.get("api_timeout_seconds", 10.0))
        self._requests = (AiohttpBotRequest(timeout), AiohttpBotRequest(timeout, connections=1))
        self.bot = Bot(s["token"], base_url=s.get("api_base_url", TELEGRAM_API_URL),
                       base_file_url=s.get("file_base_url", TELEGRAM_FILE_URL),
                       request=self._requests[0], get_updates_request=self._requests[1])
        self.texts = {lang: dict(texts) for lang, texts in DEFAULT_TEXTS.items()}
        for lang, texts in (s.get("texts") or {}).items():
            self.texts.setdefault(lang, dict(DEFAULT_TEXTS["en"])).update(texts)
        self.allowed_updates = ["message"] + (["channel_post"] if self.accept_channels else [])
        self.cursor_name = f"telegram:{self.instance}:offset"
        self.fetcher = AttachmentFetcher.from_settings(None, self.settings, [])
        self._webhook_deleted = False

    # -- life cycle -------------------------------------------------------------------
    def runs_in_every_worker(self) -> bool:
        return self.mode == "webhook"  # one getUpdates loop per bot, in the first worker

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(self.path, self.webhook)] if self.mode == "webhook" else []

    async def start(self) -> None:
        if self.mode == "polling":
            await PullAdapter.start(self)
        elif self.settings.get("webhook_url"):
            self.spawn(self._set_webhook())

    async def close(self) -> None:
        """Close the Bot API connections (they are opened again on the next use)."""
        for request in self._requests:
            await request.shutdown()

    async def open(self) -> None:
        for request in self._requests:
            await request.initialize()

    async def _set_webhook(self) -> None:
        try:
            await self.bot.set_webhook(self.settings["webhook_url"], secret_token=self.secret.decode("ascii"),
                                       allowed_updates=self.allowed_updates)
            self.log.info("webhook set", extra={"channel": self.instance})
        except Exception as exc:  # the gateway runs on; the operator sees why Telegram is silent
            self.log.error("setWebhook failed", extra={"channel": self.instance, "error": repr(exc)})

    # -- webhook ----------------------------------------------------------------------
    async def webhook(self, request: web.Request) -> web.Response:
        """Telegram's request: 200 once stored, 503 to be retried. With
        ``acknowledge_in_webhook_response`` the 200 carries the acknowledgement as a
        ``sendMessage`` call, which Telegram makes itself (the Bot API's "reply to the webhook")."""
        given = request.headers.get(SECRET_HEADER)
        if not given:
            return reject(self, 401, "unsigned", "request without secret token")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.secret):  # header bytes as sent
            return reject(self, 403, "forged", "request with a wrong secret token")
        try:
            body = await read_body(request, self.max_body)
            data = json_object(body)
            if not isinstance(data.get("update_id"), int):
                raise MalformedPayload("no update_id")
        except BodyTooLarge:
            return reject(self, 413, "too_large", "request body too large")
        except MalformedPayload as exc:
            return reject(self, 400, "malformed", "malformed request", error=str(exc))
        try:
            submitted = await self.handle_update(data, body, acknowledge=not self.acknowledge_in_response)
        except TemporaryFailure:
            return web.Response(status=503, text="try again later", headers={"Retry-After": "30"})
        # a redelivery is answered too: Telegram sends an update again only when our answer did not reach it
        if self.acknowledge_in_response and submitted is not None and self.should_acknowledge(submitted, in_response=True):
            assert submitted.complaint is not None  # should_acknowledge checked it
            self.context.metrics.child(self.context.metrics.acknowledged, self.instance, "in_webhook_response").inc()
            call = {"method": "sendMessage", **self._acknowledgement_params(submitted.receipt, submitted.complaint)}
            return web.Response(body=orjson.dumps(call), content_type="application/json")
        return web.Response(text="ok")

    # -- polling ----------------------------------------------------------------------
    async def pull(self) -> None:
        """One getUpdates (long poll) and the delivery of what it brought. The offset is
        saved after each update was delivered, which also tells Telegram that the earlier
        ones need not be sent again."""
        await self.open()
        if not self._webhook_deleted:  # getUpdates does not work while a webhook is set
            await self.bot.delete_webhook()
            self._webhook_deleted = True
        saved = await self.context.state.get_cursor(self.cursor_name)
        params: dict[str, Any] = {"timeout": self.poll_timeout, "allowed_updates": self.allowed_updates}
        if saved:
            params["offset"] = int(saved)
        updates = await self.bot.do_api_request("getUpdates", api_kwargs=params, read_timeout=self.poll_timeout + 10.0)
        for data in updates or []:
            update_id = data.get("update_id") if isinstance(data, dict) else None
            if not isinstance(update_id, int):
                self.log.warning("update without update_id skipped", extra={"channel": self.instance})
                continue
            await self.handle_update(data, json.dumps(data, ensure_ascii=False).encode("utf-8"))
            await self.context.state.set_cursor(self.cursor_name, str(update_id + 1))

    # -- updates ----------------------------------------------------------------------
    async def handle_update(self, data: dict[str, Any], raw: bytes, *, acknowledge: bool = True) -> Submitted | None:
        """Deliver one update (raises ``TemporaryFailure``); skip what is no complaint;
        keep an update we cannot read as a dead letter. ``acknowledge=False``: the caller
        acknowledges the complaint (in the webhook's response)."""
        key = str(data["update_id"])
        plain = plain_private_text(data)
        if plain is not None:  # most complaints: read without building python-telegram-bot's objects
            return await self.deliver(self._plain_inbound(plain, key, raw), acknowledge=acknowledge)
        try:
            update = Update.de_json(data, self.bot)
            message = update.message or (update.channel_post if self.accept_channels else None)
            why = None if message is None else self._skip_reason(message)
        except Exception as exc:  # an update PTB cannot read is still kept
            return await self.deliver(self._not_understood(key, raw, exc))
        if message is None or why:
            self.log.debug("update skipped", extra={"channel": self.instance, "update_id": key, "why": why or "no message"})
            return None
        command = message.text.split("@")[0].split(" ")[0] if isinstance(message.text, str) else ""  # PTB checks no types
        if message.chat.type == "private" and command == "/start":
            self.spawn(self._greet(message))
            return None
        try:
            if message.contact is not None and message.from_user is not None:
                inbound = self._contact(message, key, raw)
            else:
                inbound = await self._inbound(message, key, raw)
        except Exception as exc:  # a message we cannot read is still kept
            inbound = self._not_understood(key, raw, exc)
        submitted = await self.deliver(inbound, acknowledge=acknowledge)
        if inbound.meta.get("telegram_contact") == "own" and submitted.receipt.status != "duplicate":
            self.spawn(self._say(message, "contact_thanks", ReplyKeyboardRemove()))
        return submitted

    def _not_understood(self, key: str, raw: bytes, exc: Exception) -> Inbound:
        self.log.warning("update not understood; kept as dead letter",
                         extra={"channel": self.instance, "update_id": key, "error": repr(exc)})
        return Inbound(channel=self.instance, message_id=key, raw=raw, raw_content_type="application/json",
                       meta={"parse_error": repr(exc)})

    def _skip_reason(self, message: Message) -> str | None:
        chat_type = message.chat.type
        if chat_type == "channel":
            return None if self.accept_channels else "channel messages are off"
        if chat_type in ("group", "supergroup") and not self.accept_groups:
            return "group messages are off"
        if message.from_user is None or message.from_user.is_bot:
            return "not written by a person"
        return None

    async def _inbound(self, message: Message, key: str, raw: bytes) -> Inbound:
        user, chat = message.from_user, message.chat
        wanted, unsupported = self._files(message)
        attachments, skipped = await self.fetcher.fetch_all(wanted)  # files come through the Bot API client
        quoted = message.reply_to_message
        quoted_text = quoted.text if quoted is not None and quoted.from_user is not None and quoted.from_user.is_bot else None
        meta: dict[str, Any] = {}
        if skipped:
            meta["attachments_not_fetched"] = skipped
        if unsupported:
            meta["telegram_unsupported_attachments"] = unsupported
        return self._message_inbound(
            key, raw, identity=str(user.id if user is not None else chat.id),
            name=(user.full_name if user is not None else chat.title) or None,
            language=user.language_code if user is not None else None, text=message.text or message.caption or "",
            quoted_text=quoted_text, chat_id=chat.id, chat_type=chat.type, message_id=message.message_id,
            attachments=attachments, meta=meta)

    def _plain_inbound(self, message: dict[str, Any], key: str, raw: bytes) -> Inbound:
        """``_inbound`` for what ``plain_private_text`` found: the same complaint."""
        user, chat = message["from"], message["chat"]
        first, last = user["first_name"], user.get("last_name")
        return self._message_inbound(
            key, raw, identity=str(user["id"]), name=None if not first else f"{first} {last}" if last else first,
            language=user.get("language_code"), text=message["text"], quoted_text=None,
            chat_id=chat["id"], chat_type=chat["type"], message_id=message["message_id"])

    def _message_inbound(self, key: str, raw: bytes, *, identity: str, name: str | None, language: str | None,
                         text: str, quoted_text: str | None, chat_id: int, chat_type: str, message_id: int,
                         attachments: list[InboundAttachment] | None = None, meta: dict[str, Any] | None = None) -> Inbound:
        return Inbound(
            channel=self.instance, message_id=key, identities=[("telegram", identity)], name=name, text=text,
            attachments=attachments or [], raw=raw, raw_content_type="application/json", reply_to=("telegram", identity),
            in_reply_to=first_number(self.context.number_pattern, text, quoted_text), language=language,
            meta={"telegram_chat_id": chat_id, "telegram_message_id": message_id, "telegram_chat_type": chat_type,
                  **(meta or {})})

    def _files(self, message: Message) -> tuple[list[WantedFile], list[str]]:
        wanted: list[WantedFile] = []
        if message.photo:
            best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
            wanted.append(self._wanted(best.file_id, f"photo_{message.message_id}.jpg", "image/jpeg", best.file_size))
        if message.document is not None:
            doc = message.document
            wanted.append(self._wanted(doc.file_id, doc.file_name or f"document_{message.message_id}",
                                       doc.mime_type or "application/octet-stream", doc.file_size))
        if message.voice is not None:
            wanted.append(self._wanted(message.voice.file_id, f"voice_{message.message_id}.ogg",
                                       message.voice.mime_type or "audio/ogg", message.voice.file_size))
        attachment = message.effective_attachment
        unsupported = [] if wanted or attachment is None else [type(attachment).__name__]
        return wanted, unsupported

    def _wanted(self, file_id: str, filename: str, content_type: str, size: int | None) -> WantedFile:
        async def fetch(limit: int) -> bytes:
            file = await self.bot.get_file(file_id)
            if file.file_size is not None and file.file_size > limit:
                raise DownloadError("too_large")
            return bytes(await file.download_as_bytearray())

        return WantedFile(filename, content_type, ref=file_id, size=size, fetch=fetch)

    def _contact(self, message: Message, key: str, raw: bytes) -> Inbound:
        """A shared contact opens no complaint. The user's own number links their phone to
        their Telegram identity (identities that arrive together link); someone else's
        contact is kept for operators but is no identity of the sender."""
        user, contact = message.from_user, message.contact
        assert user is not None and contact is not None
        own = contact.user_id == user.id
        identities = [("telegram", str(user.id))]
        meta: dict[str, Any] = {"telegram_chat_id": message.chat.id, "telegram_message_id": message.message_id,
                                "telegram_chat_type": message.chat.type, "telegram_contact": "own" if own else "other"}
        if own:
            phone = contact.phone_number
            identities.append(("phone", phone if phone.startswith("+") else "+" + phone))
        else:
            meta["shared_contact"] = {"phone_number": contact.phone_number, "first_name": contact.first_name,
                                      "last_name": contact.last_name, "user_id": contact.user_id}
        return Inbound(channel=self.instance, message_id=key, identities=identities, name=user.full_name or None,
                       subject="Telegram: own phone number shared" if own else "Telegram: a contact shared",
                       raw=raw, raw_content_type="application/json", reply_to=("telegram", str(user.id)),
                       language=user.language_code, auto_submitted=True, meta=meta)

    # -- answers ----------------------------------------------------------------------
    def language(self, code: str | None) -> str:
        lang = (code or "").split("-")[0].lower()
        return lang if lang in self.texts else getattr(self.context.texts, "default_language", "ru")

    async def _greet(self, message: Message) -> None:
        lang = self.language(message.from_user.language_code if message.from_user else None)
        button = KeyboardButton(self.texts[lang]["contact_button"], request_contact=True)
        await self._say(message, "greeting", ReplyKeyboardMarkup([[button]], resize_keyboard=True, one_time_keyboard=True))

    async def _say(self, message: Message, what: str, markup: ReplyKeyboardMarkup | ReplyKeyboardRemove) -> None:
        lang = self.language(message.from_user.language_code if message.from_user else None)
        try:
            await self.bot.send_message(message.chat.id, self.texts[lang][what], reply_markup=markup)
        except Exception as exc:  # a missed greeting is no lost complaint
            self.log.warning("message to the user failed", extra={"channel": self.instance, "what": what, "error": repr(exc)})

    async def acknowledge(self, receipt: Receipt, complaint: Complaint) -> None:
        await self._send_message(self._acknowledgement_params(receipt, complaint))

    def _acknowledgement_params(self, receipt: Receipt, complaint: Complaint) -> dict[str, Any]:
        """``sendMessage``'s parameters for the acknowledgement: a reply to the customer's message."""
        meta = complaint.meta
        public = meta.get("telegram_chat_type") != "private"
        text = self.context.texts.render(complaint, receipt, door="chat", public=public)
        return _reply_params(meta, text)

    def acknowledgement_retry_delay(self, error: Exception, backoff: float) -> float | None:
        """Never again when the bot may not write to the chat (blocked, kicked: 403), the chat
        is gone or moved, or the request or the token is wrong; after Telegram's own wait
        when it asks for one (429, ``retry_after``)."""
        if isinstance(error, (Forbidden, BadRequest, ChatMigrated, InvalidToken)):
            return None
        if isinstance(error, RetryAfter):
            with warnings.catch_warnings():  # an int until PTB's next major version, a timedelta then
                warnings.simplefilter("ignore", PTBDeprecationWarning)
                asked = error.retry_after
            return max(backoff, asked if isinstance(asked, (int, float)) else asked.total_seconds())
        return backoff

    async def send_reply(self, complaint: Complaint, text: str) -> None:
        """An operator's answer: in the private chat (a reply to the message), or for a group
        complaint, privately to the user (it may hold personal data)."""
        meta = complaint.meta
        if meta.get("telegram_chat_type") == "private":
            await self._send_message(_reply_params(meta, text))
        elif complaint.reply_to is not None and complaint.reply_to.kind == "telegram":
            await self._send_message(_message_params(int(complaint.reply_to.value), text))
        else:
            raise ValueError("the complaint has no Telegram chat to answer in")

    async def _send_message(self, params: dict[str, Any]) -> None:
        """``sendMessage``, its answer not read into python-telegram-bot's objects: the sent
        message (Telegram's answer quotes the customer's message in it too) is never used, and
        ``Message.de_json`` of it cost 60 µs or more per acknowledgement. Errors are PTB's."""
        await self.bot.do_api_request("sendMessage", api_kwargs=params)


def _reply_params(meta: dict[str, Any], text: str) -> dict[str, Any]:
    """``sendMessage``'s parameters for ``text`` as a reply to the customer's message (``meta``: its complaint's)."""
    return _message_params(meta["telegram_chat_id"], text, reply_to=meta["telegram_message_id"])


def _message_params(chat_id: int, text: str, reply_to: int | None = None) -> dict[str, Any]:
    """``sendMessage``'s parameters: ``text`` in the chat, a reply to ``reply_to`` when it is still there."""
    params: dict[str, Any] = {"chat_id": chat_id, "text": text}
    if reply_to is not None:
        params["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
    return params


#: The fields of a message ``plain_private_text`` reads or may leave unread (``entities`` marks
#: links, phone numbers and the like in the text, which the text itself keeps).
_PLAIN_MESSAGE_FIELDS = frozenset({"message_id", "from", "chat", "date", "text", "entities", "link_preview_options"})


def plain_private_text(update: dict[str, Any]) -> dict[str, Any] | None:
    """The message of an update that is a person's text in a private chat and nothing else,
    no command, no reply, no file (most complaints), with every field read of the type the Bot
    API gives; None for any other update, which python-telegram-bot reads. Its
    ``Update.de_json`` sets some 200 attributes on five objects for such a message (about
    80 µs here, half of what the web form's whole request costs); the seven fields the
    complaint needs are read from the JSON as they are."""
    message = update.get("message")
    if len(update) != 2 or type(message) is not dict or not message.keys() <= _PLAIN_MESSAGE_FIELDS:
        return None
    user, chat, text = message.get("from"), message.get("chat"), message.get("text")
    if type(user) is not dict or type(chat) is not dict or type(text) is not str or text.startswith("/"):
        return None
    if chat.get("type") != "private" or user.get("is_bot") is not False or type(user.get("first_name")) is not str:
        return None
    if not all(type(value) is int for value in (user.get("id"), chat.get("id"), message.get("message_id"), message.get("date"))):
        return None
    if not all(value is None or type(value) is str for value in (user.get("last_name"), user.get("language_code"))):
        return None
    return message


_JSON = {"Content-Type": "application/json"}


class AiohttpBotRequest(BaseRequest):
    """python-telegram-bot's calls to the Bot API over aiohttp, the gateway's own HTTP
    client, instead of httpx. Measured against the fake Bot API: 0.56 against 2.65 ms of
    CPU per ``sendMessage`` (httpx checked every pooled connection before each request)."""

    def __init__(self, timeout: float, connections: int = 64) -> None:
        self._timeout = timeout
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._timeout

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, Any]:
        """Telegram's answer read by orjson, as python-telegram-bot's documentation suggests
        for another JSON library (a getUpdates of 100 text messages: 259 against 109 µs here).
        What orjson refuses (invalid UTF-8, a lone surrogate, no JSON at all) is read as
        python-telegram-bot reads it: bytes that are no UTF-8 replaced, ``TelegramError``
        for an answer that is no JSON."""
        try:
            parsed: dict[str, Any] = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return BaseRequest.parse_json_payload(payload)
        return parsed

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._connections))

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: Any = BaseRequest.DEFAULT_NONE, write_timeout: Any = BaseRequest.DEFAULT_NONE,
                         connect_timeout: Any = BaseRequest.DEFAULT_NONE,
                         pool_timeout: Any = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        await self.initialize()
        assert self._session is not None

        def given(value: Any) -> float | None:  # a default (DEFAULT_NONE or another) means ours
            return self._timeout if isinstance(value, type(BaseRequest.DEFAULT_NONE)) else value

        timeout = aiohttp.ClientTimeout(total=None, connect=given(pool_timeout), sock_connect=given(connect_timeout),
                                        sock_read=given(read_timeout))
        data: Any = None
        headers: dict[str, str] | None = None
        if request_data is not None and request_data.contains_files:
            data = aiohttp.FormData()
            for name, value in request_data.json_parameters.items():
                data.add_field(name, value)
            for name, (filename, content, content_type) in request_data.multipart_data.items():
                data.add_field(name, content if isinstance(content, bytes) else content.read(),
                               filename=filename, content_type=content_type)
        elif request_data is not None:  # JSON, which the Bot API takes for every call without files: orjson
            data, headers = orjson.dumps(request_data.parameters), _JSON  # writes it in 1 µs, a form took 30-80
        try:
            async with self._session.request(method, url, data=data, headers=headers, timeout=timeout,
                                             **proxy_arguments(url)) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut(f"the Bot API did not answer in time: {exc!r}") from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"the Bot API could not be reached: {exc!r}") from exc
