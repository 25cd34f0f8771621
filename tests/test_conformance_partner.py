"""The partner API passes the adapter conformance suite: cases POSTed with each
organisation's API key, the acknowledgement in the answer and at a signed callback that a
real HTTP server on loopback receives and verifies."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from channels.web.partner import key_digest
from gateway.app import ADAPTERS
from gateway.testing.conformance import Delivery, Expect, PushAdapterConformance
from gateway.testing.plugin import registry_of

PATH = "/partners/cases"
OMBUDSMAN_KEY = "Zq3c1v9yHk2mP0rT7wXe4uBn6sLd8fJa5gQiV0oCtYE"
CONSUMER_ORG_KEY = "b7N2kR5tW8yA1cE4hJ6mP9sU3vX0zD2fG5iL8oQ1rT4"
CALLBACK_SECRET = "rpo-callback-secret-4f1d2c3b"
LETTER = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


class CallbackReceiver:
    """The organisation's system: keeps the callbacks whose ``X-Signature`` verifies
    (HMAC-SHA256 of ``<t>.<body>`` with the shared secret) and refuses the others."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode("utf-8")
        self.payloads: list[dict[str, Any]] = []
        self.refused = 0
        app = web.Application()
        app.router.add_post("/gateway-hook", self.receive)
        self.server = TestServer(app, host="127.0.0.1", port=0)

    async def start(self) -> str:
        await self.server.start_server()
        return str(self.server.make_url("/gateway-hook"))

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        fields = dict(part.split("=", 1) for part in request.headers.get("X-Signature", "").split(",") if "=" in part)
        expected = hmac.new(self.secret, fields.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(fields.get("v1", ""), expected):
            self.refused += 1
            return web.Response(status=401)
        self.payloads.append(json.loads(body))
        return web.Response(status=204)

    async def close(self) -> None:
        await self.server.close()


def case_request(name: str, case: dict[str, Any], key: str, expect: Expect | None = None,
                 expect_status: int = 201) -> Delivery:
    """A case as an organisation's system sends it: JSON, its key as a bearer token."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}",
               "User-Agent": "rpo-case-system/3.2"}
    return Delivery(name, PATH, json.dumps(case, ensure_ascii=False).encode("utf-8"), headers,
                    expect=expect, expect_status=expect_status)


class TestPartnerApiConformance(PushAdapterConformance):
    adapter = "partner_api"
    instance = "partners"

    async def channel_settings(self) -> dict[str, Any]:
        self.receiver = CallbackReceiver(CALLBACK_SECRET)
        callback_url = await self.receiver.start()
        self.door_adapter: Any = None
        return {"rate_limit_per_minute": 0, "callback_backoff_initial_seconds": 0.01, "organisations": [
            {"id": "rpo", "name": "Rzecznik Praw Obywatelskich", "kind": "ombudsman",
             "key_sha256": key_digest(OMBUDSMAN_KEY), "language": "pl",
             "callback_url": callback_url, "callback_secret": CALLBACK_SECRET},
            {"id": "zpp", "name": "Общество защиты прав потребителей", "kind": "consumer_org",
             "key_sha256": key_digest(CONSUMER_ORG_KEY)},
        ]}

    async def cleanup(self) -> None:
        if self.door_adapter is not None:
            await self.door_adapter.drain()  # callbacks still on their way
        await self.receiver.close()

    async def send(self, client: TestClient, delivery: Delivery) -> tuple[int, str]:
        assert client.app is not None
        self.door_adapter = client.app[ADAPTERS][self.instance]
        return await super().send(client, delivery)

    def deliveries(self) -> list[Delivery]:
        ombudsman_case = {
            "reference": "RPO/2025/00417",
            "customer": {"name": "Jan Kowalski", "phone": "+48 601 234 567", "email": "Jan.Kowalski@Example.PL",
                         "account": "100234"},
            "subject": "Brak internetu od trzech tygodni",
            "text": "Klient od trzech tygodni nie ma internetu, a reklamacja złożona u operatora pozostała bez odpowiedzi.",
            "language": "pl", "person": "Anna Nowak",
            "attachments": [{"filename": "pismo klienta.pdf", "content_type": "application/pdf",
                             "data_base64": base64.b64encode(LETTER).decode("ascii")}],
        }
        consumer_case = {
            "reference": "ЗПП-2025-0093",
            "customer": {"name": "Мария Иванова", "email": "maria.ivanova@example.ru",
                         "identities": [{"kind": "telegram", "value": "5550123"}]},
            "text": "Потребителю дважды выставили счёт за март; деньги списаны с карты два раза.",
        }
        return [
            case_request("ombudsman, letter attached", ombudsman_case, OMBUDSMAN_KEY, Expect(
                identities=[("phone", "+48601234567"), ("email", "jan.kowalski@example.pl"), ("account", "100234")],
                name="Jan Kowalski", subject="Brak internetu od trzech tygodni", text_contains=["nie ma internetu"],
                language="pl", attachments=1)),
            case_request("consumer organisation", consumer_case, CONSUMER_ORG_KEY, Expect(
                identities=[("email", "maria.ivanova@example.ru"), ("telegram", "5550123")], name="Мария Иванова",
                text_contains=["дважды выставили счёт"], language="ru", attachments=0)),
        ]

    def forged(self, delivery: Delivery) -> Delivery:
        """The same case with a key no organisation has (well-formed, 43 characters)."""
        return Delivery("wrong key", delivery.path, delivery.body,
                        {**delivery.headers, "Authorization": "Bearer xK4mQ7tR0vY3bE6hL9pS2wZ5cG8jN1oU4rA7dF0iT3q"})

    def malformed(self) -> Delivery:
        return Delivery("truncated JSON", PATH, b'{"reference": "RPO/2025/00418", "customer": {"name": "Jan',
                        {"Content-Type": "application/json", "Authorization": f"Bearer {OMBUDSMAN_KEY}"})

    async def acknowledgements(self) -> list[str]:
        return [str(p["acknowledgement"]["text"]) for p in self.receiver.payloads]

    # -- beyond the suite ------------------------------------------------------------------
    async def test_the_answer_carries_the_number_and_the_acknowledgement(self, door: TestClient) -> None:
        status, body = await self.send(door, self.deliveries()[1])
        events = await registry_of(door).read_events("answer", "conformance")
        number = events[0].registration_number
        answer = json.loads(body)
        assert status == 201
        assert (answer["registration_number"], answer["organisation"], answer["reference"]) == \
            (number, "zpp", "ЗПП-2025-0093")
        assert number in answer["acknowledgement"]["text"]
        assert events[0].payload["complaint"]["submitted_by"] == {"kind": "consumer_org", "organisation": "zpp",
                                                                   "person": None}
        assert self.receiver.payloads == []  # this organisation has no callback

    async def test_forged_key_reaches_no_callback(self, door: TestClient) -> None:
        status, _ = await self.send(door, self.forged(self.deliveries()[0]))
        metrics = await (await door.get("/metrics")).text()
        assert status == 401
        assert 'complaint_gateway_rejected_total{channel="partners",reason="unauthorized"} 1.0' in metrics
        assert (self.receiver.payloads, self.receiver.refused) == ([], 0)
