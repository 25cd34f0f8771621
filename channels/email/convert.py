"""One raw mail to one ``Inbound``: parsing, loop protection and threading together.

Both e-mail doors (SMTP, IMAP) and ``complaint-gateway parse-email`` use this, so a mail
becomes the same complaint whichever way it arrived.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from channels.email.loops import LOOP_RULES, LoopRule, automatic_rule
from channels.email.mime import MailLimits, ParsedMail, parse_mail
from channels.email.threads import thread_number
from gateway.inbound import Inbound

_NEVER = re.compile(r"(?!x)x")


@dataclass(slots=True)
class ConvertOptions:
    """How one channel instance reads mail."""

    limits: MailLimits = field(default_factory=MailLimits)
    number_pattern: re.Pattern[str] = _NEVER
    #: Domains of our own acknowledgement Message-IDs (replies to them are follow-ups).
    ack_domains: set[str] = field(default_factory=set)
    loop_rules: tuple[LoopRule, ...] = LOOP_RULES


def message_key(parsed: ParsedMail) -> str:
    """The idempotency key: Message-ID plus a hash of the mail's own content, so a
    different mail reusing a Message-ID is not lost, and one mail fetched from two
    mailboxes (different Received/Delivered-To headers) has one key."""
    message_id = parsed.header("Message-ID").strip().strip("<>").strip()
    digest = parsed.content_key[:32]
    return f"{message_id}#{digest}" if message_id else f"sha256:{digest}"


def mail_to_inbound(raw: bytes, channel: str, options: ConvertOptions | None = None,
                    received_at: datetime | None = None, date_as_received: bool = False) -> Inbound:
    """``date_as_received`` takes the receipt time from the Date header when it parses
    (for debugging and replaying files; a live door uses the time it received the mail)."""
    options = options or ConvertOptions()
    parsed = parse_mail(raw, options.limits)
    meta: dict[str, Any] = {"door": "email", **parsed.meta}
    reply_address = parsed.reply_to or parsed.from_address
    inbound = Inbound(
        channel=channel,
        message_id=message_key(parsed),
        identities=[("email", parsed.from_address)] if parsed.from_address else [],
        name=parsed.from_name,
        subject=parsed.subject,
        text=parsed.text,
        html=parsed.html,
        attachments=parsed.attachments,
        raw=raw,
        raw_content_type="message/rfc822",
        reply_to=("email", reply_address) if reply_address else None,
        received_at=received_at or datetime.now(UTC),
        meta=meta,
    )
    rule = automatic_rule(parsed, options.loop_rules)
    if rule:
        inbound.auto_submitted = True
        meta["automatic_rule"] = rule
    thread = thread_number(parsed.message, parsed.subject, options.number_pattern, options.ack_domains)
    if thread:
        inbound.in_reply_to, meta["thread_by"] = thread
    if date_as_received and parsed.date is not None:
        inbound.received_at = parsed.date
    return inbound
