"""A raw e-mail (bytes) to the parts a complaint needs: sender, subject, the customer's words,
attachments. Tolerant of everything real mail does wrong; it never raises on bad input.

Headers are read raw (``compat32`` keeps the original bytes) and decoded by
``channels.email.charsets``; bodies prefer text/plain, HTML-only mail becomes text with
links; quoted history and signatures are separated into ``meta``; attachments beyond the
configured limits are listed in ``meta`` (the raw message keeps their bytes).
"""
from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from html import unescape
from typing import Any

from channels.email.charsets import decode_bytes, decode_header_value
from channels.email.headers import addresses, first_address, header, parse_date, raw_header
from channels.email.quotes import separate
from gateway.inbound import InboundAttachment, safe_filename
from normalizer.steps.html_to_text import html_to_text

#: Headers that differ when one mail is fetched from two mailboxes; not part of its identity.
_CONTENT_HEADERS = ("from", "to", "cc", "subject", "date", "message-id", "content-type", "in-reply-to")
_FLOWED_SOFT_BREAK = re.compile(r"(?<=[^ \n]) \n(?!-- \n)")


@dataclass(slots=True)
class MailLimits:
    """Attachment limits and parsing options of one channel instance."""

    max_attachments: int = 20
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_total_attachment_bytes: int = 25 * 1024 * 1024
    separate_quotes: bool = True
    strip_signature: bool = False

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> MailLimits:
        d = cls()
        return cls(int(settings.get("max_attachments", d.max_attachments)),
                   int(settings.get("max_attachment_bytes", d.max_attachment_bytes)),
                   int(settings.get("max_total_attachment_bytes", d.max_total_attachment_bytes)),
                   bool(settings.get("separate_quotes", d.separate_quotes)),
                   bool(settings.get("strip_signature", d.strip_signature)))


@dataclass(slots=True)
class ParsedMail:
    """What ``parse_mail`` found. ``message`` is the stdlib tree (raw headers intact)."""

    message: Message
    content_key: str
    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    text: str = ""
    html: str | None = None
    date: datetime | None = None
    attachments: list[InboundAttachment] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str:
        return header(self.message, name)


def parse_mail(raw: bytes, limits: MailLimits | None = None) -> ParsedMail:
    limits = limits or MailLimits()
    message = email.message_from_bytes(repair_header_block(raw))
    collector = _Collector(limits)
    collector.walk(message)
    hint = collector.charsets[0] if collector.charsets else None
    parsed = ParsedMail(message=message, content_key=content_key(raw, message))
    from_name, parsed.from_address = first_address(message, "From", hint)
    for fallback in ("Sender", "Reply-To", "Return-Path"):  # no usable From: who else can be answered
        if "@" not in (parsed.from_address or ""):
            name, address = first_address(message, fallback, hint)
            if address and "@" in address:
                # the name goes with its address, unless From named someone (MAILER-DAEMON (Mail System))
                from_name = from_name if parsed.from_address else name
                parsed.from_address = address
    parsed.from_name = from_name or None
    _, parsed.reply_to = first_address(message, "Reply-To", hint)
    parsed.subject = header(message, "Subject", hint) or None
    parsed.date = parse_date(header(message, "Date"))
    text, html = collector.body_text(), collector.body_html()
    meta: dict[str, Any] = {}
    if not text.strip() and html:
        text = html_to_text(html)
        meta["text_from"] = "html"
    if not text.strip() and collector.forwarded_texts:
        text = collector.forwarded_texts[0]
        meta["text_from"] = "forwarded message"
    if limits.separate_quotes and text:
        parts = separate(text, limits.strip_signature)
        text = parts.text
        if parts.quoted:
            meta["quoted"] = parts.quoted
        if parts.signature:
            meta["signature"] = parts.signature
    parsed.text, parsed.html = text, html
    parsed.attachments = collector.attachments
    meta["email"] = {
        "message_id": header(message, "Message-ID") or None,
        "to": [a for _, a in addresses(message, "To", hint) if a],
        "cc": [a for _, a in addresses(message, "Cc", hint) if a],
        "date": header(message, "Date") or None,
        "charsets": sorted(set(collector.charsets)),
    }
    if collector.over_limit:
        meta["attachments_over_limit"] = collector.over_limit
    if collector.forwarded:
        meta["forwarded"] = collector.forwarded
    defects = sorted({type(d).__name__ for part in message.walk() for d in part.defects})
    if defects:
        meta["mime_defects"] = defects
    parsed.meta = meta
    return parsed


_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")


def repair_header_block(raw: bytes) -> bytes:
    """Fix what breaks header parsing in real mail: a folded line that lost its leading
    whitespace (between two headers), and junk lines before the first header."""
    head, sep, body = _split_head(raw)
    lines = head.split(b"\n")
    is_header = [bool(_HEADER_LINE.match(x)) or x[:1] in (b" ", b"\t") or (i == 0 and x.startswith(b"From "))
                 for i, x in enumerate(lines)]
    if all(is_header) or not any(is_header):
        return raw
    last_header = max(i for i, ok in enumerate(is_header) if ok)
    first_header = is_header.index(True)
    fixed = []
    for i, line in enumerate(lines):
        if is_header[i] or i > last_header:
            fixed.append(line)
        elif i > first_header:
            fixed.append(b" " + line)  # a continuation line between headers
    return b"\n".join(fixed) + sep + body


def _split_head(raw: bytes) -> tuple[bytes, bytes, bytes]:
    match = re.search(rb"\r?\n\r?\n", raw)
    if not match:
        return raw, b"", b""
    return raw[: match.start()], raw[match.start() : match.end()], raw[match.end() :]


def content_key(raw: bytes, message: Message) -> str:
    """A hash of what makes a mail this mail: its own headers and body, not the trace
    headers (Received, Delivered-To, ...) that each mailbox adds."""
    digest = hashlib.sha256()
    for name in _CONTENT_HEADERS:
        digest.update(name.encode() + b":" + " ".join(raw_header(message, name).split()).encode("utf-8", "surrogateescape") + b"\n")
    lines = _split_head(raw)[2].replace(b"\r\n", b"\n").split(b"\n")
    digest.update(b"\n".join(line.rstrip() for line in lines).rstrip())
    return digest.hexdigest()


# -- body and attachments ------------------------------------------------------------------------
class _Collector:
    """Walks the MIME tree once: body parts (in order), attachments, forwarded messages."""

    def __init__(self, limits: MailLimits) -> None:
        self.limits = limits
        self.segments: list[tuple[str, str]] = []  # ("plain" | "html", text)
        self.attachments: list[InboundAttachment] = []
        self.over_limit: list[dict[str, Any]] = []
        self.forwarded: list[dict[str, Any]] = []
        self.forwarded_texts: list[str] = []
        self.charsets: list[str] = []
        self.total_bytes = 0

    def body_text(self) -> str:
        """The plain text of the body; "" when the body is HTML only (the caller converts)."""
        if all(kind == "html" for kind, _ in self.segments):
            return ""
        texts = [t if kind == "plain" else html_to_text(t) for kind, t in self.segments]
        return "\n\n".join(t.strip("\n") for t in texts if t.strip())

    def body_html(self) -> str | None:
        html = [t for kind, t in self.segments if kind == "html"]
        return "\n".join(html) if html else None

    def walk(self, part: Message, inline_context: bool = False) -> None:
        if part.get_content_type() == "message/rfc822":  # (the stdlib calls it multipart too)
            self._forwarded(part)
            return
        if part.is_multipart():
            children = [c for c in (part.get_payload() or []) if isinstance(c, Message)]
            subtype = part.get_content_subtype()
            if subtype == "alternative":
                self._alternative(children)
            elif subtype in ("related", "signed", "report", "encrypted") and children:
                self.walk(children[0], inline_context)
                for child in children[1:]:
                    self.walk_as_attachment(child, inline=subtype == "related")
            else:
                for child in children:
                    self.walk(child, inline_context)
            return
        if self._is_body(part):
            text, charset = self._decode_text(part)
            self.charsets.append(charset)
            if part.get_content_type() == "text/html":
                self.segments.append(("html", text))
            else:
                if _param(part, "format") == "flowed":
                    text = _unflow(text, _param(part, "delsp") == "yes")
                self.segments.append(("plain", text))
            return
        self.walk_as_attachment(part, inline=inline_context)

    def _alternative(self, children: list[Message]) -> None:
        """Choose one alternative: text/plain when it has words, else the richest other."""
        branches = []
        for child in children:
            branch = _Collector(self.limits)
            branch.walk(child, inline_context=True)
            branches.append(branch)
        plain = next((b for b in branches if b.body_text().strip() and not b.body_html()), None)
        rich = next((b for b in reversed(branches) if b.body_html()), None)
        if plain is not None and rich is not None and _is_placeholder(plain.body_text(), rich):
            plain = None  # "this is an HTML message, read it here": the HTML is the message
        chosen = plain or rich or next((b for b in branches if b.segments), None)
        for branch in branches:
            if branch is chosen:
                self.segments.extend(branch.segments)
            self.charsets.extend(branch.charsets)
            self.forwarded.extend(branch.forwarded)
            self.forwarded_texts.extend(branch.forwarded_texts)
            for attachment in branch.attachments:
                self._add(attachment)
            self.over_limit.extend(branch.over_limit)

    def _is_body(self, part: Message) -> bool:
        if part.get_content_type() not in ("text/plain", "text/html", "text/enriched", "text/richtext"):
            return False
        disposition = (part.get_content_disposition() or "").lower()
        return disposition != "attachment" and not _filename(part)

    def _decode_text(self, part: Message) -> tuple[str, str]:
        data = _payload_bytes(part)
        text, charset = decode_bytes(data, part.get_content_charset() or _param(part, "charset") or None)
        return text.replace("\r\n", "\n").replace("\r", "\n"), charset

    def _forwarded(self, part: Message) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], Message) else None
        data = inner.as_bytes() if inner is not None else _payload_bytes(part)
        if inner is None:
            inner = email.message_from_bytes(data)
        subject = header(inner, "Subject")
        sender = first_address(inner, "From")[1]
        inner_collector = _Collector(MailLimits(0, 0, 0, separate_quotes=False))
        inner_collector.walk(inner)
        inner_text = inner_collector.body_text() or html_to_text(inner_collector.body_html() or "")
        self.forwarded.append({"subject": subject, "from": sender, "date": header(inner, "Date") or None})
        if inner_text.strip():
            self.forwarded_texts.append(inner_text)
        name = _filename(part) or f"{subject or 'message'}.eml"
        self._add(InboundAttachment(filename=safe_filename(name, "message.eml"), content_type="message/rfc822",
                                    data=data, size=len(data)))

    def walk_as_attachment(self, part: Message, inline: bool = False) -> None:
        if part.is_multipart() or part.get_content_type() == "message/rfc822":
            before = len(self.segments)
            self.walk(part, inline_context=True)
            del self.segments[before:]  # text in the tail of a related/signed part is not the body
            return
        data = _payload_bytes(part)
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        is_inline = disposition != "attachment" and (inline or disposition == "inline" or bool(part.get("Content-ID"))) \
            and part.get_content_maintype() == "image"
        name = _filename(part) or _fallback_name(ctype)
        self._add(InboundAttachment(filename=safe_filename(name), content_type=ctype, data=data, size=len(data),
                                    inline=is_inline))

    def _add(self, attachment: InboundAttachment) -> None:
        reason = None
        counted = [a for a in self.attachments if not a.inline]
        if not attachment.inline and len(counted) >= self.limits.max_attachments:
            reason = "max_attachments"
        elif attachment.size > self.limits.max_attachment_bytes:
            reason = "max_attachment_bytes"
        elif self.total_bytes + attachment.size > self.limits.max_total_attachment_bytes:
            reason = "max_total_attachment_bytes"
        if reason:
            self.over_limit.append({"filename": attachment.filename, "content_type": attachment.content_type,
                                    "size": attachment.size, "inline": attachment.inline, "reason": reason,
                                    "sha256": hashlib.sha256(attachment.data or b"").hexdigest()})
            return
        self.total_bytes += attachment.size
        self.attachments.append(attachment)


_TAG_OR_HIDDEN = re.compile(r"<(style|script|head)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r"\w+")


def _is_placeholder(plain: str, rich: _Collector) -> bool:
    """A text/plain alternative clearly shorter than the HTML one: a stand-in ("read this
    mail in HTML") or an abridged copy that lost paragraphs. The HTML's words are first
    counted with its tags cut out (a tenth of the cost of rendering it); only a count near
    the line is checked against the rendered text."""
    html = rich.body_html() or ""
    plain_words = len(_WORD.findall(plain))
    estimate = len(_WORD.findall(unescape(_TAG_OR_HIDDEN.sub(" ", html))))
    if plain_words >= estimate * 0.75:
        return False
    if plain_words < estimate * 0.45:
        return True
    rich_words = len(_WORD.findall(html_to_text(html)))
    return plain_words < rich_words * 0.6


def _param(part: Message, name: str) -> str:
    value = part.get_param(name, "")
    return (value[2] if isinstance(value, tuple) else str(value or "")).lower()


def _payload_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: keep the undecoded bytes rather than nothing
        data = None
    if data is None:
        payload = part.get_payload()
        data = payload.encode("ascii", "surrogateescape") if isinstance(payload, str) else b""
    return data if isinstance(data, bytes) else b""


def _filename(part: Message) -> str:
    for value in (part.get_param("filename", None, "content-disposition"), part.get_param("name")):
        if not value:
            continue
        if isinstance(value, tuple):  # RFC 2231: (charset, language, text with raw bytes as code points)
            charset, _lang, text = value
            try:
                return decode_bytes(bytes(text, "raw-unicode-escape"), charset or "utf-8")[0]
            except UnicodeEncodeError:
                return str(text)
        return decode_header_value(email.utils.unquote(str(value)))
    return ""


_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "application/pdf": ".pdf",
               "image/tiff": ".tif", "text/calendar": ".ics", "message/delivery-status": ".txt",
               "text/rfc822-headers": ".txt", "application/pgp-signature": ".asc", "text/plain": ".txt",
               "text/html": ".html"}


def _fallback_name(content_type: str) -> str:
    return "attachment" + _EXTENSIONS.get(content_type, ".bin")


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: a line ending in a space continues on the next line."""
    if delsp:
        return re.sub(r" \n(?!-- \n)", "", text)
    return _FLOWED_SOFT_BREAK.sub(" ", text)
