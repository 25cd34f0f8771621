"""The partner API (ombudsmen, consumer organisations), end to end over real HTTP."""
from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import hmac
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.social.fakes.testing import has_metric, wait_until
from channels.web.partner import key_digest, write_report
from gateway.app import ADAPTERS
from gateway.config import ConfigError
from gateway.inbound import Inbound
from gateway.registry import build_registry
from normalizer.pipeline import Normalizer, NormalizerSettings
from tests.conftest import base_config, registry_of

KEY_RPO = "rpo-test-key-6d0b1f6a8c2e4f7a9b3c5d7e9f1a3b5c"
KEY_UOKIK = "uokik-test-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SECRET = "callback-secret-for-tests-0123456789"

CASE = {
    "reference": "RPO/2026/00123",
    "customer": {"name": "Jan Kowalski", "phone": "+48 601 234 567", "email": "Jan.Kowalski@Example.PL"},
    "text": "Klient od trzech tygodni nie ma internetu, reklamacja złożona u operatora pozostała bez odpowiedzi.",
    "person": "Anna Nowak",
}


def partner_channel(**extra: Any) -> dict[str, Any]:
    return {"partners": {
        "adapter": "partner_api", "rate_limit_per_minute": 0,
        "organisations": [
            {"id": "rpo", "name": "Rzecznik Praw Obywatelskich", "kind": "ombudsman", "key_sha256": key_digest(KEY_RPO),
             "language": "pl"},
            {"id": "uokik", "name": "Federacja Konsumentów", "kind": "consumer_org",
             "key_sha256": ["0" * 64, key_digest(KEY_UOKIK)]},
        ],
        **extra,
    }}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(params=["sqlite", "redis"])
async def client(request, make_config, start_gateway, redis_url):
    return await start_gateway(make_config(backend=request.param, channels=partner_channel()))


async def rejected(client, reason: str) -> float:
    text = await (await client.get("/metrics")).text()
    line = f'complaint_gateway_rejected_total{{channel="partners",reason="{reason}"}} '
    values = [float(x.split(" ")[-1]) for x in text.splitlines() if x.startswith(line)]
    return values[0] if values else 0.0


async def test_case_is_registered_and_acknowledged_to_the_organisation(client):
    resp = await client.post("/partners/cases", json=CASE, headers=auth(KEY_RPO))
    assert resp.status == 201
    body = await resp.json()
    assert body["status"] == "new" and body["reference"] == "RPO/2026/00123" and body["organisation"] == "rpo"
    number = body["registration_number"]
    assert set(body["deadlines"]) == {"acknowledge", "respond", "technical", "legal"}
    ack = body["acknowledgement"]
    assert ack["language"] == "pl"
    assert number in ack["text"] and "RPO/2026/00123" in ack["text"] and "Rzecznik Praw Obywatelskich" in ack["text"]
    assert "Jan" not in ack["text"]

    events = await registry_of(client).read_events("t", "c")
    complaint = events[0].payload["complaint"]
    assert complaint["registration_number"] == number
    assert complaint["submitted_by"] == {"kind": "ombudsman", "organisation": "rpo", "person": "Anna Nowak"}
    assert {"kind": "phone", "value": "+48601234567"} in complaint["customer"]["identities"]
    assert {"kind": "email", "value": "jan.kowalski@example.pl"} in complaint["customer"]["identities"]
    assert complaint["urgency"] == "high" and complaint["language"] == "pl"
    # no callback configured: nothing is sent anywhere, and above all not to the customer
    metrics = await (await client.get("/metrics")).text()
    assert "complaint_gateway_acknowledgements_total{" not in metrics


async def test_same_reference_returns_the_same_registration(client):
    first = await client.post("/partners/cases", json=CASE, headers=auth(KEY_RPO))
    again = await client.post("/partners/cases", json=CASE, headers=auth(KEY_RPO))
    other_org = await client.post("/partners/cases", json=CASE, headers=auth(KEY_UOKIK))
    a, b, c = await first.json(), await again.json(), await other_org.json()
    assert (first.status, again.status, other_org.status) == (201, 200, 201)
    assert b["status"] == "duplicate" and b["registration_number"] == a["registration_number"]
    assert c["status"] in ("new", "repeat") and c["organisation"] == "uokik"
    assert await registry_of(client).queue_length() == 2


async def test_bad_or_missing_key_gets_401_and_is_counted(client):
    wrong = await client.post("/partners/cases", json=CASE, headers=auth("not-the-key"))
    missing = await client.post("/partners/cases", json=CASE)
    in_query = await client.post(f"/partners/cases?api_key={KEY_RPO}", json=CASE)
    assert (wrong.status, missing.status, in_query.status) == (401, 401, 401)
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert await rejected(client, "unauthorized") == 3.0
    assert await registry_of(client).queue_length() == 0


async def test_rotated_key_and_x_api_key_header_are_accepted(client):
    resp = await client.get("/partners/whoami", headers={"X-Api-Key": KEY_UOKIK})
    assert resp.status == 200
    assert await resp.json() == {"organisation": "uokik", "name": "Federacja Konsumentów", "kind": "consumer_org"}


async def test_malformed_and_invalid_cases_get_400_and_422(client):
    not_json = await client.post("/partners/cases", data=b"{oops", headers={**auth(KEY_RPO), "Content-Type": "application/json"})
    form = await client.post("/partners/cases", data={"text": "x"}, headers=auth(KEY_RPO))
    no_text = await client.post("/partners/cases", json={**CASE, "text": ""}, headers=auth(KEY_RPO))
    bad_kind = await client.post("/partners/cases", json={**CASE, "customer": {"name": "X", "identities": [{"kind": "fax", "value": "1"}]}},
                                 headers=auth(KEY_RPO))
    no_identity = await client.post("/partners/cases", json={**CASE, "customer": {"name": "X"}}, headers=auth(KEY_RPO))
    bad_base64 = await client.post("/partners/cases", json={**CASE, "attachments": [{"filename": "a.pdf", "data_base64": "***"}]},
                                   headers=auth(KEY_RPO))
    assert [r.status for r in (not_json, form, no_text, bad_kind, no_identity, bad_base64)] == [400, 400, 422, 422, 422, 422]
    assert "JSON" in (await not_json.json())["fields"]["body"]
    assert "text" in (await no_text.json())["fields"]
    assert "customer.identities.0.kind" in (await bad_kind.json())["fields"]
    assert "customer" in (await no_identity.json())["fields"]
    assert "attachments.0.data_base64" in (await bad_base64.json())["fields"]
    assert await rejected(client, "malformed") == 2.0 and await rejected(client, "invalid") == 4.0
    assert await registry_of(client).queue_length() == 0


async def test_attachments_are_stored_with_safe_names(client):
    pdf = b"%PDF-1.4 letter from the customer"
    case = {**CASE, "attachments": [{"filename": "..\\..\\pismo.pdf", "content_type": "application/pdf",
                                     "data_base64": base64.b64encode(pdf).decode()}]}
    resp = await client.post("/partners/cases", json=case, headers=auth(KEY_RPO))
    assert resp.status == 201
    events = await registry_of(client).read_events("t", "c")
    attachment = events[0].payload["complaint"]["attachments"][0]
    assert attachment["filename"] == "pismo.pdf" and attachment["size"] == len(pdf)
    assert attachment["sha256"] == hashlib.sha256(pdf).hexdigest()


async def test_oversized_body_and_too_many_failures(make_config, start_gateway):
    client = await start_gateway(make_config(channels=partner_channel(max_body_bytes=2048, auth_failures_per_minute=2)))
    big = await client.post("/partners/cases", json={**CASE, "text": "x" * 5000}, headers=auth(KEY_RPO))
    assert big.status == 413
    statuses = [(await client.post("/partners/cases", json=CASE, headers=auth("guess"))).status for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert await rejected(client, "too_large") == 1.0 and await rejected(client, "rate_limited") == 1.0


async def test_key_guesses_and_an_organisation_s_cases_count_once_across_workers(make_config, start_gateway, redis_url):
    channels = partner_channel(auth_failures_per_minute=2, rate_limit_per_minute=2, rate_limit_scope="registry")
    workers = [await start_gateway(make_config(backend="redis", channels=channels)) for _ in range(2)]
    guesses = [(await workers[i % 2].post("/partners/cases", json=CASE, headers=auth("guess"))).status for i in range(4)]
    assert guesses == [401, 401, 429, 429]  # by default each worker would allow two
    cases = [(await workers[i % 2].post("/partners/cases", json={**CASE, "reference": f"RPO/2026/{i:05d}"}, headers=auth(KEY_RPO))).status
             for i in range(3)]
    assert cases == [201, 201, 429]


async def test_duplicate_organisation_ids_fail_at_start(make_config, start_gateway):
    channels = partner_channel()
    channels["partners"]["organisations"][1]["id"] = "rpo"
    with pytest.raises(ConfigError, match="used twice"):
        await start_gateway(make_config(channels=channels))


@asynccontextmanager
async def callback_server(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """An organisation's callback endpoint on loopback; yields its URL."""
    app = web.Application()
    app.router.add_post("/hook", handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("/hook"))
    finally:
        await server.close()


def partner_with_callback(url: str) -> dict[str, Any]:
    channels = partner_channel(callback_backoff_initial_seconds=0.01)
    channels["partners"]["organisations"][0].update(callback_url=url, callback_secret=SECRET)
    return channels


async def test_callback_gets_the_signed_acknowledgement_after_a_retry(make_config, start_gateway):
    received: list[tuple[dict[str, str], bytes]] = []
    done = asyncio.Event()

    async def callback(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        if len(received) == 1:
            return web.Response(status=503)
        done.set()
        return web.Response(status=204)

    async with callback_server(callback) as url:
        client = await start_gateway(make_config(channels=partner_with_callback(url)))
        resp = await client.post("/partners/cases", json=CASE, headers=auth(KEY_RPO))
        number = (await resp.json())["registration_number"]
        await asyncio.wait_for(done.wait(), timeout=10)
        await client.server.app[ADAPTERS]["partners"].drain()
    assert len(received) == 2
    headers, body = received[1]
    stamp, mac = (part.split("=", 1)[1] for part in headers["X-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    payload = json.loads(body)
    assert payload["event"] == "registered" and payload["registration_number"] == number
    assert payload["reference"] == "RPO/2026/00123" and number in payload["acknowledgement"]["text"]
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_acknowledgements_total{channel="partners",result="sent"} 1.0' in metrics


async def test_a_refused_callback_is_given_up_by_the_partner_door_alone(make_config, start_gateway):
    # the door retries its callbacks itself (callback_* settings); the gateway's own retry of
    # acknowledgements must not repeat them on top
    received: list[bytes] = []

    async def callback(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=400)

    async with callback_server(callback) as url:
        client = await start_gateway(make_config(channels=partner_with_callback(url),
                                                 acknowledgements={"retry": {"first_delay_seconds": 0.01}}))
        assert (await client.post("/partners/cases", json=CASE, headers=auth(KEY_RPO))).status == 201
        await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="partners",result="failed"} 1.0'))
        await asyncio.sleep(0.2)  # many of the gateway's back-offs
    assert len(received) == 1
    assert not await has_metric(client, 'complaint_gateway_acknowledgements_total{channel="partners",result="retried"} 1.0')


# -- the monthly report -------------------------------------------------------------------
def _partner_inbound(org: str, reference: str, received: datetime, text: str) -> Inbound:
    return Inbound(channel="partners", message_id=f"{org}:{reference}", identities=[("email", f"{reference.lower()}@example.com")],
                   name="Customer", text=text, received_at=received,
                   submitted_by={"kind": "ombudsman", "organisation": org, "person": "Anna Nowak"},
                   meta={"partner": {"organisation": org, "reference": reference}})


async def _fill_registry(config_data: dict[str, Any]) -> Any:
    registry = build_registry(config_data["registry"], config_data["normalizer"])
    normalizer = Normalizer(NormalizerSettings.from_config(config_data["normalizer"]))
    await registry.open()
    utc = UTC
    for inbound in (
        _partner_inbound("rpo", "FEB-LAST", datetime(2026, 2, 28, 20, 0, tzinfo=utc), "Brak internetu u klienta od lutego."),
        _partner_inbound("rpo", "MAR-FIRST", datetime(2026, 2, 28, 21, 30, tzinfo=utc), "Klient skarży się na błędną fakturę."),
        _partner_inbound("uokik", "MAR-OTHER", datetime(2026, 3, 10, 9, 0, tzinfo=utc), "Nienaliczony rabat za marzec."),
        Inbound(channel="web", message_id="web-1", identities=[("phone", "+79161234567")], text="Нет связи в марте, прошу разобраться",
                received_at=datetime(2026, 3, 12, 9, 0, tzinfo=utc)),
        _partner_inbound("rpo", "MAR-SECOND", datetime(2026, 3, 20, 9, 0, tzinfo=utc), "Czuć gaz w klatce schodowej u klienta!"),
        _partner_inbound("rpo", "APR-FIRST", datetime(2026, 3, 31, 21, 10, tzinfo=utc), "Kwietniowa sprawa, zła taryfa."),
    ):
        await registry.submit(normalizer.normalize(inbound))
    return registry


async def test_report_lists_one_organisations_cases_of_one_month_with_states(tmp_path: Path, redis_url):
    data = base_config(tmp_path, channels=partner_channel())
    registry = await _fill_registry(data)
    try:
        march = [m for m in await registry.list_messages(limit=10) if (m.meta.get("partner") or {}).get("reference") == "MAR-FIRST"]
        await registry.apply_action(march[0].registration_number, "close", "operator-1")
        out = io.StringIO()
        count = await write_report(registry, out, (2026, 3), ZoneInfo("Europe/Moscow"), "rpo", page_size=2)
    finally:
        await registry.close()
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == 2
    assert [r["reference"] for r in rows] == ["MAR-FIRST", "MAR-SECOND"]
    assert rows[0]["received_at"] == "2026-03-01T00:30:00+03:00" and rows[0]["state"] == "closed"
    assert rows[1]["state"] == "open" and rows[1]["urgency"] == "immediate" and rows[1]["person"] == "Anna Nowak"
    assert rows[1]["kind"] == "new" and rows[1]["organisation"] == "rpo" and rows[1]["respond_by"].endswith("Z")


async def test_report_command_writes_csv(tmp_path: Path, redis_url):
    data = base_config(tmp_path, channels=partner_channel())
    registry = await _fill_registry(data)
    await registry.close()
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    output = tmp_path / "march.csv"
    gateway = str(Path(sys.executable).with_name("complaint-gateway"))
    done = await asyncio.to_thread(
        subprocess.run, [gateway, "--config", str(config_file), "partners", "report", "--month", "2026-03", "--output", str(output)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(output.open(encoding="utf-8")))
    assert sorted(r["reference"] for r in rows) == ["MAR-FIRST", "MAR-OTHER", "MAR-SECOND"]
    assert "3 case(s)" in done.stderr
    bad = await asyncio.to_thread(subprocess.run, [gateway, "--config", str(config_file), "partners", "report", "--month", "2026-13"],
                                capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "YYYY-MM" in bad.stderr


def test_new_key_prints_a_key_and_its_digest():
    gateway = str(Path(sys.executable).with_name("complaint-gateway"))
    done = subprocess.run([gateway, "partners", "new-key"], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout)
    assert len(result["key"]) >= 43 and result["key_sha256"] == hashlib.sha256(result["key"].encode()).hexdigest()
