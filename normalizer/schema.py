"""The normalised Complaint record: what every door produces and every consumer reads.

The record is versioned (``SCHEMA_VERSION``) and JSON-serialisable; its JSON Schema is
published in ``complaint.schema.json`` beside this module (``complaint-gateway schema``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Literal

import orjson

SCHEMA_VERSION = 1

IDENTITY_KINDS = ("email", "phone", "vk", "ok", "telegram", "account")
URGENCIES = ("immediate", "high", "normal")
Urgency = Literal["immediate", "high", "normal"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A typed, normalised way to reach or recognise a customer (``phone:+48221234567``)."""

    kind: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(slots=True)
class Attachment:
    """An attachment's description; its bytes live in the blob store under ``sha256``."""

    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(slots=True)
class Customer:
    customer_id: str | None = None
    name: str | None = None
    identities: list[Identity] = field(default_factory=list)


@dataclass(slots=True)
class SubmittedBy:
    """Who submitted a case on a customer's behalf (ombudsman, consumer organisation)."""

    kind: str
    organisation: str
    person: str | None = None


@dataclass(slots=True)
class Complaint:
    """One normalised message of a customer, as it goes into the registry."""

    id: str
    channel: str
    channel_message_id: str
    received_at: str
    customer: Customer
    text: str
    registration_number: str | None = None
    schema_version: int = SCHEMA_VERSION
    reply_to: Identity | None = None
    subject: str | None = None
    language: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    urgency: Urgency = "normal"
    in_reply_to: str | None = None
    submitted_by: SubmittedBy | None = None
    deadlines: dict[str, str] = field(default_factory=dict)
    auto_submitted: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """The record as compact JSON (UTF-8 text, fields in schema order), the same as
        ``json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))``. orjson
        writes the dataclasses directly: the registry writes this for every message."""
        return orjson.dumps(self).decode("utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Complaint:
        customer = data.get("customer") or {}
        reply_to = data.get("reply_to")
        submitted_by = data.get("submitted_by")
        return cls(
            id=data["id"],
            channel=data["channel"],
            channel_message_id=data["channel_message_id"],
            received_at=data["received_at"],
            customer=Customer(
                customer_id=customer.get("customer_id"),
                name=customer.get("name"),
                identities=[Identity(i["kind"], i["value"]) for i in customer.get("identities") or []],
            ),
            text=data.get("text") or "",
            registration_number=data.get("registration_number"),
            schema_version=data.get("schema_version", SCHEMA_VERSION),
            reply_to=Identity(reply_to["kind"], reply_to["value"]) if reply_to else None,
            subject=data.get("subject"),
            language=data.get("language"),
            attachments=[Attachment(**a) for a in data.get("attachments") or []],
            urgency=data.get("urgency", "normal"),
            in_reply_to=data.get("in_reply_to"),
            submitted_by=SubmittedBy(**submitted_by) if submitted_by else None,
            deadlines=dict(data.get("deadlines") or {}),
            auto_submitted=bool(data.get("auto_submitted", False)),
            meta=dict(data.get("meta") or {}),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Complaint:
        return cls.from_dict(json.loads(text))


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of a Complaint (draft 2020-12)."""
    text = resources.files("normalizer").joinpath("complaint.schema.json").read_text("utf-8")
    return json.loads(text)
