"""IMAP poller: one mailbox per channel instance, IDLE where the server has it, polling
otherwise (imapclient, each blocking call in a worker thread).

It never reprocesses or skips: the cursor (UIDVALIDITY and the last handled UID) lives in
the registry's state store and advances only after ``deliver()`` returned and the message
was marked \\Seen or moved. One bad message never blocks the ones after it: it becomes a
dead letter (or, over the size limit, is left unread in the mailbox with a metric). Only one
gateway process polls a mailbox at a time: a lock in the registry, renewed every cycle.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
from typing import Any, ClassVar

from imapclient import IMAPClient

from channels.email.cli import add_parse_email_command
from channels.email.door import COMMON_SETTINGS, MailDoor
from gateway.adapters import PullAdapter


class ImapAdapter(MailDoor, PullAdapter):
    name = "imap"
    version = "1.0"
    description = "IMAP mailbox poller with IDLE, a durable UID cursor and a single-poller lock (imapclient)."
    capabilities = frozenset({"pull", "acknowledge", "reply", "attachments"})
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["host", "username", "password"],
        "properties": {
            **COMMON_SETTINGS,
            "host": {"type": "string"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "security": {"enum": ["tls", "starttls", "none"]},
            "verify_certificate": {"type": "boolean"},
            "username": {"type": "string"},
            "password": {"type": "string"},
            "folder": {"type": "string"},
            "move_to": {"type": ["string", "null"]},
            "idle": {"type": "boolean"},
            "idle_timeout_seconds": {"type": "number", "minimum": 1, "maximum": 1740},
            "batch_size": {"type": "integer", "minimum": 1},
            "max_message_bytes": {"type": "integer", "minimum": 1024},
            "timeout_seconds": {"type": "number", "minimum": 1},
            "lock_ttl_seconds": {"type": "number", "minimum": 5},
            **PullAdapter.LOOP_SETTINGS,
        },
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        s = self.settings
        self.security = s.get("security", "tls")
        self.port = int(s.get("port", 993 if self.security == "tls" else 143))
        self.folder = s.get("folder", "INBOX")
        self.move_to: str | None = s.get("move_to") or None
        self.use_idle = bool(s.get("idle", True))
        self.idle_timeout = float(s.get("idle_timeout_seconds", 300))
        self.configured_interval = float(s.get("poll_interval_seconds", 60))
        self.poll_interval = self.configured_interval
        self.batch_size = int(s.get("batch_size", 50))
        self.max_bytes = int(s.get("max_message_bytes", 25 * 1024 * 1024))
        self.timeout = float(s.get("timeout_seconds", 60))
        self.lock_ttl = float(s.get("lock_ttl_seconds", max(120.0, self.idle_timeout * 2)))
        self.mailbox = f"imap:{s['username']}@{s['host']}:{self.port}/{self.folder}"
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{self.instance}:{id(self):x}"
        self.client: IMAPClient | None = None
        self.uidvalidity: int | None = None
        self.has_lock = False
        self.supports_idle = False

    @classmethod
    def add_cli_commands(cls, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        add_parse_email_command(subparsers)

    # -- one cycle --------------------------------------------------------------------------
    async def pull(self) -> None:
        state = self.context.state
        self.has_lock = await state.acquire_lock(self.mailbox, self.owner, self.lock_ttl)
        if not self.has_lock:
            await self.close()  # another process polls this mailbox; wait and try again
            await asyncio.sleep(max(1.0, self.configured_interval))
            return
        if self.client is None:
            await self.connect()
        await self.fetch_new()
        if self.client is not None and self.use_idle and self.supports_idle:
            await asyncio.to_thread(self._idle_wait)

    async def connect(self) -> None:
        client = await asyncio.to_thread(self._connect_blocking)
        self.client = client
        selected = await asyncio.to_thread(client.select_folder, self.folder)
        self.uidvalidity = int(selected[b"UIDVALIDITY"])
        self.supports_idle = bool(client.has_capability("IDLE"))
        self.poll_interval = 0.0 if self.use_idle and self.supports_idle else self.configured_interval
        if self.move_to:
            await asyncio.to_thread(self._ensure_folder, self.move_to)
        self.log.info("mailbox connected", extra={"channel": self.instance, "idle": self.poll_interval == 0.0})

    def _connect_blocking(self) -> IMAPClient:
        s = self.settings
        context = ssl.create_default_context()
        if not s.get("verify_certificate", True):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        client = IMAPClient(s["host"], port=self.port, ssl=self.security == "tls", ssl_context=context, timeout=self.timeout)
        if self.security == "starttls":
            client.starttls(context)
        client.login(s["username"], s["password"])
        return client

    def _ensure_folder(self, folder: str) -> None:
        assert self.client is not None
        if not self.client.folder_exists(folder):
            self.client.create_folder(folder)

    async def fetch_new(self) -> None:
        """Deliver every message after the cursor, oldest first, in batches."""
        cursor_name = f"cursor:{self.mailbox}"
        cursor = await self.context.state.get_cursor(cursor_name)
        last_uid, criteria = 0, ["UNSEEN"]
        if cursor:
            validity, _, uid = cursor.partition(":")
            if int(validity) == self.uidvalidity:
                last_uid, criteria = int(uid), ["UID", f"{int(uid) + 1}:*"]
            else:  # the server renumbered the mailbox: what is still unread is new to us
                self.log.warning("UIDVALIDITY changed; rescanning unread mail", extra={"channel": self.instance})
        assert self.client is not None
        uids = sorted(u for u in await asyncio.to_thread(self.client.search, criteria) if u > last_uid)
        while uids:
            batch, uids = uids[: self.batch_size], uids[self.batch_size :]
            sizes = await asyncio.to_thread(self.client.fetch, batch, ["RFC822.SIZE"])
            for uid in batch:
                size = int((sizes.get(uid) or {}).get(b"RFC822.SIZE", 0))
                await self.handle(uid, size)
                await self.context.state.set_cursor(cursor_name, f"{self.uidvalidity}:{uid}")
            await self.context.state.acquire_lock(self.mailbox, self.owner, self.lock_ttl)  # renew between batches

    async def handle(self, uid: int, size: int) -> None:
        """Deliver one message, then mark it. Raises only when the mailbox or the registry
        failed (the cursor then stays before this message and it is tried again)."""
        assert self.client is not None
        if size > self.max_bytes:
            self.context.metrics.rejected.labels(self.instance, "too_large").inc()
            self.log.warning("message too large; left unread in the mailbox",
                             extra={"channel": self.instance, "uid": uid, "size": size, "max_bytes": self.max_bytes})
            return
        fetched = await asyncio.to_thread(self.client.fetch, [uid], ["BODY.PEEK[]"])
        raw = (fetched.get(uid) or {}).get(b"BODY[]")
        if raw is None:  # expunged by someone else meanwhile
            return
        inbound = await self.read_mail(bytes(raw), {"mailbox": self.folder, "uid": uid, "uidvalidity": self.uidvalidity})
        # TemporaryFailure propagates: the message stays unread, the cursor before it; the base class backs off
        await self.deliver(inbound)
        await asyncio.to_thread(self._mark_done, uid)

    def _mark_done(self, uid: int) -> None:
        assert self.client is not None
        self.client.add_flags([uid], [b"\\Seen"])
        if not self.move_to:
            return
        if self.client.has_capability("MOVE"):
            self.client.move([uid], self.move_to)
            return
        self.client.copy([uid], self.move_to)
        self.client.add_flags([uid], [b"\\Deleted"])
        if self.client.has_capability("UIDPLUS"):
            self.client.uid_expunge([uid])
        else:
            self.client.expunge()

    def _idle_wait(self) -> None:
        """Wait in IDLE until the server reports a change or the timeout passes."""
        assert self.client is not None
        self.client.idle()
        try:
            self.client.idle_check(timeout=self.idle_timeout)
        finally:
            self.client.idle_done()

    # -- shutdown ---------------------------------------------------------------------------
    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:  # wakes a thread blocked in IDLE at once
                client.socket().shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            await asyncio.to_thread(_quiet_logout, client)

    async def stop(self) -> None:
        await super().stop()
        if self.has_lock:
            await self.context.state.release_lock(self.mailbox, self.owner)
            self.has_lock = False


def _quiet_logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the connection is going away anyway
        try:
            client.shutdown()
        except Exception:
            pass
