"""SMTP (or LMTP) receiver: mail to the company's complaint addresses, straight from the
sending server or from Postfix/Exim in front.

A thin edge in the Mailman style: it accepts only the configured recipient addresses or
domains (550 for any other: never an open relay), refuses oversized mail with 552, and
answers 250 only after ``deliver()`` stored the message (451 when it could not, so the
sender retries). One mail to several accepted recipients is one complaint.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import ssl
from functools import partial
from typing import Any, AnyStr, ClassVar

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from channels.email.cli import add_parse_email_command
from channels.email.door import COMMON_SETTINGS, MailDoor
from gateway.adapters import TemporaryFailure


class SmtpAdapter(MailDoor):
    name = "smtp"
    version = "1.0"
    description = "SMTP/LMTP receiver for the company's complaint addresses (aiosmtpd)."
    capabilities = frozenset({"push", "acknowledge", "reply", "attachments"})

    def runs_in_every_worker(self) -> bool:
        return False  # it listens on its own port: the first worker only

    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "anyOf": [{"required": ["recipients"]}, {"required": ["domains"]}],
        "properties": {
            **COMMON_SETTINGS,
            "host": {"type": "string"},
            "port": {"type": "integer", "minimum": 0, "maximum": 65535},
            "lmtp": {"type": "boolean"},
            "recipients": {"type": "array", "items": {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+$"}},
            "domains": {"type": "array", "items": {"type": "string", "pattern": "^[^@\\s]+$"}},
            "max_message_bytes": {"type": "integer", "minimum": 1024},
            "max_recipients": {"type": "integer", "minimum": 1},
            "timeout_seconds": {"type": "number", "minimum": 1},
            "hostname": {"type": "string"},
            "tls_cert_file": {"type": "string"},
            "tls_key_file": {"type": "string"},
            "require_starttls": {"type": "boolean"},
            "auth_required": {"type": "boolean"},
            "auth_require_tls": {"type": "boolean"},
            "users": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        s = self.settings
        self.host = s.get("host", "127.0.0.1")
        self.port = int(s.get("port", 2525))
        self.recipients = {a.lower() for a in s.get("recipients") or []}
        self.domains = {d.lower().lstrip("@") for d in s.get("domains") or []}
        self.max_bytes = int(s.get("max_message_bytes", 25 * 1024 * 1024))
        self.max_recipients = int(s.get("max_recipients", 50))
        self.users: dict[str, str] = dict(s.get("users") or {})
        self.server: asyncio.AbstractServer | None = None

    @classmethod
    def add_cli_commands(cls, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        add_parse_email_command(subparsers)

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        tls = None
        if s.get("tls_cert_file"):
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(s["tls_cert_file"], s.get("tls_key_file"))
        protocol = CountingLMTP if s.get("lmtp") else CountingSMTP
        factory = partial(
            protocol, SmtpHandler(self), data_size_limit=self.max_bytes, hostname=s.get("hostname"),
            ident="complaint-gateway", tls_context=tls, require_starttls=bool(s.get("require_starttls", False)) and tls is not None,
            timeout=float(s.get("timeout_seconds", 300)), auth_required=bool(s.get("auth_required", False)),
            auth_require_tls=bool(s.get("auth_require_tls", True)), authenticator=self._authenticate,
            enable_SMTPUTF8=True, decode_data=False)
        self.server = await asyncio.get_running_loop().create_server(factory, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.log.info("listening", extra={"channel": self.instance, "host": self.host, "port": self.port,
                                          "protocol": protocol.__name__})

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        await self.drain()

    # -- policy ---------------------------------------------------------------------------------
    def accepts(self, address: str) -> bool:
        address = address.strip().strip("<>").lower()
        return address in self.recipients or address.rpartition("@")[2] in self.domains

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode("utf-8", "replace"), auth_data.password.decode("utf-8", "replace")
            expected = self.users.get(user)
            if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
                return AuthResult(success=True)
        self.context.metrics.rejected.labels(self.instance, "auth_failed").inc()
        self.log.info("smtp authentication failed", extra={"channel": self.instance, "peer": str(session.peer)})
        return AuthResult(success=False, handled=False)


class _CountsRefusals:
    """aiosmtpd answers oversized mail (552) and broken commands (500, 501, 553 5.1.3 for a
    malformed address) itself; count and log those refusals too."""

    event_handler: SmtpHandler
    session: Session | None

    async def push(self, status: AnyStr) -> None:
        line = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        adapter = self.event_handler.adapter
        if line.startswith("552"):
            adapter.context.metrics.rejected.labels(adapter.instance, "too_large").inc()
            adapter.log.info("mail too large", extra={"channel": adapter.instance, "max_bytes": adapter.max_bytes})
        elif line.startswith(("500", "501", "553 5.1.3")):
            adapter.context.metrics.rejected.labels(adapter.instance, "malformed").inc()
            adapter.log.info("smtp command refused", extra={"channel": adapter.instance, "reply": line[:80],
                                                            "peer": str(self.session.peer if self.session else None)})
        await super().push(status)  # type: ignore[misc]


class CountingSMTP(_CountsRefusals, SMTP):
    pass


class CountingLMTP(_CountsRefusals, LMTP):
    pass


class SmtpHandler:
    """aiosmtpd hooks: recipient policy, then store-and-register on DATA."""

    def __init__(self, adapter: SmtpAdapter) -> None:
        self.adapter = adapter

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        adapter = self.adapter
        if not adapter.accepts(address):
            adapter.context.metrics.rejected.labels(adapter.instance, "unknown_recipient").inc()
            adapter.log.info("recipient refused", extra={"channel": adapter.instance, "peer": str(session.peer)})
            return "550 5.1.1 No such recipient here"
        if len(envelope.rcpt_tos) >= adapter.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogateescape")
        status = await self._deliver(data, envelope)
        if isinstance(server, LMTP):  # LMTP answers once per accepted recipient
            return "\r\n".join([status] * max(1, len(envelope.rcpt_tos)))
        return status

    async def _deliver(self, data: bytes, envelope: Envelope) -> str:
        adapter = self.adapter
        try:
            inbound = await adapter.read_mail(data, {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)})
            submitted = await adapter.deliver(inbound)
        except TemporaryFailure:
            return "451 4.3.0 Temporarily unable to store the message, please try again later"
        except Exception as exc:  # anything unexpected: the sender keeps the mail and retries
            adapter.log.error("smtp delivery failed", extra={"channel": adapter.instance, "error": repr(exc)})
            return "451 4.3.0 Temporary failure, please try again later"
        receipt = submitted.receipt
        return f"250 2.0.0 Accepted {receipt.registration_number or receipt.status}"
