"""What the SMTP receiver and the IMAP poller share: reading a raw mail into an ``Inbound``
(with fax recognition and OCR), acknowledging by mail, and operators' replies by mail."""
from __future__ import annotations

import asyncio
import hashlib
import smtplib
from typing import TYPE_CHECKING, Any

from channels.email.convert import ConvertOptions, mail_to_inbound
from channels.email.fax import FAX_SCHEMA, FaxSettings, mark_fax, read_pages
from channels.email.mime import MailLimits
from channels.email.outgoing import RELAY_SCHEMA, MailSender, RateLimited, RelaySettings
from gateway.adapters import Adapter, Submitted
from gateway.inbound import Inbound, Receipt

if TYPE_CHECKING:
    from normalizer.schema import Complaint

_COUNT = {"type": "integer", "minimum": 0}
#: Settings both e-mail adapters understand (each adds its own).
COMMON_SETTINGS: dict[str, Any] = {
    "acknowledge": {"type": "boolean"},
    "from_address": {"type": "string"},
    "from_name": {"type": "string"},
    "message_id_domain": {"type": "string"},
    "relay": RELAY_SCHEMA,
    "ack_rate_limit_per_hour": {"type": "number", "minimum": 0},
    "max_attachments": _COUNT,
    "max_attachment_bytes": _COUNT,
    "max_total_attachment_bytes": _COUNT,
    "separate_quotes": {"type": "boolean"},
    "strip_signature": {"type": "boolean"},
    "fax": FAX_SCHEMA,
    "other_mailbox_window_hours": {"type": "number", "minimum": 0},
}


class MailDoor(Adapter):
    """Base of the e-mail adapters (not an adapter by itself)."""

    capabilities = frozenset({"acknowledge", "reply", "attachments"})

    @classmethod
    def check_settings(cls, settings: dict[str, Any], where: str) -> None:
        FaxSettings.from_settings(settings.get("fax"), where)

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        s = self.settings
        self.from_address = s.get("from_address") or ""
        domain = s.get("message_id_domain") or self.from_address.rpartition("@")[2] or "complaint-gateway.invalid"
        relay = RelaySettings.from_settings(s["relay"]) if s.get("relay") else None
        self.sender = MailSender(relay, self.from_address, s.get("from_name"), domain,
                                 float(s.get("ack_rate_limit_per_hour", 5)))
        self.options = ConvertOptions(limits=MailLimits.from_settings(s), number_pattern=context.number_pattern,
                                      ack_domains={domain.lower()})
        self.fax = FaxSettings.from_settings(s.get("fax"), f"channels.{self.instance}")
        self.other_mailbox_window = float(s.get("other_mailbox_window_hours", 72)) * 3600

    async def read_mail(self, raw: bytes, envelope: dict[str, Any] | None = None) -> Inbound:
        """``raw`` as an Inbound; a mail the parser cannot read still becomes one (with its
        raw bytes), which the normaliser turns into a dead letter: never lost, never a crash."""
        try:
            inbound = mail_to_inbound(raw, self.instance, self.options)
        except Exception as exc:  # the parser is tolerant; this is the last line of defence
            self.context.metrics.rejected.labels(self.instance, "unparseable").inc()
            self.log.warning("mail could not be parsed", extra={"channel": self.instance, "error": repr(exc)})
            inbound = unparsed_inbound(raw, self.instance, exc)
        if envelope:
            inbound.meta.setdefault("email", {})["envelope"] = envelope
        if self.other_mailbox_window > 0 and not inbound.auto_submitted:
            # The same mail sent to two of our addresses is one registration (the registry sees a
            # repeat); it is answered once: by the door that read it first.
            first = await self.context.state.acquire_lock(f"mail-received:{inbound.message_id}", self.instance,
                                                          self.other_mailbox_window)
            if not first:
                inbound.meta["received_in_other_mailbox"] = True
        if self.fax.rules and mark_fax(inbound, self.fax):
            text, info = await asyncio.to_thread(read_pages, inbound.attachments, self.fax)
            inbound.meta["fax"].update(info)
            if text:
                inbound.meta["fax"]["mail_text"] = inbound.text or ""
                inbound.text = text
        return inbound

    def should_acknowledge(self, submitted: Submitted, *, in_response: bool = False) -> bool:
        complaint = submitted.complaint
        if complaint is not None and complaint.meta.get("door") == "fax":
            return False  # the fax gateway's address is not the customer's: nothing to answer by mail
        if complaint is not None and complaint.meta.get("received_in_other_mailbox"):
            return False
        return super().should_acknowledge(submitted, in_response=in_response) and self.sender.relay is not None

    async def acknowledge(self, receipt: Receipt, complaint: Complaint) -> None:
        texts = self.context.texts
        language = texts.language_for(complaint) if hasattr(texts, "language_for") else (complaint.language or "en")
        body = texts.render(complaint, receipt, door="email")
        message = self.sender.acknowledgement(complaint, receipt, body, language)
        try:
            await self.sender.send(message, automatic=True)
        except RateLimited:
            self.context.metrics.rejected.labels(self.instance, "ack_rate_limited").inc()
            self.log.info("acknowledgement rate-limited", extra={"channel": self.instance,
                                                                 "registration_number": receipt.registration_number})

    def acknowledgement_retry_delay(self, error: Exception, backoff: float) -> float | None:
        """Never again when the relay refused the mail for good (a 5xx answer: no such
        recipient, a policy), after ``backoff`` otherwise (a 4xx answer, no connection)."""
        if isinstance(error, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in error.recipients.values()]
            return None if codes and all(code >= 500 for code in codes) else backoff
        if isinstance(error, smtplib.SMTPResponseException) and error.smtp_code >= 500:
            return None
        return backoff

    async def send_reply(self, complaint: Complaint, text: str) -> None:
        texts = self.context.texts
        language = texts.language_for(complaint) if hasattr(texts, "language_for") else (complaint.language or "en")
        await self.sender.send(self.sender.reply(complaint, text, language), automatic=False)


def unparsed_inbound(raw: bytes, channel: str, error: Exception) -> Inbound:
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return Inbound(channel=channel, message_id=f"sha256:{digest}", raw=raw, raw_content_type="message/rfc822",
                   meta={"door": "email", "parse_error": f"{type(error).__name__}: {error}"})

