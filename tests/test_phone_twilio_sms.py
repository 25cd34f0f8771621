"""The Twilio SMS/MMS door end to end: signed webhooks, TwiML <Message> replies parsed as
XML, MMS media and operator replies through a fake Twilio API on loopback."""
from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from channels.phone.fakes.twilio_api import FakeTwilioApi, new_sid, post_signed
from gateway.app import ADAPTERS, TEXTS
from gateway.blobs import BlobStore
from gateway.inbound import Receipt
from normalizer.schema import Complaint
from tests.conftest import registry_of

ACCOUNT_SID = "AC" + "b2" * 16
AUTH_TOKEN = "sms-test-auth-token"
SENDER = "+7 916 123-45-67"
SENDER_E164 = "+79161234567"
TWILIO_NUMBER = "+74951234567"
SMS = "/channels/phone/twilio/sms"


def sms_channel(**settings: Any) -> dict[str, Any]:
    return {"sms": {"adapter": "twilio_sms", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, **settings}}


def inbound_sms(body: str, sender: str = SENDER, **extra: str) -> dict[str, str]:
    sid = new_sid("SM")
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT_SID, "From": sender, "To": TWILIO_NUMBER,
            "Body": body, "NumMedia": "0", "NumSegments": "1", "ApiVersion": "2010-04-01", **extra}


async def send(client: Any, params: dict[str, str], token: str = AUTH_TOKEN) -> tuple[int, ET.Element | None]:
    status, body = await post_signed(client.session, str(client.make_url(SMS)), params, token)
    return status, ET.fromstring(body) if status == 200 else None


def reply_of(root: ET.Element | None) -> str | None:
    assert root is not None and root.tag == "Response"
    message = root.find("Message")
    return None if message is None else message.text


def acknowledgement(client: Any, event: Any) -> str:
    """The SMS acknowledgement the gateway's texts give for a queued event."""
    receipt = Receipt(event.event, event.registration_number, event.customer_id, event.complaint_id)
    return client.server.app[TEXTS].render(Complaint.from_dict(event.payload["complaint"]), receipt, door="sms")


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> str:
    return request.param


async def test_sms_becomes_a_complaint_and_the_reply_carries_the_number(make_config, start_gateway, backend):
    client = await start_gateway(make_config(backend=backend, channels=sms_channel()))
    status, root = await send(client, inbound_sms("Нет интернета третий день, роутер мигает красным."))
    assert status == 200
    events = await registry_of(client).read_events("test", "c1")
    assert [e.event for e in events] == ["new"]
    number = events[0].registration_number
    reply = reply_of(root)
    assert reply is not None and number in reply and reply == acknowledgement(client, events[0])
    assert "зарегистр" in reply  # in the customer's language
    complaint = events[0].payload["complaint"]
    assert complaint["customer"]["identities"] == [{"kind": "phone", "value": SENDER_E164}]
    assert complaint["reply_to"] == {"kind": "phone", "value": SENDER_E164}
    assert complaint["text"].startswith("Нет интернета")


async def test_redelivered_message_sid_adds_nothing_and_answers_the_same(make_config, start_gateway, backend):
    client = await start_gateway(make_config(backend=backend, channels=sms_channel()))
    params = inbound_sms("Brak sygnału od poniedziałku, proszę o kontakt.")
    first, again = await send(client, params), await send(client, params)
    assert reply_of(first[1]) == reply_of(again[1]) and "reklamacj" in (reply_of(first[1]) or "").lower()
    assert await registry_of(client).queue_length() == 1


async def test_parts_of_a_long_message_make_one_complaint(make_config, start_gateway, redis_url):
    config = make_config(backend="redis", channels=sms_channel())
    first, second = await start_gateway(config), await start_gateway(config)
    parts = [inbound_sms("Part one of a long complaint about the bill for March, which is twice"),
             inbound_sms("as high as usual although nobody lived in the flat that month.")]
    # the carrier delivered the segments separately, at the same moment, to two gateway processes
    results = await asyncio.gather(send(first, parts[0]), send(second, parts[1]))
    replies = [reply_of(root) for _, root in results]
    assert sorted(r is None for r in replies) == [False, True]  # one acknowledgement, one silent part
    events = await registry_of(first).read_events("test", "c1")
    assert sorted(e.event for e in events) == ["follow_up", "new"]
    assert len({e.registration_number for e in events}) == 1
    texts = {e.payload["complaint"]["text"] for e in events}
    assert texts == {p["Body"] for p in parts}  # no part lost


async def test_merge_window_zero_keeps_messages_apart(make_config, start_gateway):
    client = await start_gateway(make_config(channels=sms_channel(merge_window_seconds=0)))
    await send(client, inbound_sms("The street light in front of house 12 has been broken for a week."))
    _, root = await send(client, inbound_sms("Also the water pressure on the third floor is very low in the mornings."))
    assert reply_of(root) is not None
    events = await registry_of(client).read_events("test", "c1")
    assert [e.event for e in events] == ["new", "new"]


async def test_quoted_number_from_the_same_customer_is_a_follow_up(make_config, start_gateway):
    client = await start_gateway(make_config(channels=sms_channel(merge_window_seconds=0)))
    await send(client, inbound_sms("Счёт за февраль выставлен дважды, прошу пересчитать."))
    number = (await registry_of(client).read_events("test", "c1"))[0].registration_number
    _, root = await send(client, inbound_sms(f"По обращению {number}: копию квитанции отправил почтой."))
    follow_up = (await registry_of(client).read_events("test", "c1"))[-1]
    assert follow_up.event == "follow_up" and follow_up.registration_number == number
    assert reply_of(root) == acknowledgement(client, follow_up) and number in (reply_of(root) or "")
    _, stranger = await send(client, inbound_sms(f"{number} это моя жалоба", sender="+79990001122"))
    assert number not in (reply_of(stranger) or "")


async def test_mms_media_are_stored_and_unfetchable_ones_kept_as_links(make_config, start_gateway, tmp_path):
    api = FakeTwilioApi(ACCOUNT_SID, AUTH_TOKEN)
    base_url = await api.start()
    try:
        client = await start_gateway(make_config(channels=sms_channel(api_base_url=base_url, max_media_bytes=4096)))
        params = inbound_sms("Фото счётчика и квитанции")
        photo = b"\xff\xd8\xff\xe0 fake jpeg " * 10
        big = b"%PDF-1.4 " + b"x" * 10_000
        params.update(NumMedia="3", MediaUrl0=api.add_media(params["MessageSid"], photo, "image/jpeg"),
                      MediaContentType0="image/jpeg",
                      MediaUrl1=api.add_media(params["MessageSid"], big, "application/pdf"),
                      MediaContentType1="application/pdf",
                      MediaUrl2="https://evil.example.com/steal", MediaContentType2="image/png")
        status, root = await send(client, params)
        assert status == 200 and reply_of(root)
        complaint = (await registry_of(client).read_events("test", "c1"))[0].payload["complaint"]
        assert [(a["content_type"], a["size"]) for a in complaint["attachments"]] == [("image/jpeg", len(photo))]
        assert complaint["attachments"][0]["filename"].endswith(".jpg")
        assert BlobStore(tmp_path / "blobs").get_sync(complaint["attachments"][0]["sha256"]) == photo
        assert params["MediaUrl1"] in complaint["text"] and params["MediaUrl2"] in complaint["text"]
        assert [m["stored"] for m in complaint["meta"]["media"]] == [True, False, False]
        assert not any("evil" in path for _, path in api.requests)
    finally:
        await api.close()


async def test_short_code_sender_is_kept_but_never_answered(make_config, start_gateway):
    client = await start_gateway(make_config(channels=sms_channel()))
    status, root = await send(client, inbound_sms("Your balance is 10.00", sender="MTS-INFO"))
    assert status == 200 and reply_of(root) is None
    registry = registry_of(client)
    assert await registry.queue_length() == 0
    stored = await registry.list_messages(limit=5)
    assert len(stored) == 1 and stored[0].auto_submitted


async def test_forged_signature_gets_403_and_a_metric(make_config, start_gateway):
    client = await start_gateway(make_config(channels=sms_channel()))
    status, _ = await send(client, inbound_sms("Поддельное сообщение"), token="wrong-token")
    assert status == 403
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="sms",reason="forged"} 1.0' in metrics
    assert await registry_of(client).queue_length() == 0


async def test_malformed_and_oversized_bodies_are_refused(make_config, start_gateway):
    client = await start_gateway(make_config(channels=sms_channel(max_body_bytes=2048)))
    params = inbound_sms("text")
    del params["MessageSid"], params["SmsSid"]
    status, _ = await send(client, params)
    assert status == 400
    status, _ = await send(client, inbound_sms("x" * 4000))
    assert status == 413
    metrics = await (await client.get("/metrics")).text()
    assert 'reason="malformed"} 1.0' in metrics and 'reason="too_large"} 1.0' in metrics


async def test_a_forged_media_count_is_refused_not_looped_over(make_config, start_gateway):
    client = await start_gateway(make_config(channels=sms_channel()))
    for count in ("11", "99999999999"):  # Twilio sends at most 10; a huge count once exhausted the memory
        status, _ = await send(client, inbound_sms("Нет связи", NumMedia=count))
        assert status == 400
    status, _ = await send(client, inbound_sms("Нет связи", NumMedia="0"))
    assert status == 200


async def test_operator_reply_goes_through_the_twilio_rest_api(make_config, start_gateway):
    api = FakeTwilioApi(ACCOUNT_SID, AUTH_TOKEN)
    base_url = await api.start()
    try:
        client = await start_gateway(make_config(channels=sms_channel(api_base_url=base_url)))
        await send(client, inbound_sms("Интернет пропадает каждый вечер после 20:00."))
        event = (await registry_of(client).read_events("test", "c1"))[0]
        complaint = Complaint.from_dict(event.payload["complaint"])
        adapter = client.server.app[ADAPTERS]["sms"]
        await adapter.send_reply(complaint, "Мастер придёт завтра с 10 до 12.")
        assert api.sent_messages == [{"To": SENDER_E164, "From": TWILIO_NUMBER, "Body": "Мастер придёт завтра с 10 до 12."}]
    finally:
        await api.close()
