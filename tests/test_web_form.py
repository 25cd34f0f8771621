"""The web form door, end to end over real HTTP."""
from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import FormData

from tests.conftest import registry_of

COMPLAINT = {"name": "Иван Петров", "phone": "8 (916) 123-45-67", "email": "Ivan.Petrov@Example.com",
             "text": "Третий день нет интернета, роутер мигает красным."}


@pytest.fixture(params=["sqlite", "redis"])
async def client(request, make_config, start_gateway, redis_url):
    return await start_gateway(make_config(backend=request.param))


async def test_json_complaint_is_registered_and_queued(client):
    resp = await client.post("/web/complaints", json=COMPLAINT)
    assert resp.status == 201
    body = await resp.json()
    assert body["status"] == "new"
    assert body["registration_number"].startswith("2026-") or body["registration_number"][:4].isdigit()
    registry = registry_of(client)
    events = await registry.read_events("test", "c1", count=10)
    assert [e.event for e in events] == ["new"]
    complaint = events[0].payload["complaint"]
    assert complaint["registration_number"] == body["registration_number"]
    assert {"kind": "phone", "value": "+79161234567"} in complaint["customer"]["identities"]
    assert {"kind": "email", "value": "ivan.petrov@example.com"} in complaint["customer"]["identities"]
    assert complaint["reply_to"] == {"kind": "email", "value": "ivan.petrov@example.com"}


async def test_idempotency_key_returns_same_receipt(client):
    first = await client.post("/web/complaints", json=COMPLAINT, headers={"Idempotency-Key": "form-42"})
    second = await client.post("/web/complaints", json=COMPLAINT, headers={"Idempotency-Key": "form-42"})
    a, b = await first.json(), await second.json()
    assert (first.status, second.status) == (201, 200)
    assert a["registration_number"] == b["registration_number"] and a["id"] == b["id"]
    assert b["status"] == "duplicate"
    assert await registry_of(client).queue_length() == 1


async def test_multipart_form_with_file_gives_html_receipt(client):
    form = FormData()
    for key, value in COMPLAINT.items():
        form.add_field(key, value)
    form.add_field("attachments", b"%PDF-1.4 fake bill", filename="../../etc/bill.pdf", content_type="application/pdf")
    resp = await client.post("/web/complaints", data=form, headers={"Accept": "text/html"})
    assert resp.status == 201
    html = await resp.text()
    assert 'id="registration-number"' in html
    events = await registry_of(client).read_events("test", "c1")
    attachment = events[0].payload["complaint"]["attachments"][0]
    assert attachment["filename"] == "bill.pdf"
    assert attachment["size"] == len(b"%PDF-1.4 fake bill")


async def test_invalid_fields_get_422_with_message_per_field(client):
    resp = await client.post("/web/complaints", json={"text": "short", "email": "not-an-address", "lang": "en"})
    assert resp.status == 422
    fields = (await resp.json())["fields"]
    assert set(fields) >= {"text", "email"}
    assert "10" in fields["text"]


async def test_malformed_json_gets_400(client):
    resp = await client.post("/web/complaints", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert "JSON" in (await resp.json())["fields"]["body"]


async def test_a_field_name_that_is_no_text_gets_400_naming_it_escaped(client):
    body = (b'--B\r\nContent-Disposition: form-data; name="text"\r\n\r\nNo internet since morning\r\n'
            b'--B\r\nContent-Disposition: form-data; name="\x80"\r\n\r\n\x80\r\n--B--\r\n')
    resp = await client.post("/web/complaints", data=body, headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert resp.status == 400
    answer = await resp.text()
    assert answer.isascii() and "\\udc80" in answer  # the broken name, escaped in the JSON answer
    assert (await resp.json())["fields"] == {"\udc80": "not valid UTF-8"}
    assert await registry_of(client).queue_length() == 0


async def test_honeypot_is_refused_and_counted(client):
    resp = await client.post("/web/complaints", json={**COMPLAINT, "website": "http://spam.example"})
    assert resp.status == 400
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="web",reason="honeypot"} 1.0' in metrics
    assert await registry_of(client).queue_length() == 0


async def test_form_page_is_served_in_three_languages(client):
    for lang, word in (("ru", "Суть жалобы"), ("pl", "Treść reklamacji"), ("en", "Your complaint")):
        resp = await client.get(f"/web/?lang={lang}")
        html = await resp.text()
        assert resp.status == 200 and f'lang="{lang}"' in html and word in html
        assert '<label for="text">' in html


async def test_oversized_body_gets_413(make_config, start_gateway):
    client = await start_gateway(make_config(channels={"web": {"adapter": "web_form", "max_body_bytes": 2048,
                                                                "rate_limit_per_minute": 0}}))
    resp = await client.post("/web/complaints", data=json.dumps({**COMPLAINT, "text": "x" * 5000}),
                             headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await client.get("/healthz")).status == 200


async def test_rate_limit_answers_429(make_config, start_gateway):
    client = await start_gateway(make_config(channels={"web": {"adapter": "web_form", "rate_limit_per_minute": 2}}))
    statuses = [(await client.post("/web/complaints", json={**COMPLAINT, "text": COMPLAINT["text"] + str(i)})).status
                for i in range(4)]
    assert statuses == [201, 201, 429, 429]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_rate_limit_in_the_registry_holds_across_worker_processes(make_config, start_gateway, backend, redis_url):
    def web(scope: str) -> dict[str, object]:
        return {"web": {"adapter": "web_form", "rate_limit_per_minute": 3, "rate_limit_scope": scope}}

    workers = [await start_gateway(make_config(backend=backend, channels=web("registry"))) for _ in range(2)]
    statuses = [(await workers[i % 2].post("/web/complaints", json={**COMPLAINT, "text": f"{COMPLAINT['text']} {i}"})).status
                for i in range(6)]
    assert statuses == [201, 201, 201, 429, 429, 429]  # one bucket for the address, whichever worker answers
    counted = [await (await worker.get("/metrics")).text() for worker in workers]  # each counts its own refusals
    assert 'channel="web",reason="rate_limited"} 1.0' in counted[0] and 'channel="web",reason="rate_limited"} 2.0' in counted[1]


async def test_each_worker_counts_alone_by_default(make_config, start_gateway):
    workers = [await start_gateway(make_config(channels={"web": {"adapter": "web_form", "rate_limit_per_minute": 1}}))
               for _ in range(2)]
    statuses = [(await workers[i % 2].post("/web/complaints", json={**COMPLAINT, "text": f"{COMPLAINT['text']} {i}"})).status
                for i in range(4)]
    assert statuses == [201, 201, 429, 429]


async def test_requests_arriving_together_are_answered_by_one_registry_call():
    from gateway.http import SharedRateLimiter

    calls: list[list[str]] = []
    left: dict[str, int] = {}

    async def take(names: list[str], per_second: float, burst: float) -> list[bool]:
        calls.append(names)
        await asyncio.sleep(0.01)  # a round trip, while more requests arrive
        answers = []
        for name in names:
            left[name] = left.get(name, int(burst)) - 1
            answers.append(left[name] >= 0)
        return answers

    limit = SharedRateLimiter(3, take=take, name="rate:web:address")
    first = [asyncio.ensure_future(limit.allow("198.51.100.7")) for _ in range(5)]
    await asyncio.sleep(0.005)  # the first call is out: these wait for the next one, together
    later = [asyncio.ensure_future(limit.allow(f"198.51.100.{i}")) for i in (7, 8, 9)]
    assert await asyncio.gather(*first) == [True, True, True, False, False]
    assert await asyncio.gather(*later) == [False, True, True]
    assert calls == [["rate:web:address:198.51.100.7"] * 5,
                     ["rate:web:address:198.51.100.7", "rate:web:address:198.51.100.8", "rate:web:address:198.51.100.9"]]


async def test_a_shared_rate_limit_falls_back_to_the_process_when_the_registry_cannot_count(caplog):
    from gateway.http import SharedRateLimiter

    async def registry_down(names: list[str], per_second: float, burst: float) -> list[bool]:
        raise ConnectionError("redis is down")

    limit = SharedRateLimiter(2, take=registry_down, name="rate:web:address")
    assert [await limit.allow("198.51.100.7") for _ in range(3)] == [True, True, False]
    assert await asyncio.gather(*(limit.allow("198.51.100.8") for _ in range(3))) == [True, True, False]
    warnings = [r for r in caplog.records if "shared rate limit unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "redis is down" in warnings[0].error  # type: ignore[attr-defined]


async def test_registration_number_field_adds_to_own_complaint_only(client):
    first = await (await client.post("/web/complaints", json=COMPLAINT)).json()
    own = await client.post("/web/complaints", json={**COMPLAINT, "text": "Дополняю: мастер так и не пришёл.",
                                                     "registration_number": first["registration_number"]})
    assert (await own.json())["status"] == "follow_up"
    assert (await own.json())["registration_number"] == first["registration_number"]
    stranger = await client.post("/web/complaints", json={"email": "someone.else@example.com", "text": "Пишу в чужую жалобу!!",
                                                          "registration_number": first["registration_number"]})
    body = await stranger.json()
    assert body["status"] == "new" and body["registration_number"] != first["registration_number"]
