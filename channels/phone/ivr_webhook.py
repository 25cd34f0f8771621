"""A generic IVR webhook for telephony platforms other than Twilio (Asterisk, FreeSWITCH
and hosted IVRs): one signed JSON POST per call, answered with the registration number
for the IVR to speak.

Requests are signed with HMAC-SHA256 over ``"<timestamp>.<body>"`` with a shared secret
(``X-Timestamp``, ``X-Signature: sha256=<hex>``); a timestamp outside the replay window is
refused. ``call_id`` is the idempotency key: a repeated request gets the same number. An
IVR that transcribes after the call sends the call first and the transcript later
(``"event": "transcript"``), which is added to the same complaint.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any, ClassVar

from aiohttp import web

from channels.phone.calls import call_follow_up, call_inbound, caller_number, default_path, region_of
from channels.phone.prompts import DEFAULT_LOCALES, LANGUAGES, PROMPTS_SCHEMA, Prompts
from gateway.adapters import AdapterContext, PushAdapter, Submitted, TemporaryFailure
from gateway.http import BodyTooLarge, MalformedBody, parse_json, read_body
from gateway.inbound import Inbound

_CALL_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_DIGITS = re.compile(r"^[0-9*#]{0,64}$")
_URL = re.compile(r"^https?://\S{1,2000}$")

#: What the JSON body may hold, and of which type (documented in docs/channels/ivr.md).
FIELDS: dict[str, tuple[type, ...]] = {
    "event": (str,), "call_id": (str,), "caller": (str, type(None)), "called": (str, type(None)),
    "language": (str, type(None)), "account": (str, type(None)), "urgent": (bool,), "dtmf": (dict,),
    "transcript": (str, type(None)), "recording_url": (str, type(None)), "recording_seconds": (int, type(None)),
}


class IvrWebhookAdapter(PushAdapter):
    name = "ivr_webhook"
    version = "1.0"
    description = "Generic IVR webhook: signed JSON per call, answered with the number to speak."
    capabilities = frozenset({"push"})
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["secret"],
        "properties": {
            "path": {"type": "string", "pattern": "^/"},
            "secret": {"type": "string", "minLength": 16},
            "previous_secret": {"type": ["string", "null"]},
            "max_clock_skew_seconds": {"type": "number", "exclusiveMinimum": 0},
            "max_body_bytes": {"type": "integer", "minimum": 1024},
            "max_transcript_chars": {"type": "integer", "minimum": 1},
            "default_language": {"enum": list(LANGUAGES)},
            "locales": {"type": "object", "additionalProperties": False,
                        "properties": {lang: {"type": "string"} for lang in LANGUAGES}},
            "prompts": PROMPTS_SCHEMA,
            "default_region": {"type": "string"},
        },
    }

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        s = self.settings
        self.path = (s.get("path") or default_path(context, self.name, "/channels/phone/ivr")).rstrip("/")
        self.secrets = [str(v).encode("utf-8") for v in (s["secret"], s.get("previous_secret")) if v]
        self.max_skew = float(s.get("max_clock_skew_seconds", 300))
        self.max_body = int(s.get("max_body_bytes", 256 * 1024))
        self.max_transcript = int(s.get("max_transcript_chars", 20_000))
        self.default_language = s.get("default_language", "ru")
        self.locales = {**DEFAULT_LOCALES, **(s.get("locales") or {})}
        self.prompts = Prompts(s.get("prompts"))
        self.region = region_of(context, s)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(self.path, self.receive)]

    async def receive(self, request: web.Request) -> web.Response:
        try:
            body = await read_body(request, self.max_body)
        except BodyTooLarge:
            return self.refuse(413, "too_large", "request body too large")
        timestamp = request.headers.get("X-Timestamp", "")
        if not self.signed(timestamp, body, request.headers.get("X-Signature", "")):
            return self.refuse(403, "forged", "invalid or missing X-Signature")
        if abs(time.time() - int(timestamp)) > self.max_skew:
            return self.refuse(403, "stale", "timestamp outside the replay window")
        try:
            data = parse_json(body)
            call = parse_call(data, self.max_transcript)
        except MalformedBody as exc:
            return self.refuse(400, "malformed", str(exc))

        lang = call["language"] if call.get("language") in LANGUAGES else self.default_language
        base = self.call_complaint(call, lang, data)
        try:
            submitted = await self.deliver(base)
            if call["event"] == "transcript" and call.get("transcript"):
                await self.deliver(call_follow_up(
                    base, message_id=f"transcript:{call['call_id']}", registration_number=submitted.receipt.registration_number,
                    text=call["transcript"], raw=call, meta={"part": "transcription"}))
        except TemporaryFailure:
            return web.json_response({"error": "temporarily unavailable, please retry"}, status=503,
                                     headers={"Retry-After": "30"})
        return self.answer(submitted, lang)

    def signed(self, timestamp: str, body: bytes, signature: str) -> bool:
        """HMAC-SHA256 of ``timestamp.body`` under the secret (or the previous one)."""
        if not (timestamp.isascii() and timestamp.isdigit()) or not signature:  # "²".isdigit() too
            return False
        given = signature.removeprefix("sha256=").strip().lower().encode("utf-8", "surrogateescape")  # bytes as sent
        message = timestamp.encode("ascii") + b"." + body
        return any(hmac.compare_digest(hmac.new(secret, message, hashlib.sha256).hexdigest().encode("ascii"), given)
                   for secret in self.secrets)

    def refuse(self, status: int, reason: str, message: str) -> web.Response:
        self.context.metrics.rejected.labels(self.instance, reason).inc()
        self.log.info("request refused", extra={"channel": self.instance, "reason": reason, "detail": message})
        return web.json_response({"error": message}, status=status)

    def call_complaint(self, call: dict[str, Any], lang: str, raw: dict[str, Any]) -> Inbound:
        dtmf = call.get("dtmf") or {}
        account = (call.get("account") or dtmf.get("account") or "").strip("#*") or None
        urgent = bool(call["urgent"]) if "urgent" in call else dtmf.get("urgent") == "1"
        transcript = (call.get("transcript") or "").strip() if call["event"] == "call" else ""
        meta = {"provider": "ivr", "dtmf": dtmf, "recording_url": call.get("recording_url"),
                "recording_seconds": call.get("recording_seconds")}
        # without a transcript the text is the call id: unique, so that two calls of one
        # customer are never taken for a repeat of each other
        return call_inbound(
            instance=self.instance, call_id=call["call_id"], caller=caller_number(call.get("caller"), self.region),
            called=call.get("called"), language=lang, account=account, urgent=urgent,
            subject=self.prompts.text(lang, "subject"), text=transcript or call["call_id"],
            raw=raw, meta={k: v for k, v in meta.items() if v not in (None, {})})

    def answer(self, submitted: Submitted, lang: str) -> web.Response:
        receipt = submitted.receipt
        number = receipt.registration_number
        speech = {"language": self.locales[lang]}
        if number is None or submitted.complaint is None:
            speech["text"] = self.prompts.text(lang, "accepted")
            return web.json_response({"status": "accepted", "registration_number": None, "digits": None,
                                      "speech": speech}, status=202)
        speech["text"] = self.context.texts.render(submitted.complaint, receipt, door="ivr")
        digits = "".join(ch for ch in number if ch.isalnum())
        return web.json_response({"status": receipt.status, "registration_number": number, "digits": digits,
                                  "speech": speech}, status=200 if receipt.status == "duplicate" else 201)


def parse_call(data: Any, max_transcript: int) -> dict[str, Any]:
    """The call described by the parsed body, checked field by field (``MalformedBody`` says
    which field is wrong)."""
    if not isinstance(data, dict):
        raise MalformedBody("a JSON object is expected")
    for key, types in FIELDS.items():
        if key in data and (not isinstance(data[key], types) or (isinstance(data[key], bool) and bool not in types)):
            raise MalformedBody(f"{key}: wrong type")
    call = {k: data[k] for k in FIELDS if k in data}
    call.setdefault("event", "call")
    if call["event"] not in ("call", "transcript"):
        raise MalformedBody("event: 'call' or 'transcript'")
    if not _CALL_ID.match(call.get("call_id", "")):
        raise MalformedBody("call_id: 1 to 128 printable ASCII characters")
    if call.get("account") and not _DIGITS.match(call["account"]):
        raise MalformedBody("account: digits only")
    dtmf = call.get("dtmf") or {}
    if not all(isinstance(k, str) and isinstance(v, str) and _DIGITS.match(v) for k, v in dtmf.items()) or len(dtmf) > 20:
        raise MalformedBody("dtmf: an object of at most 20 names to key presses (0-9, *, #)")
    if call.get("recording_url") and not _URL.match(call["recording_url"]):
        raise MalformedBody("recording_url: an http(s) URL")
    if len(call.get("transcript") or "") > max_transcript:
        raise MalformedBody(f"transcript: at most {max_transcript} characters")
    if call["event"] == "transcript" and not (call.get("transcript") or "").strip():
        raise MalformedBody("transcript: required for event 'transcript'")
    return call
