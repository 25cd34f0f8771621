"""Helpers and fixtures shared by the e-mail tests: a capturing SMTP relay on loopback, a
real SMTP client session against the gateway, mail builders. (No tests of its own.)"""
from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.app import ADAPTERS
from gateway.testing.servers import free_port

FIXTURES = Path(__file__).parent / "email_fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class CapturingRelay:
    """An outgoing relay that keeps what it is given (a real aiosmtpd server on 127.0.0.1:0)."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[str, list[str], bytes]] = asyncio.Queue()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        #: Answers to the next mails' DATA instead of taking them ("451 4.3.0 try later"), one each.
        self.refusals: list[str] = []
        self.refused = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refusals:
            self.refused += 1
            return self.refusals.pop(0)
        await self.messages.put((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK captured"

    async def start(self) -> None:
        self.server = await asyncio.get_running_loop().create_server(lambda: SMTP(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def next_message(self, timeout: float = 10.0) -> tuple[str, list[str], bytes]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture(name="relay")
async def relay_fixture() -> AsyncIterator[CapturingRelay]:
    capturing = CapturingRelay()
    await capturing.start()
    yield capturing
    await capturing.close()


@dataclass
class SmtpSession:
    """What the server answered at each step of one real SMTP session."""

    rcpt: list[int] = field(default_factory=list)
    data: tuple[int, bytes] | None = None
    mail: tuple[int, bytes] | None = None


def _session(port: int, raw: bytes, mail_from: str, rcpt_tos: list[str], lmtp: bool,
             login: tuple[str, str] | None, starttls: bool, declare_size: bool) -> SmtpSession:
    result = SmtpSession()
    client: smtplib.SMTP = smtplib.LMTP("127.0.0.1", port) if lmtp else smtplib.SMTP("127.0.0.1", port, timeout=30)
    try:
        client.ehlo_or_helo_if_needed()
        if starttls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client.starttls(context=context)
            client.ehlo()
        if login:
            client.login(*login)
        result.mail = client.mail(mail_from, [f"SIZE={len(raw)}"] if declare_size and client.has_extn("size") else [])
        if result.mail[0] != 250:
            return result
        for rcpt in rcpt_tos:
            result.rcpt.append(client.rcpt(rcpt)[0])
        if 250 in result.rcpt:
            result.data = client.data(raw)
    finally:
        try:
            client.quit()
        except smtplib.SMTPException:
            client.close()
    return result


async def smtp_send(port: int, raw: bytes, rcpt_tos: list[str], mail_from: str = "sender@example.net", *,
                    lmtp: bool = False, login: tuple[str, str] | None = None, starttls: bool = False,
                    declare_size: bool = True) -> SmtpSession:
    """One real SMTP session with smtplib (in a thread: the server runs on this event loop)."""
    return await asyncio.to_thread(_session, port, raw, mail_from, rcpt_tos, lmtp, login, starttls, declare_size)


def make_mail(text: str = "Третий день нет интернета, роутер мигает красным.", *, sender: str = "Иван Петров <ivan@example.net>",
              to: str = "complaints@operator.example", subject: str = "Нет интернета", message_id: str | None = None,
              headers: dict[str, str] | None = None, attachments: list[tuple[str, str, bytes]] | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate()
    message["Message-ID"] = message_id or make_msgid(domain="example.net")
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    for filename, ctype, data in attachments or []:
        maintype, subtype = ctype.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=policy.SMTP)  # CRLF line ends, as on the wire


def adapter_of(client: TestClient, instance: str) -> Any:
    return client.server.app[ADAPTERS][instance]  # type: ignore[union-attr]


def smtp_channel(relay_port: int | None = None, **settings: Any) -> dict[str, Any]:
    channel: dict[str, Any] = {"adapter": "smtp", "host": "127.0.0.1", "port": 0,
                               "recipients": ["complaints@operator.example"], "domains": ["reklamacje.example"],
                               "from_address": "complaints@operator.example", "from_name": "Operator"}
    if relay_port is not None:
        channel["relay"] = {"host": "127.0.0.1", "port": relay_port}
    channel.update(settings)
    return channel


# -- a private Dovecot on loopback ------------------------------------------------------------
DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
first_valid_uid = 1
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
  default_fields = uid={uid} gid={gid} home={root}/home/%u
}}
"""


@dataclass
class Dovecot:
    """A running private Dovecot: ``port``, and ``users`` (name -> password)."""

    root: Path
    port: int
    users: dict[str, str]
    process: Any = None

    def client(self, user: str) -> Any:
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(user, self.users[user])
        return client

    def append(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        client = self.client(user)
        try:
            client.append(folder, raw)
        finally:
            client.logout()

    def settings(self, user: str, **extra: Any) -> dict[str, Any]:
        return {"adapter": "imap", "host": "127.0.0.1", "port": self.port, "security": "none", "username": user,
                "password": self.users[user], "idle_timeout_seconds": 5, "poll_interval_seconds": 0.2,
                "backoff_initial_seconds": 0.1, "backoff_max_seconds": 0.5, **extra}



def _wait_for_port(port: int, process: Any, log: Path, timeout: float = 15.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited: {log.read_text() if log.exists() else '(no log)'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"* OK"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"dovecot did not answer on port {port}: {log.read_text() if log.exists() else ''}")


@pytest.fixture(name="dovecot")
def dovecot_fixture() -> Any:
    """Start a private Dovecot (IMAP on a free loopback port, passwd-file users, maildirs in a
    temporary folder) as the current user; as root its helpers run as Dovecot's own users."""
    import grp
    import os
    import pwd
    import shutil
    import subprocess
    import tempfile

    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    root = Path(tempfile.mkdtemp(prefix="cg-dovecot-"))
    root.chmod(0o755)
    users = {"box1": "secret-one", "box2": "secret-two"}
    if os.getuid() == 0:  # Dovecot will not serve mail or logins as root
        mail_user = pwd.getpwnam("dovecot")
        uid, gid = mail_user.pw_uid, mail_user.pw_gid
        internal_user, internal_group, login_user = "dovecot", grp.getgrgid(gid).gr_name, "dovenull"
    else:
        uid, gid = os.getuid(), os.getgid()
        internal_user = login_user = pwd.getpwuid(uid).pw_name
        internal_group = grp.getgrgid(gid).gr_name
    for folder in ("run", "state", "mail", "home"):
        (root / folder).mkdir()
    for folder in ("mail", "home"):
        os.chown(root / folder, uid, gid)
    (root / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items()))
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(root=root, port=port, uid=uid, gid=gid, internal_user=internal_user,
                                        internal_group=internal_group, login_user=login_user))
    process = subprocess.Popen([binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_port(port, process, root / "dovecot.log")
        yield Dovecot(root, port, users, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


async def wait_until(condition: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll an async or plain ``condition`` until it is truthy (a deadline, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
