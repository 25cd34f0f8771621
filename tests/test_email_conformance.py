"""The IMAP poller passes the pull-adapter conformance suite against a real Dovecot."""
from __future__ import annotations

import pytest

from gateway.testing.conformance import Expect, PullAdapterConformance
from tests.test_email_support import dovecot_fixture, make_mail  # noqa: F401

MAILS = [("Анна Смирнова <anna@example.ru>", "Нет интернета", "Второй день нет интернета, роутер мигает красным.")]


class TestImapConformance(PullAdapterConformance):
    adapter = "imap"
    instance = "mailbox"

    @pytest.fixture(autouse=True)
    def _mail_server(self, dovecot):
        self.dovecot = dovecot

    async def channel_settings(self) -> dict:
        return {k: v for k, v in self.dovecot.settings("box1", idle=False).items() if k != "adapter"}

    async def put_message(self, index: int) -> None:
        sender, subject, text = MAILS[index]
        self.dovecot.append("box1", make_mail(text, sender=sender, subject=subject))

    def expect(self, index: int) -> Expect:
        _, subject, text = MAILS[index]
        return Expect(identities=[("email", "anna@example.ru")], name="Анна Смирнова", subject=subject,
                      text_contains=[text], language="ru", attachments=0, auto_submitted=False,
                      reply_to=("email", "anna@example.ru"))
