"""Reading headers of real mail: decoded values, address lists (names decoded after
parsing, so a comma in an encoded name does not split it), dates."""
from __future__ import annotations

import base64
import quopri
import re
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from channels.email.charsets import decode_header_value


def header(message: Message, name: str, hint: str | None = None) -> str:
    """The first ``name`` header, decoded, or ""."""
    lowered = name.lower()
    for key, value in message.raw_items():
        if key.lower() == lowered:
            return decode_header_value(value, hint)
    return ""


def raw_header(message: Message, name: str) -> str:
    lowered = name.lower()
    return " ".join(str(v) for k, v in message.raw_items() if k.lower() == lowered)


def addresses(message: Message, name: str, hint: str | None = None) -> list[tuple[str, str]]:
    """``(display name, address)`` pairs of an address header (every occurrence); names are
    decoded after parsing, so a comma inside an encoded name does not split it. A name
    without a usable address (``MAILER-DAEMON``) comes with an empty address."""
    lowered = name.lower()
    pairs: list[tuple[str, str]] = []
    for key, raw in message.raw_items():
        if key.lower() == lowered:
            pairs.extend(_parse_address_header(str(raw), hint))
    return pairs


_ENCODED_WORD_IN_HEADER = re.compile(r"=\?[^?\s]*\?[QqBb]\?[^?]*\?=")


def _parse_address_header(raw: str, hint: str | None) -> list[tuple[str, str]]:
    unfolded = re.sub(r"\r?\n[ \t]", " ", raw)
    ascii_safe = unfolded.encode("utf-8", "surrogateescape").decode("latin-1")
    # An encoded word may hide a comma ("=?iso-8859-1?Q?B=FCrling,=20Andreas?="): keep it whole
    words: list[str] = []

    def protect(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"ENCODEDWORD{len(words) - 1}X"

    protected = _ENCODED_WORD_IN_HEADER.sub(protect, ascii_safe)
    parsed = getaddresses([protected])
    pairs: list[tuple[str, str]] = []
    for display, address in parsed:
        display = re.sub(r"ENCODEDWORD(\d+)X", lambda m: words[int(m.group(1))], display)
        address = re.sub(r"ENCODEDWORD(\d+)X", lambda m: words[int(m.group(1))], address)
        display_text = decode_header_value(display.encode("latin-1"), hint)
        address = address.strip().strip("<>").strip()
        if '"' in address:  # a quoted local part ("a b"@example.com) that the stdlib split into name and address
            quoted = re.search(r'"[^"]*"@[\w.-]+', ascii_safe)
            address, display_text = (quoted.group(0), "") if quoted else (address, display_text)
        if "@" in address and re.search(r"\s", address) and not display_text and "<" not in ascii_safe \
                and not address.startswith('"'):
            head, _, address = address.rpartition(" ")  # "From: Test test@example.com": a name without brackets
            display_text = head.strip().strip('"')
        if "@" not in address:
            found = re.search(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", ascii_safe) if len(parsed) == 1 else None
            address = found.group(0) if found else address if re.fullmatch(r"[\w.+-]+", address) else ""
        if address:
            address = _decode_local_part(address.encode("latin-1").decode("utf-8", "replace"))
        name = _clean_name(display_text, address, unfolded)
        if address or name:
            pairs.append((name, address))
    return pairs


def first_address(message: Message, name: str, hint: str | None = None) -> tuple[str, str | None]:
    """The first pair with a full address (a later header may hold it); else the first pair
    (its address may lack a domain, like ``MAILER-DAEMON``, or be None)."""
    pairs = addresses(message, name, hint)
    with_address = [p for p in pairs if "@" in p[1]]
    if with_address:
        return with_address[0]
    return (pairs[0][0], pairs[0][1] or None) if pairs else ("", None)


_ENCODED_LOCAL_PART = re.compile(r"^=\?[^?]*\?([QqBb])\?(.*)\?=@")


def _decode_local_part(address: str) -> str:
    """Some senders wrap the local part in an RFC 2047 word (not allowed there); unwrap it
    only when the result is a plain local part, so no one can smuggle in another address."""
    match = _ENCODED_LOCAL_PART.match(address)
    if not match:
        return address
    payload = match.group(2)
    try:
        local = (base64.b64decode(payload + "=" * (-len(payload) % 4)) if match.group(1) in "Bb"
                 else quopri.decodestring(payload.replace("_", " "), header=True)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return address
    if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+", local):
        return address
    return local + address[match.end() - 1 :]


def _clean_name(name: str, address: str, raw: str = "") -> str:
    name = " ".join(name.split()).strip().strip("'\"").strip()
    if "(" in name and re.match(r'^[^"<]*\([^"<]*<', raw):  # an unquoted (comment) is not part of the name
        name = re.sub(r"\s*\([^)]*\)\s*", " ", name).strip() or name
    return "" if address and name.lower() == address.lower() else name


def parse_date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
