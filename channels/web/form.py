"""The company's web form: ``GET /web/`` serves it, ``POST /web/complaints`` registers.

Accepts urlencoded and multipart forms (with files) and JSON. An ``Idempotency-Key``
header (or the form's hidden ``idempotency_key``) makes a resubmission return the same
receipt. Invalid input gets 422 with a message per field, an oversized body 413, too
many requests from one address 429; a filled honeypot field is refused with 400.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from channels.web.form_page import STRINGS, form_page, message_page, receipt_page
from gateway.adapters import PushAdapter, TemporaryFailure
from gateway.http import BodyTooLarge, MalformedBody, client_address, dumps, json_error, parse_json, read_body
from gateway.ids import new_id
from gateway.inbound import Inbound, InboundAttachment, safe_filename
from normalizer.steps.identities import phone_e164

_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_IDEMPOTENCY = re.compile(r"^[\x21-\x7e]{1,200}$")
PREFERRED = {"email": "email", "sms": "phone", "phone": "phone"}


class FormInvalid(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("invalid form")
        self.fields = fields


class WebFormAdapter(PushAdapter):
    name = "web_form"
    version = "1.0"
    description = "The company's own web form (HTML, multipart and JSON)."
    capabilities = frozenset({"push", "attachments", "idempotency-key"})
    settings_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "path": {"type": "string", "pattern": "^/"},
            "max_body_bytes": {"type": "integer", "minimum": 1024},
            "max_attachments": {"type": "integer", "minimum": 0},
            "max_attachment_bytes": {"type": "integer", "minimum": 0},
            "max_text_chars": {"type": "integer", "minimum": 1},
            "min_text_chars": {"type": "integer", "minimum": 0},
            "rate_limit_per_minute": {"type": "number", "minimum": 0},
            "rate_limit_burst": {"type": "integer", "minimum": 1},
            "rate_limit_scope": {"enum": ["process", "registry"]},
            "trust_forwarded_for": {"type": "boolean"},
            "honeypot_field": {"type": "string"},
            "default_language": {"enum": list(STRINGS)},
            "default_region": {"type": "string"},
        },
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        s = self.settings
        self.path = s.get("path", "/web").rstrip("/")
        self.max_body = int(s.get("max_body_bytes", 10 * 1024 * 1024))
        self.max_attachments = int(s.get("max_attachments", 5))
        self.max_attachment_bytes = int(s.get("max_attachment_bytes", 5 * 1024 * 1024))
        self.max_text = int(s.get("max_text_chars", 20_000))
        self.min_text = int(s.get("min_text_chars", 10))
        self.limiter = context.rate_limiter("address", float(s.get("rate_limit_per_minute", 20)), s.get("rate_limit_burst"),
                                            s.get("rate_limit_scope", "process"))
        self.trust_forwarded = bool(s.get("trust_forwarded_for", False))
        self.honeypot = s.get("honeypot_field", "website")
        self.default_language = s.get("default_language", "ru")
        self.region = s.get("default_region") or context.config.section("normalizer").get("default_region", "RU")

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get(self.path + "/", self.show_form),
            web.post(self.path + "/complaints", self.receive),
        ]

    # -- GET ----------------------------------------------------------------------------
    def language(self, request: web.Request, given: str | None = None) -> str:
        for candidate in (given, request.query.get("lang")):
            if candidate in STRINGS:
                return candidate
        for part in request.headers.get("Accept-Language", "").split(","):
            code = part.split(";")[0].strip().split("-")[0].lower()
            if code in STRINGS:
                return code
        return self.default_language

    async def show_form(self, request: web.Request) -> web.Response:
        lang = self.language(request)
        html = form_page(lang, self.path + "/complaints", secrets.token_hex(16))  # unguessable: it keys the receipt
        return web.Response(text=html, content_type="text/html", headers={"Content-Language": lang})

    # -- POST ---------------------------------------------------------------------------
    async def receive(self, request: web.Request) -> web.StreamResponse:
        metrics = self.context.metrics
        wants_html = _wants_html(request)
        if not await self.limiter.allow(client_address(request, self.trust_forwarded)):
            metrics.rejected.labels(self.instance, "rate_limited").inc()
            self.log.info("rate limited", extra={"channel": self.instance})
            return json_error(429, "too many requests", retry_after=60) if not wants_html else web.Response(
                status=429, text=message_page(self.language(request), "429", "Too many requests"), content_type="text/html",
                headers={"Retry-After": "60"})
        try:
            fields, files = await self._parse(request)
        except BodyTooLarge:
            metrics.rejected.labels(self.instance, "too_large").inc()
            self.log.info("body too large", extra={"channel": self.instance})
            return json_error(413, "request body too large", max_bytes=self.max_body)
        except FormInvalid as exc:
            metrics.rejected.labels(self.instance, "malformed").inc()
            self.log.info("malformed request", extra={"channel": self.instance, "fields": ",".join(exc.fields)})
            return json_error(400, "malformed request", fields=exc.fields)

        lang = self.language(request, fields.get("lang"))
        if fields.get(self.honeypot):
            metrics.rejected.labels(self.instance, "honeypot").inc()
            self.log.info("honeypot field filled", extra={"channel": self.instance})
            return json_error(400, "rejected")
        errors = self._validate(fields, files, lang)
        if errors:
            metrics.rejected.labels(self.instance, "invalid").inc()
            self.log.info("invalid form", extra={"channel": self.instance, "fields": ",".join(errors)})
            if wants_html:
                token = fields.get("idempotency_key") or new_id()
                return web.Response(status=422, text=form_page(lang, self.path + "/complaints", token, fields, errors),
                                    content_type="text/html")
            return json_error(422, "invalid", fields=errors)

        key = request.headers.get("Idempotency-Key") or fields.get("idempotency_key")
        if key and not _IDEMPOTENCY.match(key):
            return json_error(422, "invalid", fields={"Idempotency-Key": "1 to 200 printable ASCII characters"})
        inbound = self._inbound(fields, files, lang, key, request)
        try:
            submitted = await self.deliver(inbound)
        except TemporaryFailure:
            return json_error(503, "temporarily unavailable, please retry") if not wants_html else web.Response(
                status=503, text=message_page(lang, "503", "Please try again in a minute."), content_type="text/html",
                headers={"Retry-After": "30"})
        receipt = submitted.receipt
        if receipt.status == "dead_letter":
            body = {"id": None, "registration_number": None, "status": "accepted",
                    "message": "received; it will be registered by an operator"}
            return web.json_response(body, status=202, dumps=dumps)
        status = 200 if receipt.status == "duplicate" else 201
        if wants_html:
            text = ""
            if submitted.complaint is not None:
                text = self.context.texts.render(submitted.complaint, receipt, door="web")
            return web.Response(status=status, text=receipt_page(lang, receipt.registration_number or "", text),
                                content_type="text/html")
        return web.json_response({"id": receipt.complaint_id, "registration_number": receipt.registration_number,
                                  "status": receipt.status}, status=status, dumps=dumps)

    async def _parse(self, request: web.Request) -> tuple[dict[str, str], list[InboundAttachment]]:
        ctype = request.content_type
        if ctype == "multipart/form-data":
            return await self._parse_multipart(request)
        body = await read_body(request, self.max_body)
        if ctype == "application/json":
            try:
                data = parse_json(body)
            except MalformedBody as exc:
                raise FormInvalid({"body": str(exc)}) from exc
            if not isinstance(data, dict):
                raise FormInvalid({"body": "a JSON object is expected"})
            return self._from_json(data)
        if ctype == "application/x-www-form-urlencoded":
            try:
                pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
            except (UnicodeDecodeError, ValueError) as exc:
                raise FormInvalid({"body": f"not a valid form: {exc}"}) from exc
            return {k: v for k, v in pairs}, []
        raise FormInvalid({"body": f"unsupported content type {ctype!r}"})

    async def _parse_multipart(self, request: web.Request) -> tuple[dict[str, str], list[InboundAttachment]]:
        if request.content_length is not None and request.content_length > self.max_body:
            raise BodyTooLarge(max_size=self.max_body, actual_size=request.content_length)
        fields: dict[str, str] = {}
        files: list[InboundAttachment] = []
        total = 0
        try:
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue  # nested multiparts are not part of the form
                data = await part.read(decode=True)
                total += len(data)
                if total > self.max_body:
                    raise BodyTooLarge(max_size=self.max_body, actual_size=total)
                if part.filename:
                    if data:
                        files.append(InboundAttachment(filename=safe_filename(part.filename),
                                                       content_type=part.headers.get("Content-Type", "application/octet-stream"),
                                                       data=data, size=len(data)))
                else:
                    try:
                        fields[part.name] = data.decode(part.get_charset(default="utf-8"))
                    except (UnicodeDecodeError, LookupError) as exc:
                        raise FormInvalid({part.name: "not valid UTF-8"}) from exc
        except (ValueError, AssertionError, BadHttpMessage) as exc:  # BadHttpMessage: a part's headers are broken
            raise FormInvalid({"body": f"not a valid multipart body: {exc}"}) from exc
        try:  # raw bytes in part headers, or codecs such as utf-7, give lone surrogates: no text, never storable
            json.dumps([fields, [(f.filename, f.content_type) for f in files]], ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FormInvalid({"body": "a field name, value or file name is not valid UTF-8"}) from exc
        return fields, files

    def _from_json(self, data: dict[str, Any]) -> tuple[dict[str, str], list[InboundAttachment]]:
        fields = {k: str(v) for k, v in data.items() if isinstance(v, (str, int, float)) and k != "attachments"}
        files = []
        listed = data.get("attachments") or []
        if not isinstance(listed, list):
            raise FormInvalid({"attachments": "a list of objects with filename, content_type and data_base64"})
        for i, item in enumerate(listed):
            if not isinstance(item, dict) or not isinstance(item.get("data_base64"), str):
                raise FormInvalid({f"attachments[{i}]": "an object with filename, content_type and data_base64"})
            try:
                raw = base64.b64decode(item["data_base64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise FormInvalid({f"attachments[{i}]": "data_base64 is not valid base64"}) from exc
            files.append(InboundAttachment(filename=safe_filename(str(item.get("filename") or f"attachment-{i + 1}")),
                                           content_type=str(item.get("content_type") or "application/octet-stream"),
                                           data=raw, size=len(raw)))
        return fields, files

    def _validate(self, fields: dict[str, str], files: list[InboundAttachment], lang: str) -> dict[str, str]:
        s = STRINGS[lang]
        errors: dict[str, str] = {}
        text = (fields.get("text") or "").strip()
        if not text:
            errors["text"] = s["required"]
        elif len(text) < self.min_text:
            errors["text"] = {"ru": f"не короче {self.min_text} символов", "pl": f"co najmniej {self.min_text} znaków",
                              "en": f"at least {self.min_text} characters"}[lang]
        elif len(text) > self.max_text:
            errors["text"] = {"ru": f"не длиннее {self.max_text} символов", "pl": f"najwyżej {self.max_text} znaków",
                              "en": f"at most {self.max_text} characters"}[lang]
        email = (fields.get("email") or "").strip()
        phone = (fields.get("phone") or "").strip()
        if email and not _EMAIL.match(email):
            errors["email"] = {"ru": "неверный адрес", "pl": "nieprawidłowy adres", "en": "not a valid address"}[lang]
        if phone and not _valid_phone(phone, self.region):
            errors["phone"] = {"ru": "неверный номер", "pl": "nieprawidłowy numer", "en": "not a valid number"}[lang]
        if not email and not phone:
            errors.setdefault("email", s["contact"])
            errors.setdefault("phone", s["contact"])
        preferred = fields.get("preferred_channel") or ("email" if email else "sms")
        if preferred not in PREFERRED:
            errors["preferred_channel"] = "email | sms | phone"
        elif PREFERRED[preferred] == "email" and not email and "email" not in errors:
            errors["email"] = s["required"]
        elif PREFERRED[preferred] == "phone" and not phone and "phone" not in errors:
            errors["phone"] = s["required"]
        if len(files) > self.max_attachments:
            errors["attachments"] = {"ru": f"не больше {self.max_attachments} файлов", "pl": f"najwyżej {self.max_attachments} plików",
                                     "en": f"at most {self.max_attachments} files"}[lang]
        elif any(f.size > self.max_attachment_bytes for f in files):
            mb = self.max_attachment_bytes / 1024 / 1024
            errors["attachments"] = {"ru": f"файл больше {mb:g} МБ", "pl": f"plik większy niż {mb:g} MB",
                                     "en": f"a file is larger than {mb:g} MB"}[lang]
        return errors

    def _inbound(self, fields: dict[str, str], files: list[InboundAttachment], lang: str, key: str | None,
                 request: web.Request) -> Inbound:
        email = (fields.get("email") or "").strip()
        phone = (fields.get("phone") or "").strip()
        identities = [(k, v) for k, v in (("email", email), ("phone", phone), ("account", fields.get("account", "").strip())) if v]
        preferred = fields.get("preferred_channel") or ("email" if email else "sms")
        reply_kind = PREFERRED.get(preferred, "email")
        reply_to = (reply_kind, email if reply_kind == "email" else phone)
        return Inbound(
            channel=self.instance,
            message_id=f"key:{key}" if key else f"web:{new_id()}",
            identities=identities,
            name=fields.get("name") or None,
            subject=fields.get("subject") or None,
            text=fields.get("text", "").strip(),
            attachments=files,
            raw=orjson.dumps({k: v for k, v in fields.items() if k != self.honeypot}),
            raw_content_type="application/json",
            reply_to=reply_to,
            in_reply_to=(fields.get("registration_number") or "").strip() or None,
            language=lang,
            meta={"form_language": lang, "preferred_channel": preferred},
        )


def _valid_phone(value: str, region: str) -> bool:
    return phone_e164(value, region) is not None  # cached: the normaliser formats the same number


def _wants_html(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]

