"""The Twilio voice door end to end over real HTTP: requests signed with Twilio's own
algorithm, TwiML parsed as XML, recordings fetched from a fake Twilio API on loopback."""
from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from channels.phone.fakes.twilio_api import FakeTwilioApi, new_sid, post_signed, twilio_signature, wav_bytes
from gateway.app import TEXTS
from gateway.blobs import BlobStore
from gateway.inbound import Receipt
from normalizer.schema import Complaint
from tests.conftest import registry_of

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "voice-test-auth-token"
CALLER = "+48 22 123 45 67"
CALLER_E164 = "+48221234567"
TWILIO_NUMBER = "+48587654321"
VOICE = "/channels/phone/twilio/voice"


def voice_channel(**settings: Any) -> dict[str, Any]:
    return {"phone": {"adapter": "twilio_voice", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, **settings}}


class Call:
    """One phone call as Twilio makes it: signed form POSTs that follow the TwiML."""

    def __init__(self, client: Any, call_sid: str | None = None, caller: str = CALLER) -> None:
        self.client = client
        self.call_sid = call_sid or new_sid("CA")
        self.caller = caller

    def params(self, **extra: str) -> dict[str, str]:
        return {"AccountSid": ACCOUNT_SID, "CallSid": self.call_sid, "From": self.caller, "To": TWILIO_NUMBER,
                "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01", **extra}

    async def post(self, url: str, params: dict[str, str], token: str = AUTH_TOKEN,
                   signed_url: str | None = None) -> tuple[int, str]:
        full = url if url.startswith("http") else str(self.client.make_url("")).rstrip("/") + url
        return await post_signed(self.client.session, full, params, token, signed_url)

    async def twiml(self, url: str, **extra: str) -> ET.Element:
        status, body = await self.post(url, self.params(**extra))
        assert status == 200, body
        root = ET.fromstring(body)
        assert root.tag == "Response"
        return root


def digit_by_digit(number: str) -> str:
    """How the number must sound: one character at a time, a pause between groups."""
    return ". ".join(", ".join(group) for group in number.split("-"))


def ivr_text(client: Any, event: Any) -> str:
    """The spoken acknowledgement the gateway's texts give for a queued event."""
    receipt = Receipt(event.event, event.registration_number, event.customer_id, event.complaint_id)
    return client.server.app[TEXTS].render(Complaint.from_dict(event.payload["complaint"]), receipt, door="ivr")


def gather_of(root: ET.Element) -> ET.Element:
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root, encoding="unicode")
    return gather


def spoken(root: ET.Element) -> list[tuple[str | None, str]]:
    return [(say.get("language"), say.text or "") for say in root.iter("Say")]


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> str:
    return request.param


async def walk_to_record(call: Call, *, digit_language: str = "3", account: str = "12345678",
                         urgency: str = "2") -> ET.Element:
    """incoming -> language -> account -> urgency; returns the TwiML with <Record>."""
    root = await call.twiml(VOICE)
    root = await call.twiml(gather_of(root).get("action"), Digits=digit_language)
    root = await call.twiml(gather_of(root).get("action"), Digits=account + "#" if account else "#")
    root = await call.twiml(gather_of(root).get("action"), Digits=urgency)
    return root


async def test_whole_call_gives_one_complaint_and_reads_the_number_back(make_config, start_gateway, backend):
    client = await start_gateway(make_config(backend=backend, channels=voice_channel()))
    call = Call(client)

    root = await call.twiml(VOICE)
    gather = gather_of(root)
    assert gather.get("input") == "dtmf speech" and gather.get("numDigits") == "1"
    assert gather.get("actionOnEmptyResult") == "true"
    languages = [lang for lang, _ in spoken(gather)]
    assert languages == ["ru-RU", "ru-RU", "pl-PL", "en-US"]  # greeting, then each option in its own language
    assert "3" in spoken(gather)[3][1]

    root = await call.twiml(gather.get("action"), Digits="3")
    account_gather = gather_of(root)
    assert account_gather.get("input") == "dtmf" and account_gather.get("finishOnKey") == "#"
    assert "lang=en" in account_gather.get("action")

    root = await call.twiml(account_gather.get("action"), Digits="12345678#")
    urgency_gather = gather_of(root)
    assert "account=12345678" in urgency_gather.get("action")

    root = await call.twiml(urgency_gather.get("action"), Digits="2")
    record = root.find("Record")
    assert record is not None
    assert record.get("transcribe") == "true" and record.get("maxLength") == "120"
    assert record.get("recordingStatusCallbackEvent") == "completed"

    recording_sid = new_sid("RE")
    recording_url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid}"
    recorded = await call.twiml(record.get("action"), RecordingSid=recording_sid, RecordingUrl=recording_url,
                                RecordingDuration="17", Digits="#")
    registry = registry_of(client)
    events = await registry.read_events("test", "c1", count=10)
    assert [e.event for e in events] == ["new"]
    number = events[0].registration_number
    complaint = events[0].payload["complaint"]
    assert {"kind": "phone", "value": CALLER_E164} in complaint["customer"]["identities"]
    assert {"kind": "account", "value": "12345678"} in complaint["customer"]["identities"]
    assert complaint["language"] == "en" and complaint["urgency"] == "normal"
    assert complaint["channel_message_id"] == f"call:{call.call_sid}"
    assert complaint["meta"]["recording_url"] == recording_url

    says = spoken(recorded)
    assert says[0][0] == "en-US"
    assert digit_by_digit(number) in says[0][1] and says[0][1] == ivr_text(client, events[0])
    assert recorded.find("Hangup") is not None

    status, _ = await call.post(record.get("transcribeCallback"), call.params(
        TranscriptionSid=new_sid("TR"), TranscriptionStatus="completed", RecordingSid=recording_sid,
        RecordingUrl=recording_url, TranscriptionText="The internet has been down for three days."))
    assert status == 204
    status, _ = await call.post(record.get("recordingStatusCallback"), {
        "AccountSid": ACCOUNT_SID, "CallSid": call.call_sid, "RecordingSid": recording_sid, "RecordingUrl": recording_url,
        "RecordingStatus": "completed", "RecordingDuration": "17", "RecordingChannels": "1", "RecordingSource": "RecordVerb"})
    assert status == 204

    events = await registry.read_events("test", "c1", count=10)
    assert [e.event for e in events] == ["follow_up"]
    registration = await registry.get_registration(number)
    kinds = [m["kind"] for m in registration["messages"]]
    assert kinds == ["new", "follow_up"]
    assert registration["messages"][1]["complaint"]["text"] == "The internet has been down for three days."


async def test_forged_or_missing_signature_gets_403_and_a_metric(make_config, start_gateway):
    client = await start_gateway(make_config(channels=voice_channel()))
    call = Call(client)
    status, _ = await call.post(VOICE, call.params(), token="not-the-auth-token")
    assert status == 403
    tampered = call.params()
    status, _ = await call.post(VOICE, tampered, signed_url=str(client.make_url("/other")))
    assert status == 403
    resp = await client.post(VOICE, data=call.params())  # no X-Twilio-Signature at all
    assert resp.status == 403
    status, _ = await call.post(VOICE, call.params(AccountSid="AC" + "ff" * 16))  # signed, but another account
    assert status == 403
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="phone",reason="forged"} 3.0' in metrics
    assert 'complaint_gateway_rejected_total{channel="phone",reason="wrong_account"} 1.0' in metrics
    assert await registry_of(client).queue_length() == 0


async def test_replayed_record_action_gives_the_same_number_and_no_duplicate(make_config, start_gateway, backend):
    client = await start_gateway(make_config(backend=backend, channels=voice_channel()))
    call = Call(client)
    record = (await walk_to_record(call)).find("Record")
    recording = {"RecordingSid": new_sid("RE"), "RecordingUrl": "https://api.twilio.com/x", "RecordingDuration": "9"}
    first = spoken(await call.twiml(record.get("action"), **recording))
    again = spoken(await call.twiml(record.get("action"), **recording))
    assert first == again
    registry = registry_of(client)
    assert await registry.queue_length() == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_duplicate_total{channel="phone"} 1.0' in metrics


async def test_call_state_survives_a_restart_and_moves_between_processes(make_config, start_gateway, redis_url):
    config = make_config(backend="redis", channels=voice_channel())
    first, second = await start_gateway(config), await start_gateway(config)
    call = Call(first)
    root = await call.twiml(VOICE)
    call.client = second  # the next webhook reaches another gateway process
    root = await call.twiml(gather_of(root).get("action"), Digits="2")
    await first.close()  # the first process goes away mid-call
    root = await call.twiml(gather_of(root).get("action"), Digits="55550001#")
    third = await start_gateway(config)  # ... and a fresh one takes over
    call.client = third
    root = await call.twiml(gather_of(root).get("action"), Digits="1")
    record = root.find("Record")
    recorded = await call.twiml(record.get("action"), RecordingSid=new_sid("RE"), RecordingUrl="https://api.twilio.com/r",
                                RecordingDuration="30")
    events = await registry_of(third).read_events("test", "c1")
    assert spoken(recorded)[0] == ("pl-PL", ivr_text(third, events[0]))
    assert digit_by_digit(events[0].registration_number) in spoken(recorded)[0][1]
    complaint = events[0].payload["complaint"]
    assert complaint["language"] == "pl" and complaint["urgency"] == "immediate"
    assert {"kind": "account", "value": "55550001"} in complaint["customer"]["identities"]


async def test_urgent_option_by_speech_warns_and_marks_immediate(make_config, start_gateway):
    client = await start_gateway(make_config(channels=voice_channel(ask_account=False)))
    call = Call(client)
    root = await call.twiml(VOICE)
    root = await call.twiml(gather_of(root).get("action"), SpeechResult="русский", Confidence="0.9")
    gather = gather_of(root)
    assert gather.get("language") == "ru-RU" and "urgent" not in gather.get("action")
    root = await call.twiml(gather.get("action"), SpeechResult="Авария, пахнет газом")
    says = [text for _, text in spoken(root)]
    assert "112" in says[0]
    record = root.find("Record")
    assert record.get("transcribe") == "false"  # Twilio's transcription speaks English only
    assert "urgent=1" in record.get("action")
    await call.twiml(record.get("action"), RecordingSid=new_sid("RE"), RecordingUrl="https://api.twilio.com/r")
    events = await registry_of(client).read_events("test", "c1")
    assert events[0].payload["complaint"]["urgency"] == "immediate"
    assert events[0].payload["complaint"]["meta"]["urgency_rule"] == "door"


async def test_no_gas_supply_is_not_an_emergency(make_config, start_gateway):
    client = await start_gateway(make_config(channels=voice_channel(ask_account=False, languages=["ru"])))
    call = Call(client)
    root = await call.twiml(VOICE)  # one language: no language menu
    assert spoken(root)[0] == ("ru-RU", "Здравствуйте! Вы позвонили в службу приёма обращений.")
    root = await call.twiml(gather_of(root).get("action"), SpeechResult="нет газа третий день")
    assert "urgent=0" in root.find("Record").get("action")


async def test_menu_asks_again_then_falls_back_to_the_default_language(make_config, start_gateway):
    client = await start_gateway(make_config(channels=voice_channel(max_attempts=2, default_language="pl")))
    call = Call(client)
    root = await call.twiml(VOICE)
    root = await call.twiml(gather_of(root).get("action"), Digits="9")
    assert spoken(root)[0] == ("pl-PL", "Przepraszamy, nie zrozumieliśmy.")
    gather = gather_of(root)
    assert "try=2" in gather.get("action")
    root = await call.twiml(gather.get("action"))  # no input again: the default language
    assert "lang=pl" in gather_of(root).get("action") and "try" not in gather_of(root).get("action")


async def test_empty_recording_is_asked_again_then_registered_without_a_message(make_config, start_gateway):
    client = await start_gateway(make_config(channels=voice_channel(max_attempts=2)))
    call = Call(client)
    root = await walk_to_record(call, digit_language="1", account="", urgency="2")
    redirect = root.find("Redirect")
    assert "/record?" in redirect.text and "try=2" in redirect.text
    root = await call.twiml(redirect.text)
    assert root.find("Record") is not None
    last = root.find("Redirect").text
    assert "/recorded?" in last
    recorded = await call.twiml(last)
    event = (await registry_of(client).read_events("test", "c1"))[0]
    assert spoken(recorded)[0] == ("ru-RU", ivr_text(client, event))
    complaint = event.payload["complaint"]
    assert complaint["text"] == call.call_sid and "recording_sid" not in complaint["meta"]
    assert [i["kind"] for i in complaint["customer"]["identities"]] == ["phone"]


async def test_withheld_number_keeps_transcription_with_its_call(make_config, start_gateway):
    client = await start_gateway(make_config(channels=voice_channel(ask_account=False, ask_urgency=False,
                                                                    transcribe_languages=["ru", "pl", "en"])))
    registry = registry_of(client)
    numbers = []
    for _ in range(2):  # two anonymous callers must not become one customer
        call = Call(client, caller="+266696687")
        root = await call.twiml(VOICE)
        record = (await call.twiml(gather_of(root).get("action"), Digits="1")).find("Record")
        recording_sid = new_sid("RE")
        await call.twiml(record.get("action"), RecordingSid=recording_sid, RecordingUrl="https://api.twilio.com/r")
        status, _ = await call.post(record.get("transcribeCallback"), call.params(
            TranscriptionSid=new_sid("TR"), TranscriptionStatus="completed", RecordingSid=recording_sid,
            TranscriptionText="Счёт за газ выставлен дважды."))
        assert status == 204
        events = await registry.read_events("test", "c1")
        assert [e.event for e in events] == ["new", "follow_up"]
        assert events[0].registration_number == events[1].registration_number
        assert [i["kind"] for i in events[0].payload["complaint"]["customer"]["identities"]] == ["call"]
        await registry.ack_events("test", [e.id for e in events])
        numbers.append(events[0].customer_id)
    assert numbers[0] != numbers[1]


async def test_failed_transcription_adds_nothing(make_config, start_gateway):
    client = await start_gateway(make_config(channels=voice_channel()))
    call = Call(client)
    record = (await walk_to_record(call)).find("Record")
    recording_sid = new_sid("RE")
    await call.twiml(record.get("action"), RecordingSid=recording_sid, RecordingUrl="https://api.twilio.com/r")
    status, _ = await call.post(record.get("transcribeCallback"), call.params(
        TranscriptionSid=new_sid("TR"), TranscriptionStatus="failed", RecordingSid=recording_sid, TranscriptionText=""))
    assert status == 204
    assert await registry_of(client).queue_length() == 1


async def test_recording_is_downloaded_into_the_blob_store(make_config, start_gateway, tmp_path):
    api = FakeTwilioApi(ACCOUNT_SID, AUTH_TOKEN)
    base_url = await api.start()
    try:
        client = await start_gateway(make_config(channels=voice_channel(download_recordings=True, api_base_url=base_url)))
        call = Call(client)
        api.add_call(call.call_sid, CALLER, TWILIO_NUMBER)
        record = (await walk_to_record(call)).find("Record")
        recording_sid = new_sid("RE")
        audio = wav_bytes(0.5)
        recording_url = api.add_recording(recording_sid, audio)
        # the status callback may come before the <Record action>: it looks the call up
        status, _ = await call.post(record.get("recordingStatusCallback"), {
            "AccountSid": ACCOUNT_SID, "CallSid": call.call_sid, "RecordingSid": recording_sid,
            "RecordingUrl": recording_url, "RecordingStatus": "completed", "RecordingDuration": "1"})
        assert status == 204
        recorded = await call.twiml(record.get("action"), RecordingSid=recording_sid, RecordingUrl=recording_url,
                                    RecordingDuration="1")
        events = await registry_of(client).read_events("test", "c1")
        assert [e.event for e in events] == ["new", "follow_up"]
        number = events[0].registration_number
        assert digit_by_digit(number) in spoken(recorded)[0][1]
        assert {"kind": "phone", "value": CALLER_E164} in events[0].payload["complaint"]["customer"]["identities"]
        attachment = events[1].payload["complaint"]["attachments"][0]
        assert attachment["filename"] == f"{recording_sid}.wav" and attachment["content_type"] == "audio/wav"
        assert attachment["size"] == len(audio)
        assert BlobStore(tmp_path / "blobs").get_sync(attachment["sha256"]) == audio
        assert ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call.call_sid}.json") in api.requests
        assert ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid}.wav") in api.requests
    finally:
        await api.close()


async def test_signature_checked_on_the_public_url_behind_a_proxy(make_config, start_gateway):
    public = "https://complaints.example.com/gw"
    client = await start_gateway(make_config(channels=voice_channel(), http={"public_base_url": public}))
    call = Call(client)
    status, body = await call.post(VOICE, call.params(), signed_url=public + VOICE)
    assert status == 200
    action = gather_of(ET.fromstring(body)).get("action")
    assert action.startswith(public + VOICE + "/language")
    local = action.replace(public, "")
    status, _ = await call.post(local, call.params(Digits="1"), signed_url=action)
    assert status == 200
    status, _ = await call.post(VOICE, call.params())  # signed for the local address: not what Twilio signs
    assert status == 403


async def test_malformed_requests_get_400_and_a_metric(make_config, start_gateway):
    client = await start_gateway(make_config(channels=voice_channel()))
    call = Call(client)
    status, _ = await call.post(VOICE + "/recorded?lang=xx", call.params())  # a state no TwiML of ours produces
    assert status == 400
    params = call.params()
    del params["CallSid"]
    status, _ = await call.post(VOICE + "/recorded?lang=ru", params)
    assert status == 400
    url = str(client.make_url(VOICE))
    resp = await client.session.post(url, data=b"From=%ff%fe", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, {})})
    assert resp.status == 400
    metrics = await (await client.get("/metrics")).text()
    assert 'complaint_gateway_rejected_total{channel="phone",reason="malformed"} 3.0' in metrics
    assert await registry_of(client).queue_length() == 0


async def test_several_instances_get_their_own_paths(make_config, start_gateway):
    channels = {**voice_channel(), "phone_pl": {"adapter": "twilio_voice", "account_sid": ACCOUNT_SID,
                                                "auth_token": AUTH_TOKEN, "languages": ["pl"]}}
    client = await start_gateway(make_config(channels=channels))
    call = Call(client)
    first = await call.twiml(VOICE)
    second = await call.twiml(VOICE + "/phone_pl")
    assert "/language" in gather_of(first).get("action")
    assert gather_of(second).get("action").startswith(VOICE + "/phone_pl/account")


async def test_concurrent_callbacks_of_one_call_register_once(make_config, start_gateway, redis_url):
    config = make_config(backend="redis", channels=voice_channel())
    first, second = await start_gateway(config), await start_gateway(config)
    call = Call(first)
    record = (await walk_to_record(call)).find("Record")
    recording_sid = new_sid("RE")
    other = Call(second, call.call_sid)
    results = await asyncio.gather(
        call.twiml(record.get("action"), RecordingSid=recording_sid, RecordingUrl="https://api.twilio.com/r"),
        other.post(record.get("transcribeCallback"), other.params(
            TranscriptionSid=new_sid("TR"), TranscriptionStatus="completed", RecordingSid=recording_sid,
            TranscriptionText="No signal at home since Monday.")))
    assert results[1][0] == 204
    registry = registry_of(first)
    events = await registry.read_events("test", "c1")
    assert sorted(e.event for e in events) == ["follow_up", "new"]
    assert len({e.registration_number for e in events}) == 1
