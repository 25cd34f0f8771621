"""What an adapter hands to the gateway (``Inbound``) and what it gets back (``Receipt``).

An ``Inbound`` is the message as the door delivered it, parsed out of the wire format but
not yet normalised: identifiers are as the provider gave them, text may be HTML.
"""
from __future__ import annotations

import base64
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import unquote

ReceiptStatus = Literal["new", "follow_up", "repeat", "duplicate", "automatic", "dead_letter"]


_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')


def safe_filename(name: str | None, fallback: str = "attachment") -> str:
    """A file name that is safe to show and to save: no directories, no control
    characters, no leading dots, at most 200 characters (the extension kept)."""
    name = name or ""
    if _PERCENT.search(name):  # some clients percent-encode names (and the slashes in them)
        name = unquote(name, errors="strict") if _decodes(name) else name
    name = unicodedata.normalize("NFC", name).replace("\\", "/").split("/")[-1]
    name = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 190] + dot + ext[:9]) if dot and len(ext) <= 9 else name[:200]
    return name or fallback


def _decodes(name: str) -> bool:
    try:
        unquote(name, errors="strict")
        return True
    except UnicodeDecodeError:
        return False


@dataclass(slots=True)
class InboundAttachment:
    """An attachment as received. ``data`` is dropped once stored (``sha256`` set)."""

    filename: str
    content_type: str
    data: bytes | None = None
    sha256: str | None = None
    size: int = 0
    inline: bool = False

    def to_record(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "content_type": self.content_type,
            "sha256": self.sha256,
            "size": self.size,
            "inline": self.inline,
        }


@dataclass(slots=True)
class Inbound:
    """One message from one door, before normalisation.

    ``channel`` is the channel instance name from config.yaml; ``message_id`` the
    provider's id of the message (e-mail Message-ID plus content hash, Telegram
    ``update_id``, Twilio ``MessageSid``, a web form's idempotency key ...). Together
    they are the idempotency key. ``identities`` are ``(kind, raw value)`` pairs.
    """

    channel: str
    message_id: str
    identities: list[tuple[str, str]] = field(default_factory=list)
    name: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    attachments: list[InboundAttachment] = field(default_factory=list)
    raw: bytes | None = None
    raw_content_type: str = "application/octet-stream"
    reply_to: tuple[str, str] | None = None
    in_reply_to: str | None = None
    language: str | None = None
    auto_submitted: bool = False
    submitted_by: dict[str, Any] | None = None
    urgency: str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    meta: dict[str, Any] = field(default_factory=dict)
    raw_sha256: str | None = None
    #: A small original kept as text with the complaint (or the dead letter) instead of in
    #: the blob store (``intake.inline_original_max_bytes``); set by the intake.
    raw_text: str | None = None

    def to_record(self) -> dict[str, Any]:
        """A JSON-able record (blobs referenced by hash, a small original as its text) for the dead-letter store."""
        return {
            "channel": self.channel,
            "message_id": self.message_id,
            "identities": [list(i) for i in self.identities],
            "name": self.name,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "attachments": [a.to_record() for a in self.attachments],
            "raw_sha256": self.raw_sha256,
            "raw_text": self.raw_text,
            "raw_content_type": self.raw_content_type,
            "reply_to": list(self.reply_to) if self.reply_to else None,
            "in_reply_to": self.in_reply_to,
            "language": self.language,
            "auto_submitted": self.auto_submitted,
            "submitted_by": self.submitted_by,
            "urgency": self.urgency,
            "received_at": self.received_at.isoformat(),
            "meta": _jsonable(self.meta),
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Inbound:
        reply_to = data.get("reply_to")
        return cls(
            channel=data["channel"],
            message_id=data["message_id"],
            identities=[(k, v) for k, v in data.get("identities") or []],
            name=data.get("name"),
            subject=data.get("subject"),
            text=data.get("text"),
            html=data.get("html"),
            attachments=[InboundAttachment(**a) for a in data.get("attachments") or []],
            raw_sha256=data.get("raw_sha256"),
            raw_text=data.get("raw_text"),
            raw=data["raw_text"].encode("utf-8") if isinstance(data.get("raw_text"), str) else None,
            raw_content_type=data.get("raw_content_type") or "application/octet-stream",
            reply_to=(reply_to[0], reply_to[1]) if reply_to else None,
            in_reply_to=data.get("in_reply_to"),
            language=data.get("language"),
            auto_submitted=bool(data.get("auto_submitted")),
            submitted_by=data.get("submitted_by"),
            urgency=data.get("urgency"),
            received_at=datetime.fromisoformat(data["received_at"]),
            meta=data.get("meta") or {},
        )


def _jsonable(value: Any) -> Any:
    """Meta may carry bytes from a wire format; keep them, base64-encoded."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


@dataclass(frozen=True, slots=True)
class Receipt:
    """The registry's answer: which registration a message landed in, and how.

    For a follow_up, repeat or duplicate, ``registration_number`` is that of the complaint
    the message belongs to. ``automatic`` messages (auto-replies, bounces) and
    ``dead_letter`` ones carry no registration number.
    """

    status: ReceiptStatus
    registration_number: str | None
    customer_id: str | None
    complaint_id: str | None = None
    dead_letter_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "registration_number": self.registration_number,
            "customer_id": self.customer_id,
            "complaint_id": self.complaint_id,
            "dead_letter_id": self.dead_letter_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Receipt:
        return cls(
            status=data["status"],
            registration_number=data.get("registration_number"),
            customer_id=data.get("customer_id"),
            complaint_id=data.get("complaint_id"),
            dead_letter_id=data.get("dead_letter_id"),
        )

    @property
    def answers_customer(self) -> bool:
        """Whether the customer should be told: never for redeliveries or robots."""
        return self.status in ("new", "follow_up", "repeat")

    @property
    def answers_in_response(self) -> bool:
        """``answers_customer`` for a door that answers inside its own response (TwiML, a
        webhook's answer): a redelivery too, because the answer to the first one did not arrive."""
        return self.answers_customer or self.status == "duplicate"
