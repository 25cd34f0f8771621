"""Twilio SMS and MMS: an inbound message becomes a complaint of the sender's phone, and
the registration number goes back in the webhook's own TwiML ``<Message>`` reply.

``MessageSid`` is the idempotency key. MMS media are fetched from the Twilio API into the
blob store (a file that cannot be fetched stays as a link in the text, never dropped).
Twilio joins a long SMS into one webhook itself; when a carrier delivers the parts
separately, every message from the same sender to the same number within
``merge_window_seconds`` of the previous one is added to that complaint as a follow-up
and answered with silence, so the parts make one complaint and one acknowledgement.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import re
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiDict
from twilio.base.exceptions import TwilioException
from twilio.twiml.messaging_response import MessagingResponse

from channels.phone.calls import caller_number
from channels.phone.twilio_common import RAW_BODY, SID, TWILIO_SETTINGS, DownloadFailed, TwilioAdapter, WebhookRejected
from gateway.adapters import AdapterContext, Submitted, TemporaryFailure
from gateway.inbound import Inbound, InboundAttachment, safe_filename
from normalizer.schema import Complaint

MEDIA_PATH = re.compile(r"^/2010-04-01/Accounts/AC[0-9a-fA-F]{32}/Messages/[A-Z]{2}[0-9a-fA-F]{32}/Media/ME[0-9a-fA-F]{32}$")
SMS_MAX_CHARS = 1600  # Twilio's limit for one outgoing message body


#: Twilio sends at most ten media items with one message.
MAX_TWILIO_MEDIA = 10


class TwilioSmsAdapter(TwilioAdapter):
    name = "twilio_sms"
    version = "1.0"
    description = "Twilio SMS and MMS: complaints by text message, the number in the TwiML reply."
    capabilities = frozenset({"push", "attachments", "reply"})
    default_path_base = "/channels/phone/twilio/sms"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["account_sid", "auth_token"],
        "properties": {
            **TWILIO_SETTINGS,
            "acknowledge": {"type": "boolean"},
            "download_media": {"type": "boolean"},
            "max_media": {"type": "integer", "minimum": 0, "maximum": 10},
            "max_media_bytes": {"type": "integer", "minimum": 1024},
            "merge_window_seconds": {"type": "number", "minimum": 0},
            "merge_lock_seconds": {"type": "number", "exclusiveMinimum": 0},
            "reply_from": {"type": "string", "minLength": 1},
        },
    }

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        s = self.settings
        self.reply = bool(s.get("acknowledge", True))
        self.download_media = bool(s.get("download_media", True))
        self.max_media = int(s.get("max_media", 10))
        self.max_media_bytes = int(s.get("max_media_bytes", 5 * 1024 * 1024))
        self.merge_window = float(s.get("merge_window_seconds", 60))
        self.merge_lock = float(s.get("merge_lock_seconds", 5))
        self.reply_from = s.get("reply_from")

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(self.path, self.guarded(self.receive))]

    async def receive(self, request: web.Request, params: MultiDict[str]) -> web.Response:
        message_sid = params.get("MessageSid") or params.get("SmsSid") or ""
        if not SID.match(message_sid):
            raise WebhookRejected(400, "malformed", "missing or invalid MessageSid")
        num_media = params.get("NumMedia", "0")
        if not (num_media.isascii() and num_media.isdigit()):  # "²".isdigit() too, and int() refuses it
            raise WebhookRejected(400, "malformed", "NumMedia is not a number")
        if len(num_media) > 3 or int(num_media) > MAX_TWILIO_MEDIA:  # a forged count must not drive a loop
            raise WebhookRejected(400, "malformed", f"NumMedia is over Twilio's {MAX_TWILIO_MEDIA}")
        sender = caller_number(params.get("From"), self.region)
        inbound = await self.message(params, message_sid, sender, int(num_media), request[RAW_BODY])

        thread = _thread_key(self.instance, sender, params.get("To", "")) if sender and self.merge_window > 0 else None
        owner = message_sid
        locked = bool(thread) and await self._lock(thread or "", owner)
        try:
            merged_into = await self._recent_number(thread) if locked else None
            if merged_into and not inbound.in_reply_to:
                inbound.in_reply_to = merged_into
                inbound.meta["merged_part"] = True
            try:
                submitted = await self.deliver(inbound)
            except TemporaryFailure:
                return web.Response(status=503, text="temporarily unavailable")
            number = submitted.receipt.registration_number
            if locked and number:
                await self.context.state.set_cursor(thread or "", json.dumps({"number": number, "at": time.time()}))
        finally:
            if locked:
                await self.context.state.release_lock(thread or "", owner)
        merged = bool(merged_into) and submitted.receipt.status == "follow_up"
        return self.twiml(self.acknowledgement(submitted, merged=merged))

    async def message(self, params: MultiDict[str], message_sid: str, sender: str | None, num_media: int,
                      raw: bytes) -> Inbound:
        """The Inbound of one SMS/MMS webhook (media fetched into it)."""
        attachments: list[InboundAttachment] = []
        links: list[str] = []
        media_meta = []
        for i in range(num_media):
            url = params.get(f"MediaUrl{i}", "")
            content_type = params.get(f"MediaContentType{i}", "application/octet-stream")
            stored = False
            if self.download_media and i < self.max_media:
                attachment = await self._fetch_media(url, content_type, message_sid, i)
                if attachment is not None:
                    attachments.append(attachment)
                    stored = True
            if not stored:
                links.append(f"[{content_type}] {url}")
            media_meta.append({"url": url, "content_type": content_type, "stored": stored})
        body = params.get("Body", "")
        text = "\n".join([body, *links]) if links else body
        quoted = self.context.number_pattern.findall(body)
        return Inbound(
            channel=self.instance,
            message_id=message_sid,
            identities=[("phone", sender)] if sender else [],
            text=text,
            attachments=attachments,
            raw=raw,
            raw_content_type="application/x-www-form-urlencoded",
            in_reply_to=quoted[0] if quoted else None,
            # short codes and alphanumeric senders are robots: kept, never answered
            auto_submitted=sender is None,
            meta={"provider": "twilio", "to": params.get("To"), "num_segments": params.get("NumSegments"),
                  "media": media_meta, **({} if sender else {"sender_id": params.get("From")})},
        )

    async def _fetch_media(self, url: str, content_type: str, message_sid: str, index: int) -> InboundAttachment | None:
        path = urlsplit(url).path
        try:
            if not MEDIA_PATH.match(path):
                raise DownloadFailed("not a Twilio media URL")
            data, served_type = await self.download(path, self.max_media_bytes)
        except DownloadFailed as exc:
            self.log.warning("media download failed; kept as a link",
                             extra={"channel": self.instance, "message_sid": message_sid, "error": str(exc)})
            return None
        content_type = content_type or served_type
        extension = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ""
        name = safe_filename(f"{path.rsplit('/', 1)[-1]}{extension}", fallback=f"media-{index}{extension}")
        return InboundAttachment(filename=name, content_type=content_type, data=data)

    def acknowledgement(self, submitted: Submitted, merged: bool) -> MessagingResponse:
        """The TwiML reply: the number for a complaint, nothing for a merged part or a robot."""
        response = MessagingResponse()
        receipt, complaint = submitted.receipt, submitted.complaint
        if self.reply and receipt.answers_in_response and complaint is not None and not complaint.auto_submitted and not merged:
            response.message(self.context.texts.render(complaint, receipt, door="sms"))
        return response

    # -- parts of one long message ----------------------------------------------------
    async def _lock(self, thread: str, owner: str) -> bool:
        deadline = time.monotonic() + self.merge_lock
        while True:
            if await self.context.state.acquire_lock(thread, owner, self.merge_lock * 2):
                return True
            if time.monotonic() >= deadline:
                self.log.warning("sender busy; not merged", extra={"channel": self.instance})
                return False
            await asyncio.sleep(0.05)

    async def _recent_number(self, thread: str | None) -> str | None:
        value = await self.context.state.get_cursor(thread or "")
        if not value:
            return None
        last = json.loads(value)
        return str(last["number"]) if time.time() - float(last["at"]) <= self.merge_window else None

    # -- operator replies -------------------------------------------------------------
    async def send_reply(self, complaint: Complaint, text: str) -> None:
        """Send an operator's answer by SMS through the Twilio REST API."""
        if complaint.reply_to is None or complaint.reply_to.kind != "phone":
            raise ValueError("the complaint has no phone number to answer")
        sender = self.reply_from or complaint.meta.get("to")
        if not sender:
            raise ValueError("no number to send from: set reply_from")
        target = {"messaging_service_sid": sender} if sender.startswith("MG") else {"from_": sender}
        messages = self.rest_client().messages
        try:
            for start in range(0, len(text), SMS_MAX_CHARS):
                await messages.create_async(to=complaint.reply_to.value, body=text[start:start + SMS_MAX_CHARS], **target)
        except TwilioException as exc:
            self.log.warning("reply not sent", extra={"channel": self.instance, "complaint_id": complaint.id,
                                                      "error": str(exc)})
            raise


def _thread_key(instance: str, sender: str | None, to: str) -> str:
    """The state key of one sender -> number pair (hashed: no phone numbers in key names)."""
    digest = hashlib.sha256(f"{sender}>{to}".encode()).hexdigest()[:32]
    return f"twilio_sms:{instance}:{digest}"
