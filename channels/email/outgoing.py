"""Mail we send: acknowledgements and operators' replies, through the configured relay.

Every acknowledgement carries ``Auto-Submitted: auto-replied`` (so well-behaved robots do
not answer it), a Message-ID that names the registration number (so a reply threads back),
In-Reply-To/References of the customer's mail, and is rate-limited per recipient so two
robots that ignore those headers still cannot loop. smtplib runs in a worker thread.
"""
from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any

from channels.email.threads import acknowledgement_message_id
from gateway.http import RateLimiter
from gateway.inbound import Receipt
from normalizer.schema import Complaint

SUBJECTS = {
    "ru": {"new": "Обращение {number} зарегистрировано", "follow_up": "Дополнение к обращению {number} получено",
           "repeat": "Обращение {number} уже зарегистрировано", "reply": "Ответ на обращение {number}"},
    "pl": {"new": "Reklamacja {number} zarejestrowana", "follow_up": "Uzupełnienie reklamacji {number} przyjęte",
           "repeat": "Reklamacja {number} jest już zarejestrowana", "reply": "Odpowiedź na reklamację {number}"},
    "en": {"new": "Complaint {number} registered", "follow_up": "Addition to complaint {number} received",
           "repeat": "Complaint {number} is already registered", "reply": "Answer to complaint {number}"},
}

RELAY_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["host"],
    "properties": {
        "host": {"type": "string"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "security": {"enum": ["none", "starttls", "tls"]},
        "username": {"type": "string"}, "password": {"type": "string"},
        "timeout_seconds": {"type": "number", "minimum": 1},
        "verify_certificate": {"type": "boolean"},
    },
}


class RateLimited(Exception):
    """Too many acknowledgements to one recipient; this one is not sent."""


@dataclass(slots=True)
class RelaySettings:
    host: str
    port: int = 25
    security: str = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    verify_certificate: bool = True

    @classmethod
    def from_settings(cls, relay: dict[str, Any]) -> RelaySettings:
        security = relay.get("security", "none")
        return cls(host=relay["host"], port=int(relay.get("port", 465 if security == "tls" else 25)), security=security,
                   username=relay.get("username") or None, password=relay.get("password") or None,
                   timeout=float(relay.get("timeout_seconds", 30)),
                   verify_certificate=bool(relay.get("verify_certificate", True)))


class MailSender:
    """Builds and sends our mail for one channel instance."""

    def __init__(self, relay: RelaySettings | None, from_address: str, from_name: str | None,
                 message_id_domain: str, ack_per_hour: float) -> None:
        self.relay = relay
        self.from_address = from_address
        self.from_name = from_name
        self.domain = message_id_domain
        self.limiter = RateLimiter(ack_per_hour / 60.0, burst=max(1, int(ack_per_hour)))

    def acknowledgement(self, complaint: Complaint, receipt: Receipt, body: str, language: str) -> EmailMessage:
        number = receipt.registration_number or ""
        kind = receipt.status if receipt.status in ("follow_up", "repeat") else "new"
        subject = SUBJECTS.get(language, SUBJECTS["en"])[kind].format(number=number)
        message = self._message(complaint, subject, body, number, language)
        message["Auto-Submitted"] = "auto-replied"
        message["X-Auto-Response-Suppress"] = "All"
        message["Precedence"] = "auto_reply"
        return message

    def reply(self, complaint: Complaint, text: str, language: str) -> EmailMessage:
        number = complaint.registration_number or ""
        subject = SUBJECTS.get(language, SUBJECTS["en"])["reply"].format(number=number)
        return self._message(complaint, subject, text, number, language)

    def _message(self, complaint: Complaint, subject: str, body: str, number: str, language: str) -> EmailMessage:
        recipient = recipient_of(complaint)
        if recipient is None:
            raise ValueError("the complaint has no e-mail address to answer")
        message = EmailMessage()
        message["From"] = formataddr((self.from_name or "", self.from_address))
        message["To"] = formataddr((complaint.customer.name or "", recipient))
        original = (complaint.subject or "").strip()
        message["Subject"] = f"{subject}: {original}" if original and number not in original else subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = acknowledgement_message_id(number or "none", self.domain)
        original_id = ((complaint.meta.get("email") or {}).get("message_id") or "").strip()
        if original_id:
            message["In-Reply-To"] = original_id
            message["References"] = original_id
        message["Content-Language"] = language
        message.set_content(body)
        return message

    async def send(self, message: EmailMessage, *, automatic: bool) -> None:
        """Send ``message``. ``automatic`` (acknowledgements) applies the per-recipient rate
        limit and uses the null envelope sender, so a bounce of it is never answered."""
        if self.relay is None:
            raise RuntimeError("no outgoing relay is configured (settings: relay.host)")
        recipient = parseaddr(str(message["To"]))[1].lower()
        if automatic and not self.limiter.allow(recipient):
            raise RateLimited("acknowledgement rate limit reached for this recipient")
        await asyncio.to_thread(self._send_blocking, message, "" if automatic else self.from_address)

    def _send_blocking(self, message: EmailMessage, envelope_sender: str) -> None:
        relay = self.relay
        assert relay is not None
        context = ssl.create_default_context()
        if not relay.verify_certificate:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        smtp: smtplib.SMTP
        if relay.security == "tls":
            smtp = smtplib.SMTP_SSL(relay.host, relay.port, timeout=relay.timeout, context=context)
        else:
            smtp = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout)
        with smtp:
            smtp.ehlo()
            if relay.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if relay.username:
                smtp.login(relay.username, relay.password or "")
            smtp.send_message(message, from_addr=envelope_sender)


def recipient_of(complaint: Complaint) -> str | None:
    """The customer's address to answer: reply_to when it is an e-mail, else their e-mail identity."""
    if complaint.reply_to is not None and complaint.reply_to.kind == "email":
        return complaint.reply_to.value
    return next((i.value for i in complaint.customer.identities if i.kind == "email"), None)
