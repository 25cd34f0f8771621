"""Identities to their canonical form: e-mail lower-cased, phone numbers to E.164.

An identifier that cannot be normalised (a phone number that is not one) is not used to
recognise the customer; it is kept in ``meta["unusable_identities"]`` so nothing is lost.
"""
from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Literal

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


#: A number already written as E.164 (Twilio's ``From``, a form's phone widget): a plus, a
#: first digit that is no zero and nothing else but digits.
_E164_SHAPE = re.compile(r"\+[1-9][0-9]{2,19}")


@lru_cache(maxsize=4096)
def phone_e164(value: str, default_region: str) -> str | None:
    """``value`` in E.164, or None when it is no possible phone number. Cached: a door that
    validates a number (the web form) and the normaliser then parse it once."""
    if _E164_SHAPE.fullmatch(value):
        possible = _possible_as_written(value[1:])
        if possible is not None:
            return value if possible else None
    return parsed_e164(value, default_region)


def parsed_e164(value: str, default_region: str) -> str | None:
    """``phone_e164`` by the full ``phonenumbers`` parse, whatever the number's shape."""
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _possible_as_written(digits: str) -> bool | None:
    """Whether the number whose digits (after the plus) are ``digits`` is possible, when its
    E.164 form is those very digits: what ``phonenumbers`` would answer, without its parse
    (a quarter of the cost). None when that is not certain and the full parse must tell: no
    calling code in the first three digits, a national number of unusual length or with a
    leading zero, or one that begins as the country's national prefix (which the parse
    would strip: ``+44 0201234567`` is ``+44201234567``)."""
    for length in (1, 2, 3):  # the first prefix that is a calling code, as phonenumbers takes it
        code = int(digits[:length])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[length:]
    prefix = _national_prefix(code)
    if prefix is False or not 2 <= len(national) <= 17 or national[0] == "0" or (prefix is not None and prefix.match(national)):
        return None
    return phonenumbers.is_possible_number(phonenumbers.PhoneNumber(country_code=code, national_number=int(national)))


@cache  # one per calling code
def _national_prefix(code: int) -> re.Pattern[str] | None | Literal[False]:
    """The national prefix a parse strips from a number with calling code ``code`` (None:
    there is none), or False when ``phonenumbers`` has no metadata for the code."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, phonenumbers.region_code_for_country_code(code))
    if metadata is None:
        return False
    return re.compile(metadata.national_prefix_for_parsing) if metadata.national_prefix_for_parsing else None


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
