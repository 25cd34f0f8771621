"""Partner API: ombudsmen and consumer organisations submit cases on a customer's behalf.

``POST {path}/cases`` with ``Authorization: Bearer <key>``. Each organisation has its own
API key; config holds only its SHA-256 (keys are 256-bit random tokens, so a fast hash is
as safe as a slow KDF: there is no dictionary to guess from), compared in constant time.
The organisation's own case reference is the idempotency key. The acknowledgement goes to
the organisation, in the HTTP response and, if configured, to its signed callback URL;
never to the customer. ``complaint-gateway partners report`` exports cases as CSV.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import csv
import hashlib
import hmac
import json
import random
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import aiohttp
import jsonschema
from aiohttp import web

from gateway.adapters import AdapterContext, PushAdapter, Submitted, TemporaryFailure
from gateway.config import ConfigError
from gateway.http import BodyTooLarge, MalformedBody, client_address, json_error, parse_json, read_body
from gateway.inbound import Inbound, InboundAttachment, Receipt, safe_filename
from gateway.outbound import proxy_arguments
from normalizer.schema import IDENTITY_KINDS, Complaint

KINDS = ("ombudsman", "consumer_org")
_SHA256_HEX = "^[0-9a-fA-F]{64}$"
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
REPORT_COLUMNS = ("organisation", "reference", "registration_number", "kind", "state", "received_at", "person",
                  "urgency", "language", "channel", "acknowledge_by", "respond_by", "legal_by")


@dataclass(frozen=True, slots=True)
class Organisation:
    """One partner organisation from config; ``key_digests`` allow key rotation."""

    id: str
    name: str
    kind: str
    key_digests: tuple[bytes, ...]
    language: str | None = None
    callback_url: str | None = None
    callback_secret: str | None = None


def key_digest(key: str) -> str:
    """The hex SHA-256 of an API key, as written in config (``key_sha256``)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def case_schema(max_text: int, max_attachments: int) -> dict[str, Any]:
    """The JSON Schema of a submitted case (limits from the channel's settings)."""
    short = {"type": "string", "minLength": 1, "maxLength": 200}
    return {
        "type": "object", "additionalProperties": False, "required": ["reference", "customer", "text"],
        "properties": {
            "reference": {**short, "pattern": "^[^\\x00-\\x1f\\x7f]+$"},
            "customer": {
                "type": "object", "additionalProperties": False, "required": ["name"],
                "properties": {
                    "name": short, "email": short, "phone": short, "account": short,
                    "identities": {"type": "array", "maxItems": 20, "items": {
                        "type": "object", "additionalProperties": False, "required": ["kind", "value"],
                        "properties": {"kind": {"enum": list(IDENTITY_KINDS)}, "value": short}}},
                },
            },
            "text": {"type": "string", "minLength": 1, "maxLength": max_text},
            "subject": {"type": "string", "maxLength": 500},
            "language": {"type": "string", "pattern": "^[a-z]{2}([-_][A-Za-z]{2})?$"},
            "person": short,
            "urgency": {"enum": ["immediate", "high", "normal"]},
            "in_reply_to": short,
            "attachments": {"type": "array", "maxItems": max_attachments, "items": {
                "type": "object", "additionalProperties": False, "required": ["filename", "data_base64"],
                "properties": {"filename": {"type": "string", "maxLength": 255}, "content_type": {"type": "string", "maxLength": 200},
                               "data_base64": {"type": "string"}}}},
        },
    }


class CaseInvalid(Exception):
    def __init__(self, status: int, fields: dict[str, str]) -> None:
        super().__init__("invalid case")
        self.status = status
        self.fields = fields


class PartnerApiAdapter(PushAdapter):
    name = "partner_api"
    version = "1.0"
    description = "Cases submitted by ombudsmen and consumer organisations (JSON API, one key per organisation)."
    capabilities = frozenset({"push", "attachments", "idempotency-key", "acknowledge"})
    #: The acknowledgement kind (gateway.acknowledgements) this door uses.
    door = "partner"
    settings_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["organisations"],
        "properties": {
            "path": {"type": "string", "pattern": "^/"},
            "organisations": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["id", "name", "kind", "key_sha256"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                    "name": {"type": "string", "minLength": 1},
                    "kind": {"enum": list(KINDS)},
                    "key_sha256": {"oneOf": [{"type": "string", "pattern": _SHA256_HEX},
                                             {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": _SHA256_HEX}}]},
                    "language": {"type": "string", "pattern": "^[a-z]{2}$"},
                    "callback_url": {"type": "string", "pattern": "^https?://"},
                    "callback_secret": {"type": "string", "minLength": 16},
                }}},
            "max_body_bytes": {"type": "integer", "minimum": 1024},
            "max_attachments": {"type": "integer", "minimum": 0},
            "max_attachment_bytes": {"type": "integer", "minimum": 0},
            "max_text_chars": {"type": "integer", "minimum": 1},
            "rate_limit_per_minute": {"type": "number", "minimum": 0},
            "rate_limit_burst": {"type": "integer", "minimum": 1},
            "rate_limit_scope": {"enum": ["process", "registry"]},
            "auth_failures_per_minute": {"type": "number", "minimum": 0},
            "trust_forwarded_for": {"type": "boolean"},
            "callback_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "callback_attempts": {"type": "integer", "minimum": 1},
            "callback_backoff_initial_seconds": {"type": "number", "minimum": 0},
            "callback_backoff_max_seconds": {"type": "number", "minimum": 0},
        },
    }

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        s = self.settings
        self.path = s.get("path", "/partners").rstrip("/")
        self.max_body = int(s.get("max_body_bytes", 20 * 1024 * 1024))
        self.max_attachments = int(s.get("max_attachments", 10))
        self.max_attachment_bytes = int(s.get("max_attachment_bytes", 10 * 1024 * 1024))
        self.max_text = int(s.get("max_text_chars", 50_000))
        scope = s.get("rate_limit_scope", "process")
        self.limiter = context.rate_limiter("organisation", float(s.get("rate_limit_per_minute", 120)), s.get("rate_limit_burst"), scope)
        self.auth_failures = context.rate_limiter("auth_failures", float(s.get("auth_failures_per_minute", 10)), scope=scope)
        self.trust_forwarded = bool(s.get("trust_forwarded_for", False))
        self.callback_timeout = float(s.get("callback_timeout_seconds", 10))
        self.callback_attempts = int(s.get("callback_attempts", 5))
        self.backoff_initial = float(s.get("callback_backoff_initial_seconds", 2))
        self.backoff_max = float(s.get("callback_backoff_max_seconds", 300))
        self.organisations = _organisations(s.get("organisations") or [], self.instance)
        self.by_id = {org.id: org for org in self.organisations}
        self.validator = jsonschema.Draft202012Validator(case_schema(self.max_text, self.max_attachments))
        self.session: aiohttp.ClientSession | None = None

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(self.path + "/cases", self.receive), web.get(self.path + "/whoami", self.whoami)]

    async def start(self) -> None:
        if any(org.callback_url for org in self.organisations):
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.callback_timeout))

    async def stop(self) -> None:
        await self.drain()
        if self.session is not None:
            await self.session.close()

    # -- authentication -----------------------------------------------------------------
    def authenticate(self, request: web.Request) -> Organisation | None:
        """The organisation whose key the request presents; every key is compared, in
        constant time, so timing tells nothing about which (if any) matched."""
        header = request.headers.get("Authorization", "")
        key = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("X-Api-Key", "").strip()
        if not key:
            return None
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()  # header bytes as sent
        found: Organisation | None = None
        for org in self.organisations:
            for expected in org.key_digests:
                if hmac.compare_digest(digest, expected):
                    found = org
        return found

    async def _unauthorized(self, request: web.Request) -> web.Response:
        address = client_address(request, self.trust_forwarded)
        if not await self.auth_failures.allow(address):
            self.context.metrics.rejected.labels(self.instance, "rate_limited").inc()
            self.log.warning("too many failed authentications", extra={"channel": self.instance, "address": address})
            return json_error(429, "too many failed authentications", retry_after=60)
        self.context.metrics.rejected.labels(self.instance, "unauthorized").inc()
        self.log.warning("bad or missing API key", extra={"channel": self.instance, "address": address})
        response = json_error(401, "unauthorized: a valid API key is required (Authorization: Bearer <key>)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="partners"'
        return response

    async def whoami(self, request: web.Request) -> web.Response:
        org = self.authenticate(request)
        if org is None:
            return await self._unauthorized(request)
        return web.json_response({"organisation": org.id, "name": org.name, "kind": org.kind})

    # -- POST /cases --------------------------------------------------------------------
    async def receive(self, request: web.Request) -> web.Response:
        metrics = self.context.metrics
        org = self.authenticate(request)
        if org is None:
            return await self._unauthorized(request)
        if not await self.limiter.allow(org.id):
            metrics.rejected.labels(self.instance, "rate_limited").inc()
            self.log.info("rate limited", extra={"channel": self.instance, "organisation": org.id})
            return json_error(429, "too many requests", retry_after=60)
        try:
            body = await read_body(request, self.max_body)
            payload = self._parse(request, body)
            attachments = self._attachments(payload)
        except BodyTooLarge:
            metrics.rejected.labels(self.instance, "too_large").inc()
            self.log.info("body too large", extra={"channel": self.instance, "organisation": org.id})
            return json_error(413, "request body too large", max_bytes=self.max_body)
        except CaseInvalid as exc:
            reason = "malformed" if exc.status == 400 else "invalid"
            metrics.rejected.labels(self.instance, reason).inc()
            self.log.info(f"{reason} case", extra={"channel": self.instance, "organisation": org.id, "fields": ",".join(exc.fields)})
            return json_error(exc.status, "malformed request" if exc.status == 400 else "invalid", fields=exc.fields)

        inbound = self._inbound(org, payload, attachments, body)
        try:
            submitted = await self.deliver(inbound)
        except TemporaryFailure:
            return web.json_response({"error": "temporarily unavailable, please retry"}, status=503, headers={"Retry-After": "30"})
        receipt = submitted.receipt
        self.log.info("case received", extra={"channel": self.instance, "organisation": org.id, "reference": payload["reference"],
                                              "status": receipt.status, "registration_number": receipt.registration_number})
        if receipt.status == "dead_letter":
            return web.json_response({"reference": payload["reference"], "registration_number": None, "status": "accepted",
                                      "message": "received; it will be registered by an operator"}, status=202)
        if receipt.status == "duplicate" or submitted.complaint is None:
            # the first answer carried the deadlines and the acknowledgement; a retry only confirms the number
            return web.json_response({"reference": payload["reference"], "registration_number": receipt.registration_number,
                                      "status": receipt.status, "id": receipt.complaint_id}, status=200)
        return web.json_response(self.acknowledgement(org, receipt, submitted.complaint), status=201)

    def _parse(self, request: web.Request, body: bytes) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise CaseInvalid(400, {"body": f"Content-Type must be application/json, not {request.content_type!r}"})
        try:
            payload = parse_json(body)
        except MalformedBody as exc:
            raise CaseInvalid(400, {"body": str(exc)}) from exc
        if not isinstance(payload, dict):
            raise CaseInvalid(400, {"body": "a JSON object is expected"})
        errors = {(".".join(str(p) for p in e.absolute_path) or "body"): e.message
                  for e in sorted(self.validator.iter_errors(payload), key=lambda e: list(map(str, e.absolute_path)))}
        if errors:
            raise CaseInvalid(422, errors)
        if not _identities(payload["customer"]):
            raise CaseInvalid(422, {"customer": "at least one of email, phone, account or identities is required"})
        return payload

    def _attachments(self, payload: dict[str, Any]) -> list[InboundAttachment]:
        files = []
        for i, item in enumerate(payload.get("attachments") or []):
            try:
                data = base64.b64decode(item["data_base64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise CaseInvalid(422, {f"attachments.{i}.data_base64": "not valid base64"}) from exc
            if len(data) > self.max_attachment_bytes:
                raise CaseInvalid(422, {f"attachments.{i}": f"larger than {self.max_attachment_bytes} bytes"})
            files.append(InboundAttachment(filename=safe_filename(item["filename"], f"attachment-{i + 1}"),
                                           content_type=item.get("content_type") or "application/octet-stream",
                                           data=data, size=len(data)))
        return files

    def _inbound(self, org: Organisation, payload: dict[str, Any], attachments: list[InboundAttachment], body: bytes) -> Inbound:
        customer = payload["customer"]
        person = payload.get("person")
        return Inbound(
            channel=self.instance,
            message_id=f"{org.id}:{payload['reference']}",
            identities=_identities(customer),
            name=customer.get("name"),
            subject=payload.get("subject"),
            text=payload["text"],
            attachments=attachments,
            raw=body,
            raw_content_type="application/json",
            in_reply_to=payload.get("in_reply_to"),
            language=payload.get("language"),
            submitted_by={"kind": org.kind, "organisation": org.id, "person": person},
            urgency=payload.get("urgency"),
            meta={"partner": {"organisation": org.id, "organisation_name": org.name, "reference": payload["reference"],
                              "person": person}},
        )

    def acknowledgement(self, org: Organisation, receipt: Receipt, complaint: Complaint) -> dict[str, Any]:
        """What the organisation is told, in the response and in the callback."""
        texts = self.context.texts
        partner = complaint.meta.get("partner")
        reference = partner.get("reference") if isinstance(partner, dict) else None
        return {
            "reference": reference, "organisation": org.id, "registration_number": receipt.registration_number,
            "status": receipt.status, "id": receipt.complaint_id, "urgency": complaint.urgency, "deadlines": complaint.deadlines,
            "acknowledgement": {"language": org.language or complaint.language,
                                "text": texts.render(complaint, receipt, door=self.door, language=org.language)},
        }

    # -- callback -----------------------------------------------------------------------
    def should_acknowledge(self, submitted: Submitted, *, in_response: bool = False) -> bool:
        complaint = submitted.complaint
        org = self.by_id.get(complaint.submitted_by.organisation) if complaint and complaint.submitted_by else None
        return super().should_acknowledge(submitted, in_response=in_response) and org is not None and bool(org.callback_url)

    def acknowledgement_retry_delay(self, error: Exception, backoff: float) -> float | None:
        """Never: ``acknowledge`` retries the callback itself, as the channel's ``callback_*``
        settings say."""
        return None

    async def acknowledge(self, receipt: Receipt, complaint: Complaint) -> None:
        """POST the acknowledgement to the organisation's callback URL, signed with its
        ``callback_secret`` (``X-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``);
        retried with exponential backoff and jitter on errors and 5xx answers."""
        assert complaint.submitted_by is not None and self.session is not None
        org = self.by_id[complaint.submitted_by.organisation]
        body = json.dumps({"event": "registered", **self.acknowledgement(org, receipt, complaint)}, ensure_ascii=False).encode()
        last_error = ""
        for attempt in range(1, self.callback_attempts + 1):
            headers = {"Content-Type": "application/json", **sign(body, org.callback_secret)}
            try:
                async with self.session.post(str(org.callback_url), data=body, headers=headers,
                                             **proxy_arguments(str(org.callback_url))) as response:
                    if response.status < 300:
                        self.log.info("callback delivered", extra={"channel": self.instance, "organisation": org.id,
                                                                   "registration_number": receipt.registration_number, "attempt": attempt})
                        return
                    last_error = f"HTTP {response.status}"
                    if 400 <= response.status < 500 and response.status not in (408, 429):
                        break  # the partner refuses it; retrying will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                last_error = repr(exc)
            if attempt < self.callback_attempts:
                delay = random.uniform(0, min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1)))
                self.log.info("callback failed; retrying", extra={"channel": self.instance, "organisation": org.id,
                                                                  "error": last_error, "retry_in": round(delay, 2)})
                await asyncio.sleep(delay)
        raise RuntimeError(f"callback to organisation {org.id!r} failed: {last_error}")

    # -- command line -------------------------------------------------------------------
    @classmethod
    def add_cli_commands(cls, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        partners = subparsers.add_parser("partners", help="partner organisations: monthly reports and API keys")
        commands = partners.add_subparsers(dest="partners_command", required=True)
        report = commands.add_parser("report", help="export an organisation's cases of one month, with their states, as CSV")
        report.add_argument("--month", required=True, type=_month, help="YYYY-MM (in the normalizer's time zone)")
        report.add_argument("--organisation", help="the organisation's id (default: every organisation)")
        report.add_argument("--output", "-o", help="write the CSV to this file (default: standard output)")
        report.set_defaults(func=cmd_report)
        new_key = commands.add_parser("new-key", help="make a new random API key and print it with its key_sha256")
        new_key.set_defaults(func=cmd_new_key)
        hash_key = commands.add_parser("hash-key", help="print the key_sha256 of a key read from standard input")
        hash_key.set_defaults(func=cmd_hash_key)


def sign(body: bytes, secret: str | None, now: float | None = None) -> dict[str, str]:
    """The callback signature header (none without a secret)."""
    if not secret:
        return {}
    stamp = str(int(time.time() if now is None else now))
    mac = hmac.new(secret.encode("utf-8"), stamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"t={stamp},v1={mac}"}


def _identities(customer: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(kind, str(customer[kind])) for kind in ("email", "phone", "account") if customer.get(kind)]
    return found + [(i["kind"], i["value"]) for i in customer.get("identities") or []]


def _organisations(items: list[dict[str, Any]], instance: str) -> list[Organisation]:
    organisations: list[Organisation] = []
    seen_ids: set[str] = set()
    seen_keys: set[bytes] = set()
    for i, item in enumerate(items):
        where = f"channels.{instance}.organisations[{i}]"
        if item["id"] in seen_ids:
            raise ConfigError(f"{where}.id: {item['id']!r} is used twice")
        digests = item["key_sha256"] if isinstance(item["key_sha256"], list) else [item["key_sha256"]]
        keys = tuple(bytes.fromhex(d) for d in digests)
        if seen_keys.intersection(keys):
            raise ConfigError(f"{where}.key_sha256: another organisation has the same key")
        if item.get("callback_url") and not item.get("callback_secret"):
            raise ConfigError(f"{where}.callback_secret: required with callback_url (the partner verifies the signature)")
        seen_ids.add(item["id"])
        seen_keys.update(keys)
        organisations.append(Organisation(item["id"], item["name"], item["kind"], keys, item.get("language"),
                                          item.get("callback_url"), item.get("callback_secret")))
    return organisations


def _month(value: str) -> tuple[int, int]:
    match = _MONTH.match(value)
    if not match:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month (YYYY-MM)")
    return int(match.group(1)), int(match.group(2))


# -- commands ---------------------------------------------------------------------------
def cmd_new_key(args: argparse.Namespace) -> int:
    key = secrets.token_urlsafe(32)
    print(json.dumps({"key": key, "key_sha256": key_digest(key)}))
    return 0


def cmd_hash_key(args: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip()
    if not key:
        print("no key on standard input", file=sys.stderr)
        return 1
    print(key_digest(key))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from gateway.cli import _load
    from gateway.registry import build_registry

    config = _load(args)
    zone = ZoneInfo(config.section("normalizer").get("timezone", "Europe/Moscow"))

    async def main(out: TextIO) -> int:
        registry = build_registry(config.registry, config.section("normalizer"))
        await registry.open()
        try:
            count = await write_report(registry, out, args.month, zone, args.organisation)
        finally:
            await registry.close()
        print(f"{count} case(s)", file=sys.stderr)
        return 0

    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            return asyncio.run(main(out))
    return asyncio.run(main(sys.stdout))


async def write_report(registry: Any, out: TextIO, month: tuple[int, int], zone: ZoneInfo,
                       organisation: str | None = None, page_size: int = 200) -> int:
    """Write the CSV of partner cases received in ``month`` (local time in ``zone``), oldest
    first; returns how many. Pages newest first and stops a day before the month began."""
    year, number = month
    start = datetime(year, number, 1, tzinfo=zone)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    stop_before = start - timedelta(days=1)
    rows: list[dict[str, str]] = []
    states: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        page: list[Complaint] = await registry.list_messages(limit=page_size, before=cursor)
        if not page:
            break
        for complaint in page:
            received = datetime.fromisoformat(complaint.received_at)
            by = complaint.submitted_by
            if by is None or not (start <= received < end) or (organisation and by.organisation != organisation):
                continue
            rows.append(await _report_row(registry, complaint, received.astimezone(zone), states))
        cursor = page[-1].id
        if datetime.fromisoformat(page[-1].received_at) < stop_before:
            break
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r["received_at"]):
        writer.writerow(row)
    return len(rows)


async def _report_row(registry: Any, complaint: Complaint, received: datetime, states: dict[str, dict[str, Any]]) -> dict[str, str]:
    number = complaint.registration_number or ""
    if number and number not in states:
        states[number] = await registry.registration_state(number) or {}
    info = states.get(number, {})
    kind = "automatic" if complaint.auto_submitted else (info.get("kinds") or {}).get(complaint.id, "new")
    by = complaint.submitted_by
    partner = complaint.meta.get("partner")
    partner = partner if isinstance(partner, dict) else {}
    return {
        "organisation": by.organisation if by else "",
        "reference": str(partner.get("reference") or complaint.channel_message_id),
        "registration_number": number,
        "kind": kind,
        "state": str(info.get("state") or ("registered" if number else "unregistered")),
        "received_at": received.isoformat(timespec="seconds"),
        "person": (by.person if by else None) or "",
        "urgency": complaint.urgency,
        "language": complaint.language or "",
        "channel": complaint.channel,
        "acknowledge_by": complaint.deadlines.get("acknowledge", ""),
        "respond_by": complaint.deadlines.get("respond", ""),
        "legal_by": complaint.deadlines.get("legal", ""),
    }
