"""Threading: which registration a mail answers, from our acknowledgement's Message-ID in
In-Reply-To/References, or from a registration number in the subject.

Our acknowledgements carry the number in their Message-ID (``<ack.2026-000042.9f1c...@domain>``)
so a customer's reply finds its registration even when they changed the subject. Whether the
mail may join that registration (only from its own customer) is the registry's decision.
"""
from __future__ import annotations

import re
import secrets
from email.message import Message

from channels.email.headers import raw_header

_ACK_ID = re.compile(r"<?ack\.([A-Za-z0-9_\-./]+)\.([0-9a-f]{16})@([^>\s]+)>?")


def acknowledgement_message_id(number: str, domain: str) -> str:
    """A fresh Message-ID for our answer about registration ``number``."""
    safe = re.sub(r"[^A-Za-z0-9_\-./]", "_", number)
    return f"<ack.{safe}.{secrets.token_hex(8)}@{domain}>"


def number_from_references(message: Message, domains: set[str]) -> str | None:
    """The registration number of our acknowledgement this mail replies to, if any."""
    for name in ("In-Reply-To", "References"):  # the parent first, then the closest ancestor
        matches = [m for m in _ACK_ID.finditer(raw_header(message, name))
                   if not domains or m.group(3).lower() in domains]
        if matches:
            return matches[-1].group(1)
    return None


def number_from_subject(subject: str | None, pattern: re.Pattern[str]) -> str | None:
    found = pattern.findall(subject or "")
    if not found:
        return None
    first = found[0]
    return first if isinstance(first, str) else first[0]


def thread_number(message: Message, subject: str | None, pattern: re.Pattern[str], domains: set[str]) -> tuple[str, str] | None:
    """``(number, how)`` where ``how`` is "references" or "subject"; None for a new thread."""
    number = number_from_references(message, domains)
    if number:
        return number, "references"
    number = number_from_subject(subject, pattern)
    return (number, "subject") if number else None
