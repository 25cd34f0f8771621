"""The generic IVR webhook over real HTTP: HMAC-SHA256 over "timestamp.body", the replay
window, idempotent call ids and the number returned for the IVR to speak."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from gateway.app import TEXTS
from gateway.inbound import Receipt
from normalizer.schema import Complaint
from tests.conftest import registry_of

SECRET = "ivr-shared-secret-0123456789"
IVR = "/channels/phone/ivr"


def ivr_channel(**settings: Any) -> dict[str, Any]:
    return {"ivr": {"adapter": "ivr_webhook", "secret": SECRET, **settings}}


def sign(body: bytes, timestamp: int, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


async def post(client: Any, payload: Any, *, secret: str = SECRET, skew: int = 0, raw: bytes | None = None,
               signature: str | None = None) -> tuple[int, dict[str, Any]]:
    body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    timestamp = int(time.time()) + skew
    headers = {"Content-Type": "application/json", "X-Timestamp": str(timestamp),
               "X-Signature": signature if signature is not None else sign(body, timestamp, secret)}
    resp = await client.post(IVR, data=body, headers=headers)
    return resp.status, await resp.json()


CALL = {"call_id": "1700000000.42", "caller": "8 (916) 765-43-21", "called": "+74950000000", "language": "ru",
        "dtmf": {"language": "1", "account": "40012345", "urgent": "2"},
        "transcript": "Пропало электричество во всём подъезде.",
        "recording_url": "https://pbx.example.com/recordings/1700000000.42.wav", "recording_seconds": 31}


@pytest.fixture(params=["sqlite", "redis"])
async def client(request, make_config, start_gateway, redis_url):
    return await start_gateway(make_config(backend=request.param, channels=ivr_channel()))


async def test_signed_call_is_registered_and_the_number_returned_to_speak(client):
    status, body = await post(client, CALL)
    assert status == 201 and body["status"] == "new"
    number = body["registration_number"]
    assert body["digits"] == "".join(ch for ch in number if ch.isalnum())
    assert body["speech"]["language"] == "ru-RU"
    assert ". ".join(", ".join(group) for group in number.split("-")) in body["speech"]["text"]  # digit by digit
    events = await registry_of(client).read_events("test", "c1")
    receipt = Receipt("new", number, events[0].customer_id, events[0].complaint_id)
    complaint_record = Complaint.from_dict(events[0].payload["complaint"])
    assert body["speech"]["text"] == client.server.app[TEXTS].render(complaint_record, receipt, door="ivr")
    complaint = events[0].payload["complaint"]
    assert complaint["registration_number"] == number
    assert {"kind": "phone", "value": "+79167654321"} in complaint["customer"]["identities"]
    assert {"kind": "account", "value": "40012345"} in complaint["customer"]["identities"]
    assert complaint["text"] == CALL["transcript"] and complaint["urgency"] != "immediate"  # the caller pressed 2
    assert complaint["meta"]["recording_url"] == CALL["recording_url"]


async def test_repeated_call_id_returns_the_same_number(client):
    first = await post(client, CALL)
    again = await post(client, CALL)
    assert again[0] == 200 and again[1]["status"] == "duplicate"
    assert again[1]["registration_number"] == first[1]["registration_number"]
    assert await registry_of(client).queue_length() == 1


async def test_transcript_sent_later_joins_the_same_complaint(client):
    call = {k: v for k, v in CALL.items() if k != "transcript"} | {"call_id": "pbx-77", "caller": "anonymous",
                                                                   "dtmf": {"urgent": "1"}}
    status, first = await post(client, call)
    assert status == 201
    status, later = await post(client, {**call, "event": "transcript", "transcript": "Искрит розетка в коридоре."})
    assert status == 200 and later["registration_number"] == first["registration_number"]
    events = await registry_of(client).read_events("test", "c1")
    assert [e.event for e in events] == ["new", "follow_up"]
    assert events[0].payload["complaint"]["urgency"] == "immediate"
    assert events[0].payload["complaint"]["text"] == "pbx-77"
    assert events[1].payload["complaint"]["text"] == "Искрит розетка в коридоре."


async def test_bad_signature_gets_403_and_a_metric(client):
    assert (await post(client, CALL, secret="another-secret-of-length"))[0] == 403
    assert (await post(client, CALL, signature=""))[0] == 403
    body = json.dumps(CALL).encode()
    timestamp = int(time.time())
    resp = await client.post(IVR, data=body.replace(b"42", b"43"), headers={
        "X-Timestamp": str(timestamp), "X-Signature": sign(body, timestamp)})  # body changed after signing
    assert resp.status == 403
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="ivr",reason="forged"} 3.0' in metrics
    assert await registry_of(client).queue_length() == 0


async def test_stale_and_future_timestamps_are_refused(client):
    # 5 s past the 300 s window each way: the header is whole seconds, and a slow run must not
    # carry a timestamp 301 s ahead back inside the window
    assert (await post(client, CALL, skew=-305))[0] == 403
    assert (await post(client, CALL, skew=+305))[0] == 403
    assert (await post(client, CALL, skew=-120))[0] == 201  # inside the window
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="ivr",reason="stale"} 2.0' in metrics


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", json.dumps({"caller": "+74951112233"}).encode(),
                                 json.dumps({**CALL, "urgent": "yes"}).encode(),
                                 json.dumps({**CALL, "recording_url": "file:///etc/passwd"}).encode(),
                                 json.dumps({**CALL, "event": "transcript", "transcript": ""}).encode()])
async def test_malformed_bodies_get_400_and_a_metric(make_config, start_gateway, raw):
    client = await start_gateway(make_config(channels=ivr_channel()))
    status, body = await post(client, None, raw=raw)
    assert status == 400 and body["error"]
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="ivr",reason="malformed"} 1.0' in metrics


async def test_previous_secret_still_accepted_while_rotating(make_config, start_gateway):
    client = await start_gateway(make_config(channels=ivr_channel(secret="the-new-secret-0123456789",
                                                                  previous_secret=SECRET)))
    assert (await post(client, CALL))[0] == 201
    assert (await post(client, {**CALL, "call_id": "x-2"}, secret="the-new-secret-0123456789"))[0] == 201
