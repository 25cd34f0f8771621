"""Identities to their canonical form: e-mail lower-cased, phone numbers to E.164.

An identifier that cannot be normalised (a phone number that is not one) is not used to
recognise the customer; it is kept in ``meta["unusable_identities"]`` so nothing is lost.
"""
from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

from normalizer.pipeline import Draft, NormalizerSettings
from normalizer.schema import Identity

_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_ID = re.compile(r"^[0-9A-Za-z_.:\-]{1,128}$")


def normalize_identity(kind: str, value: str, default_region: str) -> Identity | None:
    """The canonical identity, or None when ``value`` is not a valid one of ``kind``."""
    value = (value or "").strip()
    if not value:
        return None
    if kind == "email":
        value = value.strip("<>").lower()
        return Identity("email", value) if _EMAIL.match(value) else None
    if kind == "phone":
        e164 = phone_e164(value, default_region)
        return Identity("phone", e164) if e164 is not None else None
    if kind == "account":
        value = re.sub(r"[\s\-]", "", value)
    return Identity(kind, value) if _ID.match(value) else None


@lru_cache(maxsize=4096)
def phone_e164(value: str, default_region: str) -> str | None:
    """``value`` in E.164, or None when it is no possible phone number. Cached: a door that
    validates a number (the web form) and the normaliser then parse it once."""
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def step(draft: Draft, settings: NormalizerSettings) -> None:
    inbound, complaint = draft.inbound, draft.complaint
    seen: set[str] = set()
    unusable: list[dict[str, str]] = []
    for kind, raw in inbound.identities:
        identity = normalize_identity(kind, raw, settings.default_region)
        if identity is None:
            unusable.append({"kind": kind, "value": raw})
        elif identity.key not in seen:
            seen.add(identity.key)
            complaint.customer.identities.append(identity)
    if inbound.reply_to:
        kind, raw = inbound.reply_to
        complaint.reply_to = normalize_identity(kind, raw, settings.default_region)
        if complaint.reply_to is None:
            unusable.append({"kind": kind, "value": raw})
    if complaint.reply_to is None and complaint.customer.identities:
        complaint.reply_to = complaint.customer.identities[0]
    if unusable:
        complaint.meta["unusable_identities"] = unusable
