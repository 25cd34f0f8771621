"""The web form passes the adapter conformance suite."""
from __future__ import annotations

import json

from gateway.testing.conformance import Delivery, Expect, PushAdapterConformance

HEADERS = {"Content-Type": "application/json", "Idempotency-Key": "conf-1"}


class TestWebFormConformance(PushAdapterConformance):
    adapter = "web_form"
    instance = "site"
    public_door = True

    async def channel_settings(self) -> dict:
        return {"rate_limit_per_minute": 0}

    def deliveries(self) -> list[Delivery]:
        body = {"name": "Jan Kowalski", "phone": "+48 601 234 567", "email": "Jan@Example.PL", "lang": "pl",
                "preferred_channel": "sms", "text": "Od wczoraj nie działa internet w mieszkaniu."}
        return [
            Delivery("json", "/web/complaints", json.dumps(body).encode(), HEADERS, expect_status=201,
                     expect=Expect(identities=[("email", "jan@example.pl"), ("phone", "+48601234567")],
                                   text_contains=["nie działa internet"], language="pl", name="Jan Kowalski",
                                   reply_to=("phone", "+48601234567"), attachments=0)),
            Delivery("urlencoded", "/web/complaints",
                     b"email=a%40example.com&text=No+internet+since+Monday+morning&lang=en",
                     {"Content-Type": "application/x-www-form-urlencoded"}, expect_status=201,
                     expect=Expect(identities=[("email", "a@example.com")], language="en")),
        ]

    def malformed(self) -> Delivery:
        return Delivery("broken", "/web/complaints", b'{"text": ', {"Content-Type": "application/json"})
