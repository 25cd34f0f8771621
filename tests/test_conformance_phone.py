"""The phone doors pass the adapter conformance suite: Twilio SMS/MMS and voice with
requests signed as Twilio signs them (MMS media from the fake Twilio API on loopback), and
the generic IVR webhook with HMAC-signed JSON."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp.test_utils import TestClient

from channels.phone.fakes.twilio_api import FakeTwilioApi, twilio_signature
from gateway.acknowledgements import spoken_number
from gateway.testing.conformance import Delivery, Expect, PushAdapterConformance, wait_for
from gateway.testing.plugin import registry_of

#: The address Twilio is configured to call; fixed, so that signatures do not depend on the
#: test server's random port (the adapters check the signature against this base URL).
PUBLIC_BASE_URL = "https://complaints.example.com"
TWILIO_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
SMS_PATH = "/channels/phone/twilio/sms"
VOICE_PATH = "/channels/phone/twilio/voice"
IVR_PATH = "/channels/phone/ivr"


def twilio_delivery(name: str, path: str, params: dict[str, str], auth_token: str, expect: Expect | None = None,
                    expect_status: int = 200) -> Delivery:
    """A form POST as Twilio sends it, signed for the public URL of ``path``."""
    headers = {**TWILIO_HEADERS, "I-Twilio-Idempotency-Token": hashlib.sha256(name.encode()).hexdigest()[:36],
               "X-Twilio-Signature": twilio_signature(auth_token, PUBLIC_BASE_URL + path, params)}
    return Delivery(name, path, urlencode(params).encode("ascii"), headers, expect=expect, expect_status=expect_status)


def forged_twilio(delivery: Delivery) -> Delivery:
    """The same request signed with a token that is not the account's."""
    params = dict(parse_qsl(delivery.body.decode("ascii"), keep_blank_values=True))
    signature = twilio_signature("a-guessed-auth-token", PUBLIC_BASE_URL + delivery.path, params)
    return Delivery("forged", delivery.path, delivery.body, {**delivery.headers, "X-Twilio-Signature": signature})


def broken_form(path: str, auth_token: str) -> Delivery:
    """A form body that is not UTF-8: no parameters can be read from it (nor signed)."""
    headers = {**TWILIO_HEADERS, "X-Twilio-Signature": twilio_signature(auth_token, PUBLIC_BASE_URL + path, {})}
    return Delivery("not utf-8", path, b"AccountSid=AC%FF%FE&Body=%C3%28%A0%A1", headers)


# -- Twilio SMS and MMS ------------------------------------------------------------------
SMS_ACCOUNT = "AC" + "5e" * 16
SMS_TOKEN = "sms-conformance-auth-token"
SMS_NUMBER = "+74951234567"
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4


def twilio_message(message_sid: str, sender: str, body: str, *, from_country: str, **extra: str) -> dict[str, str]:
    """An incoming-message webhook's parameters, as Twilio posts them."""
    return {"ToCountry": "RU", "ToState": "", "SmsMessageSid": message_sid, "NumMedia": "0", "ToCity": "", "FromZip": "",
            "SmsSid": message_sid, "FromState": "", "SmsStatus": "received", "FromCity": "", "Body": body,
            "FromCountry": from_country, "To": SMS_NUMBER, "ToZip": "", "NumSegments": "1", "MessageSid": message_sid,
            "AccountSid": SMS_ACCOUNT, "From": sender, "ApiVersion": "2010-04-01", **extra}


class TestTwilioSmsConformance(PushAdapterConformance):
    adapter = "twilio_sms"
    instance = "sms"
    sms_sid = "SM" + "0a" * 16
    mms_sid = "MM" + "0b" * 16

    async def channel_settings(self) -> dict[str, Any]:
        self.api = FakeTwilioApi(SMS_ACCOUNT, SMS_TOKEN)
        base_url = await self.api.start()
        self.media_url = self.api.add_media(self.mms_sid, PHOTO, "image/jpeg")
        return {"account_sid": SMS_ACCOUNT, "auth_token": SMS_TOKEN, "api_base_url": base_url,
                "public_base_url": PUBLIC_BASE_URL}

    async def cleanup(self) -> None:
        await self.api.close()

    def deliveries(self) -> list[Delivery]:
        sms = twilio_message(self.sms_sid, "+79161234567", "Третий день нет интернета, роутер мигает красным.",
                             from_country="RU")
        mms = twilio_message(self.mms_sid, "+48601234567", "Zdjęcie licznika: odczyt jest inny niż na fakturze.",
                             from_country="PL", NumMedia="1", MediaContentType0="image/jpeg", MediaUrl0=self.media_url)
        return [
            twilio_delivery("sms", SMS_PATH, sms, SMS_TOKEN, Expect(
                identities=[("phone", "+79161234567")], text_contains=["нет интернета"], language="ru",
                reply_to=("phone", "+79161234567"), attachments=0, auto_submitted=False)),
            twilio_delivery("mms", SMS_PATH, mms, SMS_TOKEN, Expect(
                identities=[("phone", "+48601234567")], text_contains=["odczyt jest inny"], language="pl",
                reply_to=("phone", "+48601234567"), attachments=1)),
        ]

    def forged(self, delivery: Delivery) -> Delivery:
        return forged_twilio(delivery)

    def malformed(self) -> Delivery:
        return broken_form(SMS_PATH, SMS_TOKEN)

    async def test_mms_media_is_fetched_from_the_twilio_api(self, door: TestClient) -> None:
        mms = self.deliveries()[1]
        status, body = await self.send(door, mms)
        assert status == 200, body
        events = await wait_for(lambda: registry_of(door).read_events("media", "conformance"))
        attachment = events[0].payload["complaint"]["attachments"][0]
        assert (attachment["content_type"], attachment["size"]) == ("image/jpeg", len(PHOTO))
        media_path = self.media_url.removeprefix("https://api.twilio.com")
        assert ("GET", media_path) in self.api.requests


# -- Twilio voice ------------------------------------------------------------------------
VOICE_ACCOUNT = "AC" + "7c" * 16
VOICE_TOKEN = "voice-conformance-auth-token"
VOICE_NUMBER = "+48587654321"


def record_action(call_sid: str, recording_sid: str, caller: str, *, duration: str) -> dict[str, str]:
    """The parameters of Twilio's request to a ``<Record action>``: the call's own and the recording's."""
    return {"AccountSid": VOICE_ACCOUNT, "ApiVersion": "2010-04-01", "CallSid": call_sid, "CallStatus": "in-progress",
            "Called": VOICE_NUMBER, "CalledCountry": "PL", "Caller": caller, "Direction": "inbound", "From": caller,
            "FromCountry": "PL", "To": VOICE_NUMBER, "ToCountry": "PL", "Digits": "#",
            "RecordingDuration": duration, "RecordingSid": recording_sid,
            "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{VOICE_ACCOUNT}/Recordings/{recording_sid}"}


class TestTwilioVoiceConformance(PushAdapterConformance):
    adapter = "twilio_voice"
    instance = "phone"
    call_sid = "CA" + "1d" * 16
    recording_sid = "RE" + "2e" * 16
    anonymous_call_sid = "CA" + "3f" * 16

    async def channel_settings(self) -> dict[str, Any]:
        return {"account_sid": VOICE_ACCOUNT, "auth_token": VOICE_TOKEN, "public_base_url": PUBLIC_BASE_URL}

    def deliveries(self) -> list[Delivery]:
        # the action URLs as the door's own <Record> verb writes them (the caller's choices in the query)
        english = f"{VOICE_PATH}/recorded?lang=en&account=12345678&urgent=0"
        urgent_russian = f"{VOICE_PATH}/recorded?lang=ru&account=-&urgent=1"
        return [
            twilio_delivery("recorded", english,
                            record_action(self.call_sid, self.recording_sid, "+48221234567", duration="17"),
                            VOICE_TOKEN, Expect(
                                identities=[("phone", "+48221234567"), ("account", "12345678")],
                                text_contains=[self.call_sid, self.recording_sid], subject="Complaint by phone",
                                language="en", urgency="normal", reply_to=("phone", "+48221234567"), attachments=0)),
            twilio_delivery("recorded, withheld number, urgent", urgent_russian,
                            record_action(self.anonymous_call_sid, "RE" + "4a" * 16, "+266696687", duration="9"),
                            VOICE_TOKEN, Expect(
                                identities=[("call", f"phone:{self.anonymous_call_sid}")],
                                subject="Обращение по телефону", language="ru", urgency="immediate")),
        ]

    def forged(self, delivery: Delivery) -> Delivery:
        return forged_twilio(delivery)

    def malformed(self) -> Delivery:
        return broken_form(f"{VOICE_PATH}/recorded?lang=en&account=12345678&urgent=0", VOICE_TOKEN)

    async def test_voice_speaks_the_number_twice_then_hangs_up(self, door: TestClient) -> None:
        """Beyond the inherited check: the spoken form (``2, 0, 2, 6. 0, 0, 0, 1, 2, 3``) is
        inside a ``<Say>``, twice, and the call ends."""
        case = self.deliveries()[0]
        status, body = await self.send(door, case)
        assert status == 200, body
        events = await wait_for(lambda: registry_of(door).read_events("conformance-ack", "conformance"))
        number = events[0].registration_number
        root = ET.fromstring(body)
        spoken = [say.text or "" for say in root.iter("Say")]
        assert any(text.count(spoken_number(number)) == 2 for text in spoken), spoken
        assert root.find("Hangup") is not None


# -- generic IVR webhook -----------------------------------------------------------------
IVR_SECRET = "ivr-conformance-secret-0123456789"


def ivr_delivery(name: str, payload: Any, *, secret: str = IVR_SECRET, raw: bytes | None = None,
                 expect: Expect | None = None, expect_status: int = 201) -> Delivery:
    """A POST as the IVR sends it: JSON, signed over ``<timestamp>.<body>``."""
    body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    timestamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Timestamp": timestamp, "X-Signature": f"sha256={signature}"}
    return Delivery(name, IVR_PATH, body, headers, expect=expect, expect_status=expect_status)


class TestIvrWebhookConformance(PushAdapterConformance):
    adapter = "ivr_webhook"
    instance = "ivr"

    async def channel_settings(self) -> dict[str, Any]:
        return {"secret": IVR_SECRET}

    def deliveries(self) -> list[Delivery]:
        call = {"call_id": "1700000000.42", "caller": "8 (916) 765-43-21", "called": "+74950000000", "language": "ru",
                "account": "40012345", "urgent": False, "dtmf": {"language": "1", "account": "40012345", "urgent": "2"},
                "transcript": "Пропало электричество во всём подъезде.",
                "recording_url": "https://pbx.example.com/recordings/1700000000.42.wav", "recording_seconds": 31}
        anonymous = {"call_id": "pbx-2024-77", "caller": "anonymous", "called": "+48587654321", "language": "pl",
                     "dtmf": {"urgent": "1"}, "transcript": None, "recording_url": None}
        return [
            ivr_delivery("call", call, expect=Expect(
                identities=[("phone", "+79167654321"), ("account", "40012345")], text_contains=["Пропало электричество"],
                subject="Обращение по телефону", language="ru", reply_to=("phone", "+79167654321"), attachments=0)),
            ivr_delivery("withheld number, urgent, no transcript", anonymous, expect=Expect(
                identities=[("call", "ivr:pbx-2024-77")], text_contains=["pbx-2024-77"],
                subject="Reklamacja telefoniczna", language="pl", urgency="immediate")),
        ]

    def forged(self, delivery: Delivery) -> Delivery:
        return ivr_delivery("forged", None, secret="a-guessed-secret-0123456789", raw=delivery.body)

    def malformed(self) -> Delivery:
        return ivr_delivery("truncated", None, raw=b'{"call_id": "1700000000.43", "caller": ')

    async def test_deeply_nested_json_gets_400_and_the_gateway_keeps_serving(self, door: TestClient) -> None:
        nested = ivr_delivery("60 KB of brackets", None, raw=b"[" * 60_000)
        status, body = await self.send(door, nested)
        assert status == 400, body
        assert "not valid JSON" in json.loads(body)["error"]
        metrics = await (await door.get("/metrics")).text()
        assert 'complaint_gateway_rejected_total{channel="ivr",reason="malformed"} 1.0' in metrics
        assert await registry_of(door).queue_length() == 0
        case = self.deliveries()[0]
        assert (await self.send(door, case))[0] == 201
