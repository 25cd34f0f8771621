"""The original as received, made safe to look at, and downloads that are never rendered.

HTML from a message is sanitised with nh3 and served as its own document with a
Content-Security-Policy that allows no script, no remote image and no form, shown in a
sandboxed iframe. Downloads carry ``Content-Disposition: attachment`` with an RFC 6266
file name and ``X-Content-Type-Options: nosniff``.
"""
from __future__ import annotations

import email
import email.policy
import json
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import nh3
from aiohttp import web

from gateway.inbound import safe_filename

#: A served Content-Type must look like one; anything else is served as bytes.
_MIME = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,127}$")
DOWNLOAD_CSP = "default-src 'none'; sandbox"
ORIGINAL_CSP = "default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
HEADERS_SHOWN = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-ID")


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name as ``filename*`` (RFC 6266/5987)."""
    name = safe_filename(filename)
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\;' else "_" for ch in name) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def download(data: bytes, content_type: str, filename: str) -> web.Response:
    ctype = content_type.split(";")[0].strip().lower()
    if not _MIME.match(ctype):
        ctype = "application/octet-stream"
    response = web.Response(body=data, headers={
        "Content-Disposition": content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": DOWNLOAD_CSP,
        "Cache-Control": "private, no-store",
    })
    response.content_type = ctype
    return response


@dataclass(slots=True)
class OriginalView:
    """What the original document shows: header lines, and either safe HTML or plain text."""

    headers: list[tuple[str, str]]
    html: str | None = None
    text: str | None = None
    note: str | None = None


def sanitise(html: str) -> str:
    return nh3.clean(html, url_schemes={"http", "https", "mailto", "tel"}, link_rel="noopener noreferrer nofollow")


def view_of(raw: bytes, content_type: str, limit: int) -> OriginalView:
    """Turn the stored original into something safe to show."""
    ctype = content_type.split(";")[0].strip().lower()
    if len(raw) > limit:
        return OriginalView([], note=f"{len(raw)} bytes: too large to show here; download it.")
    if ctype in ("message/rfc822", "message/global"):
        return _email_view(raw)
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            return OriginalView([], text=json.dumps(json.loads(raw), ensure_ascii=False, indent=2))
        except (ValueError, UnicodeDecodeError):
            return OriginalView([], text=raw.decode("utf-8", "replace"))
    if ctype == "text/html":
        return OriginalView([], html=sanitise(_decode(raw, content_type)))
    if ctype.startswith("text/") or ctype in ("application/xml", "application/x-www-form-urlencoded"):
        return OriginalView([], text=_decode(raw, content_type))
    return OriginalView([], note=f"{ctype}, {len(raw)} bytes: download it to open.")


def _decode(raw: bytes, content_type: str) -> str:
    match = re.search(r"charset=\"?([A-Za-z0-9_.:-]+)", content_type)
    try:
        return raw.decode(match.group(1) if match else "utf-8", "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _email_view(raw: bytes) -> OriginalView:
    message: Any = email.message_from_bytes(raw, policy=email.policy.default)
    headers = []
    for name in HEADERS_SHOWN:
        try:
            value = message.get(name)
        except Exception:  # a broken header must not hide the rest
            value = None
        if value:
            headers.append((name, str(value)))
    body = None
    if isinstance(message, EmailMessage):
        try:
            body = message.get_body(preferencelist=("html", "plain"))
        except Exception:
            body = None
    if body is None:
        return OriginalView(headers, note="no readable body")
    try:
        content = body.get_content()
    except Exception:  # unknown charset or broken transfer encoding: show the bytes as text
        payload = body.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""

    if not isinstance(content, str):
        content = bytes(content).decode("utf-8", "replace")
    if body.get_content_type() == "text/html":
        return OriginalView(headers, html=sanitise(content))
    return OriginalView(headers, text=content)
