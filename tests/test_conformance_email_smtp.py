"""The SMTP door passes the adapter conformance suite over real SMTP sessions.

The suite speaks HTTP through ``send(client, delivery) -> (status, body)``; here ``send()``
runs one smtplib session against the adapter's own port instead. A ``Delivery`` carries
the envelope: ``path`` is the RCPT TO address, ``headers["MAIL FROM"]`` the raw argument
after ``MAIL FROM:`` (sent as typed, so a broken one reaches the server) and ``body`` the
message bytes for DATA. The last SMTP reply maps to the suite's statuses:

    250                                      -> 200  accepted (stored and registered)
    550, or 553 to RCPT (recipient refused)  -> 403  the door's "forged / unauthorised"
    other 553, 553 5.1.3 / 5.1.7 (syntax)    -> 400  a malformed address
    552 (too large)                          -> 413
    451 (not stored, try again)              -> 503
    500, 501, 502, 503 (syntax or sequence)  -> 400

Anything else maps to 500, which no inherited test accepts. The body is the SMTP reply.
"""
from __future__ import annotations

import asyncio
import email
import re
import smtplib
from email import policy
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.testing.conformance import Delivery, Expect, PushAdapterConformance
from gateway.testing.plugin import registry_of
from tests.test_email_support import CapturingRelay, adapter_of, smtp_channel

ACCEPTED = "complaints@operator.example"
#: What each SMTP reply code means to the suite (see the module docstring).
HTTP_STATUS = {250: 200, 550: 403, 553: 403, 552: 413, 451: 503, 500: 400, 501: 400, 502: 400, 503: 400}
_ADDRESS_SYNTAX = re.compile(r"^5\.1\.[37]\b")

# A mail as Thunderbird sends it: UTF-8 text, 8bit, encoded words in the headers.
THUNDERBIRD_MAIL = (
    "Return-Path: <olga.sidorova@example.ru>\r\n"
    "Message-ID: <5f0c2a1e-7d3b-4c8e-9a61-2b7f3e9d4c10@example.ru>\r\n"
    "Date: Mon, 3 Mar 2025 09:14:27 +0300\r\n"
    "MIME-Version: 1.0\r\n"
    "User-Agent: Mozilla Thunderbird\r\n"
    "Content-Language: ru\r\n"
    "From: =?UTF-8?B?0J7Qu9GM0LPQsCDQodC40LTQvtGA0L7QstCw?= <olga.sidorova@example.ru>\r\n"
    "To: complaints@operator.example\r\n"
    "Subject: =?UTF-8?B?0J3QtdGCINC40L3RgtC10YDQvdC10YLQsA==?=\r\n"
    "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Здравствуйте!\r\n"
    "\r\n"
    "Третий день нет интернета по адресу ул. Ленина, 12, кв. 5.\r\n"
    "Роутер мигает красным, перезагрузка не помогает.\r\n"
    "\r\n"
    "Ольга Сидорова\r\n"
).encode()

# A mail as Outlook sends it: multipart/mixed, quoted-printable text, a PDF attachment.
OUTLOOK_MAIL_WITH_INVOICE = (
    b"Received: from WAW-EXCH01.biuro.example.pl (10.2.0.15) by WAW-EXCH01.biuro.example.pl\r\n"
    b" (10.2.0.15) with Microsoft SMTP Server id 15.2.1118.40; Tue, 4 Mar 2025 11:02:51 +0100\r\n"
    b"From: Jan Kowalski <jan.kowalski@biuro.example.pl>\r\n"
    b"To: \"Reklamacje\" <complaints@operator.example>\r\n"
    b"Subject: =?utf-8?Q?B=C5=82=C4=99dna_faktura_za_luty?=\r\n"
    b"Thread-Topic: =?utf-8?Q?B=C5=82=C4=99dna_faktura_za_luty?=\r\n"
    b"Date: Tue, 4 Mar 2025 10:02:50 +0000\r\n"
    b"Message-ID: <AM0PR07MB4417E1C2B3A4D5E6F7081920A3B4@AM0PR07MB4417.eurprd07.prod.outlook.com>\r\n"
    b"Accept-Language: pl-PL, en-US\r\n"
    b"Content-Language: pl-PL\r\n"
    b"X-MS-Has-Attach: yes\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed;\r\n"
    b"\tboundary=\"_004_AM0PR07MB4417E1C2B3A4D5E6F7081920A3B4_\"\r\n"
    b"\r\n"
    b"--_004_AM0PR07MB4417E1C2B3A4D5E6F7081920A3B4_\r\n"
    b"Content-Type: text/plain; charset=\"utf-8\"\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Dzie=C5=84 dobry,\r\n"
    b"\r\n"
    b"w za=C5=82=C4=85czniku przesy=C5=82am faktur=C4=99 za luty. Naliczono op=C5=\r\n"
    b"=82at=C4=99 za us=C5=82ug=C4=99, kt=C3=B3rej nie zamawia=C5=82em. Prosz=C4=99 o korek=\r\n"
    b"t=C4=99.\r\n"
    b"\r\n"
    b"Z powa=C5=BCaniem\r\n"
    b"Jan Kowalski\r\n"
    b"\r\n"
    b"--_004_AM0PR07MB4417E1C2B3A4D5E6F7081920A3B4_\r\n"
    b"Content-Type: application/pdf; name=\"faktura-2025-02.pdf\"\r\n"
    b"Content-Description: faktura-2025-02.pdf\r\n"
    b"Content-Disposition: attachment; filename=\"faktura-2025-02.pdf\"; size=193;\r\n"
    b"\tcreation-date=\"Tue, 04 Mar 2025 10:02:26 GMT\";\r\n"
    b"\tmodification-date=\"Tue, 04 Mar 2025 10:02:50 GMT\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQKMSAwIG9iajw8L1R5cGUvQ2F0YWxvZy9QYWdlcyAyIDAgUj4+ZW5kb2JqCjIgMCBv\r\n"
    b"Ymo8PC9UeXBlL1BhZ2VzL0tpZHNbMyAwIFJdL0NvdW50IDE+PmVuZG9iagozIDAgb2JqPDwvVHlw\r\n"
    b"ZS9QYWdlL1BhcmVudCAyIDAgUi9NZWRpYUJveFswIDAgNTk1IDg0Ml0+PmVuZG9iagp0cmFpbGVy\r\n"
    b"PDwvUm9vdCAxIDAgUj4+CiUlRU9GCg==\r\n"
    b"\r\n"
    b"--_004_AM0PR07MB4417E1C2B3A4D5E6F7081920A3B4_--\r\n"
)


def http_status(stage: str, code: int, reply: str) -> int:
    """The suite's status for the SMTP reply ``code`` given at ``stage`` (MAIL, RCPT, DATA)."""
    if code == 553 and (stage != "RCPT" or _ADDRESS_SYNTAX.match(reply)):
        return 400  # a malformed address, not a refused recipient
    return HTTP_STATUS.get(code, 500)


def smtp_exchange(port: int, delivery: Delivery) -> tuple[int, str]:
    """One SMTP session for ``delivery``: EHLO, MAIL, RCPT, DATA, stopping at the first
    refusal; returns the mapped status and the last reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("mx.example.net")
        stage = "MAIL"
        code, reply = client.docmd("MAIL", "FROM:" + delivery.headers["MAIL FROM"])
        if code == 250:
            stage = "RCPT"
            code, reply = client.docmd("RCPT", f"TO:<{delivery.path}>")
        if code == 250:
            stage = "DATA"
            code, reply = client.data(delivery.body)
    text = reply.decode("utf-8", "replace")
    return http_status(stage, code, text), f"{stage} {code} {text}"


def smtp_delivery(name: str, recipient: str, message: bytes, mail_from: str, expect: Expect | None = None,
                  expect_status: int = 200) -> Delivery:
    """A ``Delivery`` that ``smtp_exchange`` sends (see the module docstring)."""
    return Delivery(name, recipient, message, {"MAIL FROM": mail_from}, method="SMTP", expect_status=expect_status,
                    expect=expect)


class TestSmtpConformance(PushAdapterConformance):
    adapter = "smtp"
    instance = "mail"

    async def channel_settings(self) -> dict[str, Any]:
        self.relay = CapturingRelay()
        await self.relay.start()
        self.acknowledged: list[bytes] = []
        self.door_adapter: Any = None
        return {k: v for k, v in smtp_channel(self.relay.port).items() if k != "adapter"}

    async def cleanup(self) -> None:
        if self.door_adapter is not None:
            await self.door_adapter.drain()  # acknowledgements still on their way to the relay
        await self.relay.close()

    async def send(self, client: TestClient, delivery: Delivery) -> tuple[int, str]:
        self.door_adapter = adapter_of(client, self.instance)
        return await asyncio.to_thread(smtp_exchange, self.door_adapter.port, delivery)

    def deliveries(self) -> list[Delivery]:
        return [
            smtp_delivery("thunderbird, 8bit", ACCEPTED, THUNDERBIRD_MAIL, "<olga.sidorova@example.ru>", Expect(
                identities=[("email", "olga.sidorova@example.ru")], name="Ольга Сидорова", subject="Нет интернета",
                text_contains=["нет интернета по адресу", "Роутер мигает красным"], language="ru", attachments=0,
                auto_submitted=False, reply_to=("email", "olga.sidorova@example.ru"))),
            smtp_delivery("outlook, pdf attached", ACCEPTED, OUTLOOK_MAIL_WITH_INVOICE,
                          "<jan.kowalski@biuro.example.pl> SIZE=2048 BODY=8BITMIME", Expect(
                              identities=[("email", "jan.kowalski@biuro.example.pl")], name="Jan Kowalski",
                              subject="Błędna faktura za luty", text_contains=["przesyłam fakturę za luty"],
                              language="pl", attachments=1, reply_to=("email", "jan.kowalski@biuro.example.pl"))),
        ]

    def forged(self, delivery: Delivery) -> Delivery:
        """The same mail to an address the door does not serve: an open relay would take it."""
        return smtp_delivery("foreign recipient", "abuse@elsewhere.example", delivery.body, delivery.headers["MAIL FROM"])

    def malformed(self) -> Delivery:
        """``MAIL FROM:`` with no address at all (``<>`` would be the null sender): 501."""
        return smtp_delivery("MAIL FROM without an address", ACCEPTED, THUNDERBIRD_MAIL, "")

    async def acknowledgements(self) -> list[str]:
        while not self.relay.messages.empty():
            self.acknowledged.append(self.relay.messages.get_nowait()[2])
        texts = []
        for raw in self.acknowledged:
            message = email.message_from_bytes(raw, policy=policy.default)
            body = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
            texts.append(body.get_content() if body is not None else "")
        return texts

    # -- beyond the suite ------------------------------------------------------------------
    async def test_attachment_arrives_whole(self, door: TestClient) -> None:
        status, reply = await self.send(door, self.deliveries()[1])
        assert status == 200, reply
        events = await registry_of(door).read_events("attachment", "conformance")
        attachment = events[0].payload["complaint"]["attachments"][0]
        assert (attachment["filename"], attachment["content_type"], attachment["size"]) == \
            ("faktura-2025-02.pdf", "application/pdf", 193)

    async def test_the_answer_carries_the_number(self, door: TestClient) -> None:
        status, reply = await self.send(door, self.deliveries()[0])
        events = await registry_of(door).read_events("number", "conformance")
        assert status == 200
        assert reply.endswith(f"Accepted {events[0].registration_number}")

    async def test_malformed_address_is_counted(self, door: TestClient) -> None:
        broken = smtp_delivery("doubled @", ACCEPTED, THUNDERBIRD_MAIL, "<olga.sidorova@@example.ru>")
        status, reply = await self.send(door, broken)
        assert (status, reply.split()[:3]) == (400, ["MAIL", "553", "5.1.3"])
        assert (await self.send(door, self.malformed()))[0] == 400
        metrics = await (await door.get("/metrics")).text()
        assert 'complaint_gateway_rejected_total{channel="mail",reason="malformed"} 2.0' in metrics
