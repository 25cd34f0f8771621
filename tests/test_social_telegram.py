"""The Telegram door end to end: webhook and long polling against a fake Bot API on
loopback, with python-telegram-bot pointed at it."""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any

import pytest
from telegram import Update

from channels.social.fakes import telegram as tg
from channels.social.fakes.telegram import FakeTelegram
from channels.social.fakes.testing import FlakySink, expected_acknowledgement, has_metric, wait_until
from channels.social.telegram import SECRET_HEADER, plain_private_text
from gateway.app import ADAPTERS, create_app
from gateway.config import ConfigError, from_dict
from tests.conftest import base_config, registry_of

# the adapter silences this advice itself; pytest resets warning filters for each test
pytestmark = [pytest.mark.filterwarnings("ignore:Please use 'Bot.getUpdates':telegram.warnings.PTBUserWarning"),
              pytest.mark.filterwarnings("ignore:Please use 'Bot.sendMessage':telegram.warnings.PTBUserWarning")]

SECRET = "tg-Webhook_secret-42"
PATH = "/channels/telegram/telegram"
HEADERS = {SECRET_HEADER: SECRET}
ANNA = tg.user(424242, "Anna", "Nowak", language_code="en", username="anna_n")


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


def tg_channel(fake: FakeTelegram, **overrides: Any) -> dict[str, Any]:
    return {"telegram": {"adapter": "telegram", "token": fake.token, "secret_token": SECRET, "api_base_url": fake.base_url,
                         "file_base_url": fake.base_file_url, **overrides}}


@pytest.fixture
async def client(fake, make_config, start_gateway):
    return await start_gateway(make_config(channels=tg_channel(fake)))



async def test_private_text_is_registered_and_answered_as_a_reply_in_the_users_language(fake, client):
    update = tg.message_update(9001, ANNA, text="My internet has been down since Monday morning.", message_id=55)
    resp = await client.post(PATH, json=update, headers=HEADERS)
    assert resp.status == 200

    [new] = await registry_of(client).read_events("test", "c1")
    complaint = new.payload["complaint"]
    assert complaint["customer"]["identities"] == [{"kind": "telegram", "value": "424242"}]
    assert complaint["customer"]["name"] == "Anna Nowak"
    assert complaint["language"] == "en"
    assert complaint["channel_message_id"] == "9001"

    [sent] = await fake.wait_for("sendMessage")
    assert int(sent.params["chat_id"]) == 424242
    replied_to = sent.params.get("reply_parameters", {}).get("message_id") or sent.params.get("reply_to_message_id")
    assert int(replied_to) == 55
    assert new.registration_number in sent.params["text"]
    assert sent.params["text"] == expected_acknowledgement(client.server.app, new)
    assert complaint["language"] == "en" and "registered" in sent.params["text"]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_redelivered_update_adds_nothing(fake, make_config, start_gateway, redis_url, backend):
    client = await start_gateway(make_config(backend=backend, channels=tg_channel(fake)))
    update = tg.message_update(9002, ANNA, text="The TV box restarts every ten minutes.")
    statuses = [(await client.post(PATH, json=update, headers=HEADERS)).status for _ in range(2)]
    assert statuses == [200, 200]
    registry = registry_of(client)
    [new] = await registry.read_events("test", "c1")
    assert (await registry.get_customer(new.customer_id))["registrations"] == [new.registration_number]
    assert await has_metric(client, 'complaint_gateway_duplicate_total{channel="telegram"} 1.0')
    adapter = client.server.app[ADAPTERS]["telegram"]
    again = await adapter.handle_update(update, b"{}")
    assert (again.receipt.status, again.receipt.registration_number) == ("duplicate", new.registration_number)
    await adapter.drain()
    assert len(fake.calls_of("sendMessage")) == 1


def _plain_updates(number: str) -> list[dict[str, Any]]:
    """Private text messages in the shapes the Bot API gives them."""
    no_last = tg.user(5001, "Ольга", None, language_code="ru")
    no_language = tg.user(5002, "Piotr", "Wiśniewski", language_code=None, username="piotr_w")
    no_first = tg.user(5003, "", "Brown", language_code="pt-br")
    premium = {**tg.user(5004, "Emma", "Brown", language_code="en"), "is_premium": True}
    return [
        tg.message_update(9101, ANNA, text="My internet has been down since Monday morning.", message_id=3),
        tg.message_update(9102, no_last, text=f"Снова нет света, см. обращение {number}. Позвоните +7 912 345-67-89", message_id=4,
                          entities=[{"offset": 40, "length": 16, "type": "phone_number"}]),
        tg.message_update(9103, no_language, text="", message_id=5, link_preview_options={"is_disabled": True}),
        tg.message_update(9104, no_first, text="no signal\n\nat all", message_id=6),
        tg.message_update(9105, premium, text="see https://example.com/outage", message_id=7,
                          entities=[{"offset": 4, "length": 26, "type": "url"}]),
    ]


async def test_plain_private_text_is_read_from_the_json_as_python_telegram_bot_reads_it(client):
    adapter = client.server.app[ADAPTERS]["telegram"]
    [number] = await _registered_numbers(client, 1)
    for update in _plain_updates(number):
        raw = json.dumps(update).encode()
        message = plain_private_text(update)
        assert message is update["message"]
        by_ptb = await adapter._inbound(Update.de_json(update, adapter.bot).message, str(update["update_id"]), raw)
        by_json = adapter._plain_inbound(message, str(update["update_id"]), raw)
        assert replace(by_json, received_at=by_ptb.received_at) == by_ptb
    assert adapter._plain_inbound(_plain_updates(number)[1]["message"], "9102", b"{}").in_reply_to == number


async def _registered_numbers(client: Any, count: int) -> list[str]:
    for i in range(count):
        update = tg.message_update(9100 - i, ANNA, text=f"complaint {i}")
        assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    return [event.registration_number for event in await registry_of(client).read_events("test", "c1")]


@pytest.mark.parametrize("change", [
    "photo", "caption", "reply", "contact", "command", "group", "bot", "no sender", "edited", "two in one",
    "id as text", "no date", "name as number", "no is_bot",
])
def test_any_other_update_is_left_to_python_telegram_bot(change):
    update = tg.message_update(9200, ANNA, text="internet down", message_id=9)
    message = update["message"]
    if change == "photo":
        message["photo"] = tg.photo_sizes("p", [(90, 90, 1000)])
    elif change == "caption":
        message["caption"] = "the bill"
    elif change == "reply":
        message["reply_to_message"] = {"message_id": 8, "date": 1, "chat": message["chat"], "text": "earlier"}
    elif change == "contact":
        message["contact"] = tg.contact("+48601234567", "Anna", user_id=ANNA["id"])
    elif change == "command":
        message["text"] = "/start"
    elif change == "group":
        message["chat"] = {"id": -100123, "type": "group", "title": "Neighbours"}
    elif change == "bot":
        message["from"] = {**ANNA, "is_bot": True}
    elif change == "no sender":
        del message["from"]
    elif change == "edited":
        update["edited_message"] = update.pop("message")
    elif change == "two in one":
        update["edited_message"] = message
    elif change == "id as text":
        message["from"] = {**ANNA, "id": "424242"}
    elif change == "no date":
        del message["date"]
    elif change == "name as number":
        message["from"] = {**ANNA, "last_name": 7}
    elif change == "no is_bot":
        message["from"] = {k: v for k, v in ANNA.items() if k != "is_bot"}
    assert plain_private_text(update) is None


async def test_plain_private_text_is_registered_without_python_telegram_bot_objects(fake, client, monkeypatch):
    def refuse(*args: Any) -> None:
        raise AssertionError("Update.de_json called")

    monkeypatch.setattr(Update, "de_json", refuse)
    update = tg.message_update(9301, ANNA, text="The landline crackles on every call.", message_id=12)
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    [new] = await registry_of(client).read_events("test", "c1")
    assert new.payload["complaint"]["text"] == "The landline crackles on every call."
    assert new.payload["complaint"]["customer"]["name"] == "Anna Nowak"
    [sent] = await fake.wait_for("sendMessage")
    assert sent.params["text"] == expected_acknowledgement(client.server.app, new)
    assert int(sent.params["reply_parameters"]["message_id"]) == 12


@pytest.mark.parametrize(("headers", "status", "reason"), [
    ({}, 401, "unsigned"), ({"X-Telegram-Bot-Api-Secret-Token": "guess"}, 403, "forged")])
async def test_missing_or_wrong_secret_token_is_rejected_and_counted(client, headers, status, reason):
    resp = await client.post(PATH, json=tg.message_update(9003, ANNA, text="forged complaint text"), headers=headers)
    assert resp.status == status
    assert await has_metric(client, f'complaint_gateway_rejected_total{{channel="telegram",reason="{reason}"}} 1.0')
    assert await registry_of(client).queue_length() == 0


async def test_malformed_json_or_no_update_id_gets_400_and_a_log_line(client, caplog):
    with caplog.at_level(logging.WARNING):
        broken = await client.post(PATH, data=b'{"update_id": 1,', headers={**HEADERS, "Content-Type": "application/json"})
        no_id = await client.post(PATH, json={"message": {"text": "hi"}}, headers=HEADERS)
    assert (broken.status, no_id.status) == (400, 400)
    assert [r.getMessage() for r in caplog.records if getattr(r, "channel", None) == "telegram"] == ["malformed request"] * 2
    assert await has_metric(client, 'complaint_gateway_rejected_total{channel="telegram",reason="malformed"} 2.0')


async def test_photo_document_and_voice_are_fetched_through_getfile(fake, client):
    fake.add_tg_file("ph-2", b"\xff\xd8 largest photo", "photos/file_2.jpg")
    fake.add_tg_file("doc-1", b"%PDF-1.7 contract", "documents/file_3.pdf")
    fake.add_tg_file("vo-1", b"OggS voice note", "voice/file_4.oga")
    photo = tg.message_update(9004, ANNA, caption="Bill attached, it is twice the usual amount.", message_id=60,
                              photo=tg.photo_sizes("ph", [(90, 60, 1200), (320, 240, 9000), (1280, 960, 17)]))
    doc = tg.message_update(9005, ANNA, caption="The contract, page 3 says otherwise.", message_id=61,
                            document=tg.document("doc-1", "contract.pdf", "application/pdf", 17))
    voice = tg.message_update(9006, ANNA, message_id=62, voice=tg.voice("vo-1", 15))
    for update in (photo, doc, voice):
        assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    messages = {m.channel_message_id: m for m in await registry_of(client).list_messages()}
    assert [(a.filename, a.size) for a in messages["9004"].attachments] == [("photo_60.jpg", len(b"\xff\xd8 largest photo"))]
    assert [(a.filename, a.content_type) for a in messages["9005"].attachments] == [("contract.pdf", "application/pdf")]
    assert [(a.filename, a.size) for a in messages["9006"].attachments] == [("voice_62.ogg", len(b"OggS voice note"))]
    assert [c.params["file_id"] for c in fake.calls_of("getFile")] == ["ph-2", "doc-1", "vo-1"]
    assert "Bill attached" in messages["9004"].text


async def test_too_large_document_is_recorded_not_fetched(fake, make_config, start_gateway):
    client = await start_gateway(make_config(channels=tg_channel(fake, max_attachment_bytes=1024)))
    fake.add_tg_file("big-1", b"x" * 4096, "documents/big.pdf")
    update = tg.message_update(9007, ANNA, caption="A scan of the letter from the court.", message_id=63,
                               document=tg.document("big-1", "letter.pdf", "application/pdf", 4096))
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    [message] = await registry_of(client).list_messages()
    assert message.attachments == []
    assert message.meta["attachments_not_fetched"][0] | {"reason": "too_large", "ref": "big-1"} == \
        message.meta["attachments_not_fetched"][0]
    assert fake.calls_of("getFile") == []


async def test_start_greets_in_the_users_language_and_registers_nothing(fake, client):
    polish = tg.user(515151, "Jan", "Kowalski", language_code="pl")
    resp = await client.post(PATH, json=tg.message_update(9008, polish, text="/start"), headers=HEADERS)
    assert resp.status == 200
    [greeting] = await fake.wait_for("sendMessage")
    assert greeting.params["text"].startswith("Dzień dobry!")
    [[button]] = greeting.params["reply_markup"]["keyboard"]
    assert button == {"text": "Udostępnij numer telefonu", "request_contact": True}
    registry = registry_of(client)
    assert await registry.list_messages() == [] and await registry.queue_length() == 0


async def test_own_contact_links_phone_to_telegram_identity(fake, client):
    share = tg.message_update(9009, ANNA, message_id=70, contact=tg.contact("79161234567", "Anna", user_id=ANNA["id"]))
    assert (await client.post(PATH, json=share, headers=HEADERS)).status == 200
    [thanks] = await fake.wait_for("sendMessage")
    assert thanks.params["text"] == "Thank you, your phone number has been saved."
    assert thanks.params["reply_markup"] == {"remove_keyboard": True}
    registry = registry_of(client)
    assert await registry.queue_length() == 0  # a shared contact is no complaint

    later = tg.message_update(9010, ANNA, text="Still no signal at home after the repair visit.", message_id=71)
    await client.post(PATH, json=later, headers=HEADERS)
    [new] = await registry.read_events("test", "c1")
    customer = await registry.get_customer(new.customer_id)
    assert {(i["kind"], i["value"]) for i in customer["identities"]} == {("telegram", "424242"), ("phone", "+79161234567")}


async def test_contact_of_someone_else_is_no_identity_of_the_sender(fake, client):
    share = tg.message_update(9011, ANNA, message_id=72, contact=tg.contact("+48601234567", "Piotr", user_id=999))
    assert (await client.post(PATH, json=share, headers=HEADERS)).status == 200
    await client.post(PATH, json=tg.message_update(9012, ANNA, text="My router keeps dropping Wi-Fi.", message_id=73),
                      headers=HEADERS)
    registry = registry_of(client)
    [new] = await registry.read_events("test", "c1")
    customer = await registry.get_customer(new.customer_id)
    assert customer["identities"] == [{"kind": "telegram", "value": "424242"}]
    [kept] = [m for m in await registry.list_messages() if m.channel_message_id == "9011"]
    assert kept.meta["shared_contact"]["phone_number"] == "+48601234567"


async def test_group_messages_are_off_by_default(fake, client):
    group = {"id": -1001234567890, "title": "Customers", "type": "supergroup"}
    update = tg.message_update(9013, ANNA, text="Complaint written in a group chat.", chat=group)
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    assert await registry_of(client).list_messages() == []


async def test_enabled_group_message_gets_a_public_acknowledgement(fake, make_config, start_gateway):
    client = await start_gateway(make_config(channels=tg_channel(fake, accept_groups=True)))
    group = {"id": -1001234567890, "title": "Customers", "type": "supergroup"}
    update = tg.message_update(9014, ANNA, text="Nobody answers the hotline, third day now.", chat=group, message_id=80)
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    [new] = await registry_of(client).read_events("test", "c1")
    [sent] = await fake.wait_for("sendMessage")
    assert int(sent.params["chat_id"]) == -1001234567890
    assert new.registration_number in sent.params["text"] and "Anna" not in sent.params["text"]
    assert sent.params["text"] == expected_acknowledgement(client.server.app, new, public=True)


async def test_acknowledgement_in_the_webhook_response_is_a_sendmessage_call_telegram_makes(fake, make_config,
                                                                                           start_gateway):
    client = await start_gateway(make_config(channels=tg_channel(fake, accept_groups=True,
                                                                 acknowledge_in_webhook_response=True)))
    update = tg.message_update(9030, ANNA, text="My internet has been down since Monday morning.", message_id=56)
    resp = await client.post(PATH, json=update, headers=HEADERS)
    assert resp.status == 200 and resp.content_type == "application/json"
    [new] = await registry_of(client).read_events("test", "c1")
    assert await resp.json() == {"method": "sendMessage", "chat_id": 424242,
                                 "text": expected_acknowledgement(client.server.app, new),
                                 "reply_parameters": {"message_id": 56, "allow_sending_without_reply": True}}
    assert new.registration_number in (await resp.json())["text"]

    # a group message (read by python-telegram-bot, not the plain path): the public text, in the group
    group = {"id": -1001234567890, "title": "Customers", "type": "supergroup"}
    in_group = tg.message_update(9031, ANNA, text="Nobody answers the hotline, third day now.", chat=group, message_id=81)
    answer = await (await client.post(PATH, json=in_group, headers=HEADERS)).json()
    [second] = await registry_of(client).read_events("test", "c1")  # the events after the first
    assert answer["chat_id"] == -1001234567890 and answer["reply_parameters"]["message_id"] == 81
    assert answer["text"] == expected_acknowledgement(client.server.app, second, public=True)

    await client.server.app[ADAPTERS]["telegram"].drain()  # nothing was sent in the background
    assert [call.method for call in fake.calls if call.method == "sendMessage"] == []
    assert await has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="in_webhook_response"} 2.0')


async def test_a_redelivered_update_is_acknowledged_again_in_the_webhook_response(fake, make_config, start_gateway):
    """Telegram sends an update again only when our answer, and the call in it, did not reach it."""
    client = await start_gateway(make_config(channels=tg_channel(fake, acknowledge_in_webhook_response=True)))
    update = tg.message_update(9032, ANNA, text="The TV box restarts every ten minutes.", message_id=57)
    first, again = [await (await client.post(PATH, json=update, headers=HEADERS)).json() for _ in range(2)]
    [new] = await registry_of(client).read_events("test", "c1")
    assert first == again and new.registration_number in first["text"]
    assert await has_metric(client, 'complaint_gateway_duplicate_total{channel="telegram"} 1.0')


async def test_nothing_is_said_in_the_webhook_response_without_acknowledgements_or_a_complaint(fake, make_config,
                                                                                               start_gateway):
    quiet = await start_gateway(make_config(channels=tg_channel(fake, acknowledge=False,
                                                                acknowledge_in_webhook_response=True)))
    update = tg.message_update(9033, ANNA, text="The TV box restarts every ten minutes.")
    resp = await quiet.post(PATH, json=update, headers=HEADERS)
    assert (resp.status, await resp.text()) == (200, "ok")
    answering = await start_gateway(make_config(channels=tg_channel(fake, acknowledge_in_webhook_response=True)))
    start = tg.message_update(9034, ANNA, text="/start")  # greeted by its own sendMessage; no complaint
    resp = await answering.post(PATH, json=start, headers=HEADERS)
    assert (resp.status, await resp.text()) == (200, "ok")


def test_acknowledging_in_the_webhook_response_needs_the_webhook_mode(tmp_path) -> None:
    channel = {"adapter": "telegram", "token": "1:x", "mode": "polling", "acknowledge_in_webhook_response": True}
    config = from_dict(base_config(tmp_path, channels={"telegram": channel}))
    with pytest.raises(ConfigError, match=r"channels\.telegram\.acknowledge_in_webhook_response: False was expected"):
        create_app(config)


async def test_channel_posts_need_to_be_enabled(fake, make_config, start_gateway):
    post = tg.channel_post_update(9015, -1009876543210, "Town news", "Water is off in the whole district again.")
    off = await start_gateway(make_config(channels=tg_channel(fake)))
    assert (await off.post(PATH, json=post, headers=HEADERS)).status == 200
    assert await registry_of(off).list_messages() == []


async def test_enabled_channel_post_is_registered_for_the_channel(fake, make_config, start_gateway):
    client = await start_gateway(make_config(channels=tg_channel(fake, accept_channels=True)))
    post = tg.channel_post_update(9018, -1009876543210, "Town news", "Water is off in the whole district again.",
                                  message_id=12)
    assert (await client.post(PATH, json=post, headers=HEADERS)).status == 200
    [new] = await registry_of(client).read_events("test", "c1")
    assert new.payload["complaint"]["customer"]["identities"] == [{"kind": "telegram", "value": "-1009876543210"}]
    [sent] = await fake.wait_for("sendMessage")
    assert int(sent.params["chat_id"]) == -1009876543210
    assert sent.params["text"] == expected_acknowledgement(client.server.app, new, public=True)


async def test_operator_reply_is_a_reply_in_the_private_chat(fake, client):
    await client.post(PATH, json=tg.message_update(9016, ANNA, text="Double charge on my card this month.", message_id=90),
                      headers=HEADERS)
    [message] = await registry_of(client).list_messages()
    await client.server.app[ADAPTERS]["telegram"].send_reply(message, "We have refunded the second charge.")
    sent = await fake.wait_for("sendMessage", count=2)
    assert [s.params["text"] for s in sent][-1] == "We have refunded the second charge."


async def test_webhook_is_set_with_the_secret_token(fake, make_config, start_gateway):
    await start_gateway(make_config(channels=tg_channel(fake, webhook_url="https://complaints.example.com/tg")))
    [call] = await fake.wait_for("setWebhook")
    assert call.params["url"] == "https://complaints.example.com/tg"
    assert call.params["secret_token"] == SECRET
    assert call.params["allowed_updates"] == ["message"]


async def test_temporary_failure_answers_503(fake, client):
    adapter = client.server.app[ADAPTERS]["telegram"]
    FlakySink(adapter)
    resp = await client.post(PATH, json=tg.message_update(9017, ANNA, text="Storage is down right now."), headers=HEADERS)
    assert resp.status == 503


# -- long polling --------------------------------------------------------------------------
def polling_channel(fake: FakeTelegram) -> dict[str, Any]:
    return {"telegram": {"adapter": "telegram", "mode": "polling", "token": fake.token, "api_base_url": fake.base_url,
                         "file_base_url": fake.base_file_url, "polling_timeout_seconds": 1,
                         "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05}}



async def test_polling_registers_updates_and_saves_the_offset_after_delivery(fake, make_config, start_gateway):
    fake.webhook = {"url": "https://old.example.com/hook"}
    client = await start_gateway(make_config(channels=polling_channel(fake)))
    registry = registry_of(client)
    await fake.push_update(tg.message_update(7001, ANNA, text="No dial tone on the landline.", message_id=1))
    await fake.push_update(tg.message_update(7002, ANNA, text="And the mobile data is slow too.", message_id=2))

    async def saved() -> bool:
        return await registry.get_cursor("telegram:telegram:offset") == "7003"

    await wait_until(saved)
    assert len(await registry.list_messages()) == 2
    assert fake.webhook is None and fake.calls_of("deleteWebhook")
    await fake.wait_for("sendMessage", count=2)

    async def confirmed() -> bool:  # the next getUpdates carries the saved offset, which confirms both
        return any(str(c.params.get("offset")) == "7003" for c in fake.calls_of("getUpdates"))

    await wait_until(confirmed)
    assert fake.updates == []


async def test_polling_does_not_advance_the_offset_when_delivery_fails(fake, make_config, start_gateway):
    client = await start_gateway(make_config(channels=polling_channel(fake)))
    adapter = client.server.app[ADAPTERS]["telegram"]
    registry = registry_of(client)
    flaky = FlakySink(adapter)
    await fake.push_update(tg.message_update(7101, ANNA, text="Meter reading was not accepted online."))

    async def saved() -> bool:
        return await registry.get_cursor("telegram:telegram:offset") == "7102"

    await wait_until(saved)
    assert flaky.attempts == ["7101", "7101"]
    assert len(await registry.read_events("test", "c1")) == 1


async def test_polling_keeps_an_unreadable_update_as_dead_letter_and_goes_on(fake, make_config, start_gateway):
    client = await start_gateway(make_config(channels=polling_channel(fake)))
    registry = registry_of(client)
    await fake.push_update({"update_id": 7201, "message": {"message_id": "not-a-number", "chat": "nonsense"}})
    await fake.push_update(tg.message_update(7202, ANNA, text="The next message must still arrive."))

    async def both() -> bool:
        return await registry.get_cursor("telegram:telegram:offset") == "7203"

    await wait_until(both)
    [dead] = await registry.list_dead_letters()
    assert dead["record"]["message_id"] == "7201"
    assert [m.channel_message_id for m in await registry.list_messages()] == ["7202"]


async def test_odd_message_shapes_are_kept_not_crashed(fake, make_config, start_gateway):
    client = await start_gateway(make_config(channels=tg_channel(fake, accept_channels=True)))
    channel_contact = tg.channel_post_update(9020, -1009876543210, "Town news", "x")
    del channel_contact["channel_post"]["text"]
    channel_contact["channel_post"]["contact"] = tg.contact("+48601234567", "Piotr")
    resp = await client.post(PATH, json=channel_contact, headers=HEADERS)
    assert resp.status == 200
    assert [m.channel_message_id for m in await registry_of(client).list_messages()] + \
        [d["record"]["message_id"] for d in await registry_of(client).list_dead_letters()] == ["9020"]


# -- the Bot API transport (aiohttp under python-telegram-bot) --------------------------------
async def test_bot_api_calls_over_aiohttp_carry_files_and_fail_as_python_telegram_bot_does() -> None:
    import asyncio

    from aiohttp import web
    from telegram import Bot, InputFile
    from telegram.error import NetworkError, TimedOut

    from channels.social.telegram import AiohttpBotRequest
    from gateway.testing.servers import free_port

    received: list[dict[str, Any]] = []

    async def method(request: web.Request) -> web.Response:
        if request.match_info["method"] == "slowMethod":
            await asyncio.sleep(2)
        if request.content_type == "application/json":  # every call without files
            received.append(await request.json())
        else:
            form = await request.post()
            received.append({k: (v.filename, v.file.read()) if hasattr(v, "filename") else v for k, v in form.items()})
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", method)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    request = AiohttpBotRequest(timeout=0.3)
    bot = Bot("123:abc", base_url=f"http://127.0.0.1:{port}/bot", request=request)
    try:
        result = await bot.do_api_request("uploadScan", api_kwargs={
            "chat_id": 7, "document": InputFile(b"%PDF scan of the bill", filename="bill.pdf")})
        assert result is True
        assert received == [{"chat_id": "7", "document": ("bill.pdf", b"%PDF scan of the bill")}]
        assert await bot.do_api_request("sendMessage", api_kwargs={
            "chat_id": 7, "text": "Ваша жалоба № 2026-000001 зарегистрирована & принята",
            "reply_parameters": {"message_id": 3, "allow_sending_without_reply": True}}) is True
        assert received[1] == {"chat_id": 7, "text": "Ваша жалоба № 2026-000001 зарегистрирована & принята",
                               "reply_parameters": {"message_id": 3, "allow_sending_without_reply": True}}
        with pytest.raises(TimedOut):
            await bot.do_api_request("slowMethod", api_kwargs={"chat_id": 7})
    finally:
        await request.shutdown()
        await runner.cleanup()
    unreachable = AiohttpBotRequest(timeout=1.0)
    bot = Bot("123:abc", base_url=f"http://127.0.0.1:{free_port()}/bot", request=unreachable)
    try:
        with pytest.raises(NetworkError):
            await bot.send_message(chat_id=7, text="Ваша жалоба зарегистрирована")
    finally:
        await unreachable.shutdown()


@pytest.mark.parametrize("payload", [
    rb'{"ok":true,"result":[{"update_id":1,"message":{"text":"\u041d\u0435\u0442 \u0441\u0432\u0435\u0442\u0430"}}]}',
    '{"ok":true,"result":{"text":"Нет света с утра ⚡"}}'.encode(),
    rb'{"ok":true,"result":{"text":"a lone surrogate \ud800 in a name"}}',  # orjson refuses it, json reads it
    b'{"ok":true,"result":{"text":"not UTF-8: \xff\xfe"}}',  # replaced, as python-telegram-bot does
])
def test_bot_api_answers_are_read_as_python_telegram_bot_reads_them(payload: bytes) -> None:
    from telegram.request import BaseRequest

    from channels.social.telegram import AiohttpBotRequest

    assert AiohttpBotRequest.parse_json_payload(payload) == BaseRequest.parse_json_payload(payload)


def test_a_bot_api_answer_that_is_no_json_is_python_telegram_bots_error() -> None:
    from telegram.error import TelegramError

    from channels.social.telegram import AiohttpBotRequest

    with pytest.raises(TelegramError, match="Invalid server response"):
        AiohttpBotRequest.parse_json_payload(b"<html>502 Bad Gateway</html>")


QUICK_RETRY = {"retry": {"attempts": 4, "first_delay_seconds": 0.05, "max_delay_seconds": 0.2}}


async def test_a_failed_acknowledgement_is_sent_again_until_it_goes_through(fake, make_config, start_gateway):
    client = await start_gateway(make_config(channels=tg_channel(fake), acknowledgements=QUICK_RETRY))
    fake.fail_next("sendMessage", (502, "Bad Gateway"), (500, "Internal Server Error"))
    update = tg.message_update(9101, ANNA, text="No internet since Monday morning.", message_id=61)
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200

    sent = await fake.wait_for("sendMessage", 3)
    assert [int(call.params["chat_id"]) for call in sent] == [424242] * 3
    [new] = await registry_of(client).read_events("test", "c1")  # registered once, whatever the answer's fate
    assert sent[2].params["text"] == expected_acknowledgement(client.server.app, new)
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="sent"} 1.0'))
    assert await has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="retried"} 2.0')


async def test_an_acknowledgement_the_bot_may_not_send_is_not_tried_again(fake, make_config, start_gateway, caplog):
    client = await start_gateway(make_config(channels=tg_channel(fake), acknowledgements=QUICK_RETRY))
    fake.fail_next("sendMessage", (403, "Forbidden: bot was blocked by the user"))
    update = tg.message_update(9102, ANNA, text="No internet since Monday morning.", message_id=62)
    with caplog.at_level(logging.WARNING, logger="complaint_gateway.channel"):
        assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
        await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="failed"} 1.0'))
    await asyncio.sleep(0.3)  # several back-offs: nothing more is sent
    assert len(fake.calls_of("sendMessage")) == 1
    [failed] = [r for r in caplog.records if r.getMessage() == "acknowledgement failed"]
    assert failed.attempts == 1 and "Forbidden" in failed.error


async def test_an_acknowledgement_given_up_on_is_recorded_on_its_registration_and_queued(fake, make_config, start_gateway):
    client = await start_gateway(make_config(channels=tg_channel(fake),
                                             acknowledgements={**QUICK_RETRY, "max_recorded_error_chars": 26}))
    fake.fail_next("sendMessage", (403, "Forbidden: bot was blocked by the user"))
    update = tg.message_update(9104, ANNA, text="No internet since Monday morning.", message_id=64)
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="failed"} 1.0'))
    registry = registry_of(client)
    [new, failed] = await registry.read_events("test", "c1", count=10)
    assert (new.event, failed.event) == ("new", "acknowledgement_failed")
    assert failed.registration_number == new.registration_number
    [action] = await registry.actions(new.registration_number)
    assert (action["action"], action["operator"], action["state"]) == ("acknowledgement_failed", "gateway", "open")
    assert action["details"] == {"channel": "telegram", "attempts": 1, "error": "Forbidden: bot was blocked"}  # 26 characters


async def test_acknowledgements_given_up_after_the_configured_attempts(fake, make_config, start_gateway):
    client = await start_gateway(make_config(channels=tg_channel(fake), acknowledgements=QUICK_RETRY))
    fake.fail_next("sendMessage", *[(502, "Bad Gateway")] * 5)
    update = tg.message_update(9103, ANNA, text="No internet since Monday morning.", message_id=63)
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="failed"} 1.0'))
    assert len(fake.calls_of("sendMessage")) == 4
    assert await has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="retried"} 3.0')


async def test_an_acknowledgement_waiting_to_be_sent_again_is_abandoned_at_shutdown(fake, make_config, start_gateway, caplog):
    slow = {"retry": {"attempts": 3, "first_delay_seconds": 600}}
    client = await start_gateway(make_config(channels=tg_channel(fake), acknowledgements=slow))
    adapter = client.server.app[ADAPTERS]["telegram"]
    fake.fail_next("sendMessage", (502, "Bad Gateway"))
    update = tg.message_update(9104, ANNA, text="No internet since Monday morning.", message_id=64)
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="retried"} 1.0'))
    with caplog.at_level(logging.WARNING, logger="complaint_gateway.channel"):
        async with asyncio.timeout(10):  # not the ten minutes of the back-off
            await client.close()
    metrics = adapter.context.metrics.render().decode().splitlines()  # the server is gone; the process's counters stay
    assert 'complaint_gateway_acknowledgements_total{channel="telegram",result="abandoned"} 1.0' in metrics
    [abandoned] = [r for r in caplog.records if r.getMessage().startswith("acknowledgement abandoned")]
    assert abandoned.attempts == 1
    assert len(fake.calls_of("sendMessage")) == 1


@pytest.mark.filterwarnings("ignore:Deprecated since version v22.2:telegram.warnings.PTBDeprecationWarning")  # RetryAfter's own
def test_telegrams_errors_say_whether_an_acknowledgement_is_worth_sending_again(make_config):
    from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TimedOut

    from channels.social.telegram import TelegramAdapter
    from gateway.adapters import AdapterContext

    settings = {"token": "7000000001:AAH-fake-token_for-tests", "secret_token": SECRET}
    config = make_config(channels={"telegram": {"adapter": "telegram", **settings}})
    adapter = TelegramAdapter(AdapterContext(instance="telegram", settings=settings, sink=None, state=None,  # type: ignore[arg-type]
                                             metrics=None, config=config, texts=None))  # type: ignore[arg-type]
    assert adapter.acknowledgement_retry_delay(NetworkError("Bad Gateway"), 4.0) == 4.0
    assert adapter.acknowledgement_retry_delay(TimedOut(), 8.0) == 8.0
    assert adapter.acknowledgement_retry_delay(RetryAfter(30), 4.0) == 30  # Telegram's own wait when longer
    assert adapter.acknowledgement_retry_delay(RetryAfter(1), 4.0) == 4.0
    for final in (Forbidden("Forbidden: bot was blocked by the user"), BadRequest("Bad Request: chat not found"), ChatMigrated(-100)):
        assert adapter.acknowledgement_retry_delay(final, 4.0) is None


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_an_acknowledgement_held_at_shutdown_is_sent_when_the_gateway_starts_again(backend, fake, make_config, start_gateway,
                                                                                          redis_url, caplog):
    config = make_config(backend=backend, channels=tg_channel(fake), acknowledgements={"retry": {"attempts": 5, "first_delay_seconds": 600}})
    client = await start_gateway(config)
    fake.fail_next("sendMessage", (502, "Bad Gateway"))
    update = tg.message_update(9105, ANNA, text="No internet since Monday morning.", message_id=65)
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="retried"} 1.0'))
    [new] = await registry_of(client).read_events("test", "c1")
    async with asyncio.timeout(10):
        await client.close()  # the acknowledgement waits ten minutes to be sent again: held

    with caplog.at_level(logging.INFO, logger="complaint_gateway.channel"):
        again = await start_gateway(config)  # the same registry
        first, second = await fake.wait_for("sendMessage", 2)
        await wait_until(lambda: has_metric(again, 'complaint_gateway_acknowledgements_total{channel="telegram",result="sent"} 1.0'))
    assert second.params == first.params
    assert second.params["text"] == expected_acknowledgement(again.server.app, new)
    assert any(r.getMessage() == "held acknowledgement sent again" and r.registration_number == new.registration_number
               for r in caplog.records)
    assert await registry_of(again).get_entries("acknowledgements:telegram") == {}  # let go once sent
    assert len(await registry_of(again).list_messages()) == 1  # registered once, not again


async def test_held_acknowledgements_are_resumed_by_their_process_and_the_unreadable_let_go(fake, make_config, start_gateway, caplog):
    # two processes configured: this one is number 0; number 1 runs and sends its own; number 5
    # is no longer configured, so the first process adopts its acknowledgements
    config = make_config(channels=tg_channel(fake), http={"workers": 2})
    client = await start_gateway(config)
    for update_id in (9106, 9107, 9108):
        update = tg.message_update(update_id, ANNA, text=f"No internet since Monday, case {update_id}.", message_id=update_id)
        assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    await fake.wait_for("sendMessage", 3)
    events = await registry_of(client).read_events("test", "c1")
    registry = registry_of(client)

    def held(event: Any, worker: int, failures: int = 1) -> str:
        return json.dumps({"status": "new", "number": event.registration_number, "customer": event.customer_id,
                           "failures": failures, "worker": worker})

    await registry.set_entry("acknowledgements:telegram", "broken", "{not json")
    # held before its first send (the platform was failing): let go once sent, as the others
    await registry.set_entry("acknowledgements:telegram", events[0].complaint_id, held(events[0], 0, failures=0))
    await registry.set_entry("acknowledgements:telegram", events[1].complaint_id, held(events[1], 1))
    await registry.set_entry("acknowledgements:telegram", events[2].complaint_id, held(events[2], 5))
    await client.close()

    with caplog.at_level(logging.WARNING, logger="complaint_gateway.channel"):
        again = await start_gateway(config)
        await wait_until(lambda: has_metric(again, 'complaint_gateway_acknowledgements_total{channel="telegram",result="sent"} 2.0'))
    assert (await again.get("/healthz")).status == 200
    resent = [call.params["text"] for call in fake.calls_of("sendMessage")[3:]]
    assert sorted(resent) == sorted(expected_acknowledgement(again.server.app, e) for e in (events[0], events[2]))
    # the damaged entry names no complaint: let go, not read again at every start
    assert sorted(await registry_of(again).get_entries("acknowledgements:telegram")) == [events[1].complaint_id]
    assert any(r.getMessage() == "held acknowledgement unreadable: given up" and r.complaint_id == "broken" for r in caplog.records)


async def test_a_damaged_held_acknowledgement_is_recorded_as_given_up_on_its_registration(fake, make_config, start_gateway):
    config = make_config(channels=tg_channel(fake))
    client = await start_gateway(config)
    update = tg.message_update(9120, ANNA, text="No internet since Monday.", message_id=9120)
    assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
    await fake.wait_for("sendMessage")
    [event] = await registry_of(client).read_events("test", "c1")
    await registry_of(client).set_entry("acknowledgements:telegram", event.complaint_id, '{"status": "new", "numb')
    await client.close()

    again = await start_gateway(config)
    registry = registry_of(again)
    await wait_until(lambda: has_metric(again, 'complaint_gateway_acknowledgements_total{channel="telegram",result="failed"} 1.0'))
    [action] = [a for a in await registry.actions(event.registration_number) if a["action"] == "acknowledgement_failed"]
    assert action["details"]["channel"] == "telegram" and "could not be read" in action["details"]["error"]
    assert await registry.get_entries("acknowledgements:telegram") == {}
    assert len(fake.calls_of("sendMessage")) == 1  # nothing sent on a guess


async def test_while_the_bot_api_fails_acknowledgements_are_held_before_their_first_send(fake, make_config, start_gateway):
    # a process stopped while Telegram has not answered a first send yet would lose it: while
    # the platform fails, each acknowledgement is held before it is sent; once it answers, not
    client = await start_gateway(make_config(channels=tg_channel(fake), acknowledgements={"retry": {"attempts": 5, "first_delay_seconds": 600}}))
    registry = registry_of(client)

    async def complain(update_id: int) -> str:
        update = tg.message_update(update_id, ANNA, text=f"No internet since Monday, case {update_id}.", message_id=update_id)
        assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
        [event] = await registry.read_events("test", "c1")
        return event.complaint_id

    async def held() -> dict[str, int]:
        return {key: json.loads(value)["failures"] for key, value in (await registry.get_entries("acknowledgements:telegram")).items()}

    def sent(count: int) -> Any:
        return lambda: has_metric(client, f'complaint_gateway_acknowledgements_total{{channel="telegram",result="sent"}} {count}.0')

    fake.pause("sendMessage")
    normal = await complain(9121)
    await fake.wait_for("sendMessage", 1)
    assert await held() == {}  # the platform answers: no registry write before a send
    fake.resume("sendMessage")
    await wait_until(sent(1))

    fake.fail_next("sendMessage", (502, "Bad Gateway"))
    failed = await complain(9122)
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="telegram",result="retried"} 1.0'))
    assert await held() == {failed: 1}

    fake.pause("sendMessage")
    during = await complain(9123)
    await fake.wait_for("sendMessage", 3)  # taken by Telegram, not answered yet
    assert await held() == {failed: 1, during: 0}  # a restart now would send it
    fake.resume("sendMessage")
    await wait_until(sent(2))
    assert await held() == {failed: 1}  # let go once sent; the platform answers again

    fake.pause("sendMessage")
    after = await complain(9124)
    await fake.wait_for("sendMessage", 4)
    assert await held() == {failed: 1}
    fake.resume("sendMessage")
    await wait_until(sent(3))
    assert len({normal, failed, during, after}) == 4


@pytest.mark.filterwarnings("ignore:Deprecated since version v22.2:telegram.warnings.PTBDeprecationWarning")  # RetryAfter's own
async def test_a_flood_limited_acknowledgement_waits_as_long_as_telegram_asks(fake, make_config, start_gateway, caplog):
    client = await start_gateway(make_config(channels=tg_channel(fake), acknowledgements=QUICK_RETRY))
    fake.fail_next("sendMessage", (429, "Too Many Requests: retry after 1", 1))
    update = tg.message_update(9107, ANNA, text="No internet since Monday morning.", message_id=67)
    with caplog.at_level(logging.INFO, logger="complaint_gateway.channel"):
        assert (await client.post(PATH, json=update, headers=HEADERS)).status == 200
        await fake.wait_for("sendMessage", 2)
    [retrying] = [r for r in caplog.records if r.getMessage() == "acknowledgement failed; retrying"]
    assert retrying.retry_in == 1 and "RetryAfter" in retrying.error  # Telegram's second, not the 0.05 s back-off
