"""The VK door end to end: Callback API and Long Poll against a fake VK API on loopback,
with the real vk-api library pointed at it."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from channels.social.fakes import vk as events
from channels.social.fakes.testing import FlakySink, expected_acknowledgement, has_metric, wait_until
from channels.social.fakes.vk import FakeVk
from gateway.app import ADAPTERS, BLOBS
from tests.conftest import registry_of

GROUP = 123456
SECRET = "Xq9-callback-secret"
USER = 5550001
PATH = "/channels/vk/vk"


@pytest.fixture
async def vk():
    async with FakeVk(group_id=GROUP) as fake:
        fake.users[USER] = ("Иван", "Петров")
        yield fake


def vk_channel(fake: FakeVk, **overrides: Any) -> dict[str, Any]:
    return {"vk": {"adapter": "vk", "group_id": GROUP, "access_token": fake.token, "confirmation_code": "c0nf1rm",
                   "secret": SECRET, "api_base_url": fake.api_url, "download_hosts": ["127.0.0.1"], **overrides}}


@pytest.fixture
async def client(vk, make_config, start_gateway):
    return await start_gateway(make_config(channels=vk_channel(vk)))



async def test_confirmation_returns_the_configured_code(client):
    resp = await client.post(PATH, json=events.confirmation_event(GROUP, SECRET))
    assert resp.status == 200
    assert await resp.text() == "c0nf1rm"


async def test_private_message_with_files_is_registered_and_acknowledged(vk, client):
    photo = vk.add_file("photo.jpg", b"\xff\xd8\xff photo bytes", "image/jpeg")
    small = vk.add_file("photo_s.jpg", b"\xff\xd8 small", "image/jpeg")
    doc = vk.add_file("bill.pdf", b"%PDF-1.4 bill", "application/pdf")
    voice = vk.add_file("voice.ogg", b"OggS voice", "audio/ogg")
    event = events.message_new(GROUP, USER, "Третий день нет интернета, роутер мигает красным.", secret=SECRET,
                               attachments=[events.photo_attachment(photo, USER, small_url=small),
                                            events.doc_attachment(doc, USER, "bill", "pdf", 13),
                                            events.audio_message_attachment(voice, USER)])
    resp = await client.post(PATH, json=event)
    assert resp.status == 200 and await resp.text() == "ok"

    registry = registry_of(client)
    [new] = await registry.read_events("test", "c1")
    complaint = new.payload["complaint"]
    assert new.event == "new"
    assert complaint["customer"]["identities"] == [{"kind": "vk", "value": str(USER)}]
    assert complaint["customer"]["name"] == "Иван Петров"
    assert complaint["channel_message_id"] == event["event_id"]
    assert sorted((a["filename"], a["size"]) for a in complaint["attachments"]) == [
        ("bill.pdf", 13), (f"photo_{USER}_457239017.jpg", len(b"\xff\xd8\xff photo bytes")),
        ("voice_700001.ogg", len(b"OggS voice"))]
    assert sorted(vk.file_requests) == ["bill.pdf", "photo.jpg", "voice.ogg"]  # the largest photo size only

    [send] = await vk.wait_for("messages.send")
    assert send.params["peer_id"] == str(USER)
    assert int(send.params["random_id"]) > 0
    assert new.registration_number in send.params["message"]
    assert send.params["message"] == expected_acknowledgement(client.server.app, new)
    assert send.params["v"] == "5.199"


async def test_stored_raw_event_does_not_keep_the_secret(vk, client):
    event = events.message_new(GROUP, USER, "Списали деньги дважды за один месяц.", secret=SECRET)
    await client.post(PATH, json=event)
    [message] = await registry_of(client).list_messages()
    assert message.channel_message_id == event["event_id"]
    raw = json.loads(message.meta["raw"]["text"])  # a small original: kept in the complaint
    assert raw["event_id"] == event["event_id"] and raw["object"]["message"]["text"] == event["object"]["message"]["text"]
    blobs = client.server.app[BLOBS]
    stored = [blobs.get_sync(digest) for digest in blobs.digests()]
    assert not any(SECRET.encode() in b for b in stored) and SECRET not in message.to_json()
    [event_read] = await registry_of(client).read_events("test", "c1")
    assert SECRET not in json.dumps(event_read.payload)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_redelivered_event_adds_nothing(vk, make_config, start_gateway, redis_url, backend):
    client = await start_gateway(make_config(backend=backend, channels=vk_channel(vk)))
    event = events.message_new(GROUP, USER, "Не работает телевидение с понедельника.", secret=SECRET)
    first = await client.post(PATH, json=event)
    again = await client.post(PATH, json=event, headers={"X-Retry-Counter": "1"})
    assert (first.status, await first.text(), again.status, await again.text()) == (200, "ok", 200, "ok")

    registry = registry_of(client)
    events_read = await registry.read_events("test", "c1")
    assert [e.event for e in events_read] == ["new"]
    customer = await registry.get_customer(events_read[0].customer_id)
    assert customer["registrations"] == [events_read[0].registration_number]
    assert await has_metric(client, 'complaint_gateway_duplicate_total{channel="vk"} 1.0')
    adapter = client.server.app[ADAPTERS]["vk"]
    again = await adapter.handle_event(event, retry="2")
    assert again.receipt.status == "duplicate"
    assert again.receipt.registration_number == events_read[0].registration_number
    await adapter.drain()
    assert len(vk.calls_of("messages.send")) == 1


@pytest.mark.parametrize(("secret", "reason"), [("wrong-secret", "forged"), (None, "unsigned")])
async def test_forged_or_unsigned_event_is_rejected_and_counted(vk, client, secret, reason):
    resp = await client.post(PATH, json=events.message_new(GROUP, USER, "Поддельная жалоба на оператора.", secret=secret))
    assert resp.status == 403
    assert await has_metric(client, f'complaint_gateway_rejected_total{{channel="vk",reason="{reason}"}} 1.0')
    assert await registry_of(client).queue_length() == 0
    confirm = await client.post(PATH, json=events.confirmation_event(GROUP, "wrong-secret"))
    assert confirm.status == 403 and await confirm.text() != "c0nf1rm"


async def test_event_for_another_group_is_rejected(client):
    resp = await client.post(PATH, json=events.message_new(999, USER, "Жалоба не в ту группу.", secret=SECRET))
    assert resp.status == 403
    assert await has_metric(client, 'complaint_gateway_rejected_total{channel="vk",reason="wrong_group"} 1.0')


async def test_malformed_json_gets_400_and_a_log_line(client, caplog):
    with caplog.at_level(logging.WARNING):
        resp = await client.post(PATH, data=b'{"type": "message_new",', headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert any(r.getMessage() == "malformed request" and getattr(r, "reason", None) == "malformed" for r in caplog.records)
    assert await has_metric(client, 'complaint_gateway_rejected_total{channel="vk",reason="malformed"} 1.0')
    assert (await client.get("/healthz")).status == 200


async def test_unknown_event_shape_is_kept_as_dead_letter(client):
    event = {"type": "message_new", "group_id": GROUP, "event_id": "broken-1", "v": "5.199", "secret": SECRET,
             "object": {"message": {"text": "нет автора"}}}
    resp = await client.post(PATH, json=event)
    assert (resp.status, await resp.text()) == (200, "ok")
    [dead] = await registry_of(client).list_dead_letters()
    assert dead["record"]["message_id"] == "broken-1"


async def test_wall_comment_gets_public_reply_without_personal_data(vk, client):
    event = events.wall_reply_new(GROUP, USER, "Уже неделю нет света в подъезде, позвоните мне.", secret=SECRET,
                                  post_id=34, comment_id=12)
    assert (await client.post(PATH, json=event)).status == 200
    [new] = await registry_of(client).read_events("test", "c1")
    assert new.payload["complaint"]["customer"]["identities"] == [{"kind": "vk", "value": str(USER)}]
    [comment] = await vk.wait_for("wall.createComment")
    assert comment.params["owner_id"] == str(-GROUP) and comment.params["post_id"] == "34"
    assert comment.params["reply_to_comment"] == "12" and comment.params["from_group"] == str(GROUP)
    assert new.registration_number in comment.params["message"]
    assert comment.params["message"] == expected_acknowledgement(client.server.app, new, public=True)
    assert "Иван" not in comment.params["message"] and "Петров" not in comment.params["message"]
    assert vk.calls_of("messages.send") == []


async def test_board_comment_gets_public_reply(vk, client):
    event = events.board_post_new(GROUP, USER, "Почему тариф подорожал без уведомления?", secret=SECRET, topic_id=77)
    assert (await client.post(PATH, json=event)).status == 200
    [comment] = await vk.wait_for("board.createComment")
    [new] = await registry_of(client).read_events("test", "c1")
    assert comment.params["topic_id"] == "77" and comment.params["group_id"] == str(GROUP)
    assert new.registration_number in comment.params["message"]


async def test_suggested_post_registers_and_published_post_does_not(vk, client):
    published = events.wall_post_new(GROUP, USER, "Новости компании", post_type="post", secret=SECRET)
    suggested = events.wall_post_new(GROUP, USER, "Предлагаю разобраться с обрывами связи в Химках.", secret=SECRET)
    assert [await (await client.post(PATH, json=e)).text() for e in (published, suggested)] == ["ok", "ok"]
    [new] = await registry_of(client).read_events("test", "c1")
    assert new.payload["complaint"]["channel_message_id"] == suggested["event_id"]
    assert new.payload["complaint"]["meta"]["vk_event"] == "wall_post_new"


async def test_group_chat_messages_and_group_own_comments_are_skipped(client):
    chat = events.message_new(GROUP, USER, "сообщение в беседе", secret=SECRET, peer_id=2_000_000_005)
    own = events.wall_reply_new(GROUP, -GROUP, "Ответ сообщества", secret=SECRET)
    for event in (chat, own):
        resp = await client.post(PATH, json=event)
        assert (resp.status, await resp.text()) == (200, "ok")
    assert await registry_of(client).list_messages() == []


async def test_user_names_are_cached(vk, client):
    for i in range(2):
        await client.post(PATH, json=events.message_new(GROUP, USER, f"Жалоба номер {i}: нет связи на даче.", secret=SECRET,
                                                        message_id=i + 1))
    assert len(vk.calls_of("users.get")) == 1


async def test_oversized_attachment_is_recorded_not_dropped(vk, make_config, start_gateway):
    client = await start_gateway(make_config(channels=vk_channel(vk, max_attachment_bytes=1024)))
    big = vk.add_file("big.pdf", b"x" * 4096, "application/pdf")
    event = events.message_new(GROUP, USER, "Прикладываю договор, слишком большой файл.", secret=SECRET,
                               attachments=[events.doc_attachment(big, USER, "contract", "pdf", 4096)])
    assert (await client.post(PATH, json=event)).status == 200
    [new] = await registry_of(client).read_events("test", "c1")
    complaint = new.payload["complaint"]
    assert complaint["attachments"] == []
    assert complaint["meta"]["attachments_not_fetched"][0]["reason"] == "too_large"
    assert complaint["meta"]["attachments_not_fetched"][0]["filename"] == "contract.pdf"
    assert "big.pdf" not in vk.file_requests


async def test_registration_number_quoted_by_the_customer_makes_a_follow_up(vk, client):
    await client.post(PATH, json=events.message_new(GROUP, USER, "Нет интернета третий день подряд.", secret=SECRET))
    [first] = await registry_of(client).read_events("test", "c1")
    follow = events.message_new(GROUP, USER, f"Дополнение к {first.registration_number}: роутер перезагружал.",
                                secret=SECRET, message_id=2)
    await client.post(PATH, json=follow)
    [second] = await registry_of(client).read_events("test", "c1")
    assert second.event == "follow_up" and second.registration_number == first.registration_number


async def test_temporary_failure_answers_503_so_vk_retries(vk, client):
    flaky = FlakySink(client.server.app[ADAPTERS]["vk"])
    event = events.message_new(GROUP, USER, "Не проходят платежи картой.", secret=SECRET)
    resp = await client.post(PATH, json=event)
    assert resp.status == 503 and resp.headers["Retry-After"]
    resp = await client.post(PATH, json=event, headers={"X-Retry-Counter": "1"})
    assert (resp.status, await resp.text()) == (200, "ok")
    [new] = await registry_of(client).read_events("test", "c1")
    assert new.payload["complaint"]["meta"]["vk_retry_counter"] == "1"
    assert flaky.attempts == [event["event_id"]] * 2


# -- Long Poll ---------------------------------------------------------------------------
def longpoll_channel(fake: FakeVk) -> dict[str, Any]:
    return {"vk": {"adapter": "vk", "mode": "longpoll", "group_id": GROUP, "access_token": fake.token,
                   "api_base_url": fake.api_url, "download_hosts": ["127.0.0.1"], "longpoll_wait_seconds": 1,
                   "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05}}



async def test_long_poll_registers_updates_and_saves_ts_after_delivery(vk, make_config, start_gateway):
    client = await start_gateway(make_config(channels=longpoll_channel(vk)))
    registry = registry_of(client)
    await vk.wait_for("groups.getLongPollServer")
    ts = await vk.push_update(events.message_new(GROUP, USER, "Нет горячей воды в квартире."))
    await vk.push_update(events.wall_reply_new(GROUP, USER, "Счёт за свет завышен в два раза."))

    async def saved() -> bool:
        return await registry.get_cursor("vk:vk:ts") == str(ts + 2)

    await wait_until(saved)
    assert sorted(e.event for e in await registry.read_events("test", "c1")) == ["new", "new"]
    [send] = await vk.wait_for("messages.send")
    assert send.params["peer_id"] == str(USER)
    assert vk.calls_of("groups.getLongPollServer")[0].params["group_id"] == str(GROUP)
    assert (await client.post(PATH, json=events.confirmation_event(GROUP, SECRET))).status == 404


async def test_a_long_poll_http_error_is_logged_without_the_key_and_polling_goes_on(vk, make_config, start_gateway, caplog):
    vk.fail_next("a_check", 502)
    client = await start_gateway(make_config(channels=longpoll_channel(vk)))
    await vk.wait_for("groups.getLongPollServer")
    await vk.push_update(events.message_new(GROUP, USER, "Нет горячей воды в квартире."))
    await vk.wait_for("messages.send")
    assert [e.event for e in await registry_of(client).read_events("test", "c1")] == ["new"]
    [failed] = [r for r in caplog.records if r.getMessage() == "pull failed; reconnecting"]
    assert "VK long poll: HTTP 502" in failed.error  # type: ignore[attr-defined]
    assert vk.lp_key not in caplog.text


async def test_long_poll_does_not_advance_ts_when_delivery_fails(vk, make_config, start_gateway):
    client = await start_gateway(make_config(channels=longpoll_channel(vk)))
    adapter = client.server.app[ADAPTERS]["vk"]
    registry = registry_of(client)
    flaky = FlakySink(adapter)
    await vk.wait_for("groups.getLongPollServer")
    start_ts = vk.next_ts
    event = events.message_new(GROUP, USER, "Пропал сигнал на всех каналах.")
    await vk.push_update(event)

    async def saved() -> bool:
        return await registry.get_cursor("vk:vk:ts") == str(start_ts + 1)

    await wait_until(saved)
    assert flaky.attempts == [event["event_id"], event["event_id"]]
    assert len(await registry.read_events("test", "c1")) == 1
    assert await has_metric(client, 'complaint_gateway_pull_failures_total{channel="vk"} 1.0')


async def test_long_poll_resumes_from_saved_ts_after_restart(vk, make_config, start_gateway):
    config = make_config(channels=longpoll_channel(vk))
    first = await start_gateway(config)
    await vk.wait_for("groups.getLongPollServer")
    ts = await vk.push_update(events.message_new(GROUP, USER, "Первая жалоба про роуминг."))

    async def saved() -> bool:
        return await registry_of(first).get_cursor("vk:vk:ts") == str(ts + 1)

    await wait_until(saved)
    await first.close()
    missed = await vk.push_update(events.message_new(GROUP, USER + 1, "Вторая жалоба, пока шлюз был остановлен."))
    polls_before = len(vk.lp_requests)
    second = await start_gateway(config)

    async def both() -> bool:
        return len(await registry_of(second).list_messages()) == 2

    await wait_until(both)
    await vk.wait_for("groups.getLongPollServer", count=2)
    assert vk.lp_requests[polls_before]["ts"] == str(missed)  # the saved ts, not the new session's


async def test_operator_reply_to_a_public_comment_goes_privately(vk, client):
    await client.post(PATH, json=events.wall_reply_new(GROUP, USER, "Когда вернут деньги за простой?", secret=SECRET))
    [message] = await registry_of(client).list_messages()
    await client.server.app[ADAPTERS]["vk"].send_reply(message, "Перерасчёт сделан, деньги вернутся в пятницу.")
    [send] = await vk.wait_for("messages.send")
    assert send.params["peer_id"] == str(USER)
    assert send.params["message"] == "Перерасчёт сделан, деньги вернутся в пятницу."


async def test_client_language_is_taken_from_client_info(vk, client):
    await client.post(PATH, json=events.message_new(GROUP, USER, "Internet does not work since yesterday.", secret=SECRET,
                                                    lang_id=3))
    [new] = await registry_of(client).read_events("test", "c1")
    assert new.payload["complaint"]["language"] == "en"


async def test_names_of_writers_arriving_together_are_asked_for_in_one_call(vk, client):
    import asyncio

    writers = {9100 + i: (f"Имя{i}", f"Фамилия{i}") for i in range(6)}
    vk.users.update(writers)
    posts = [client.post(PATH, json=events.message_new(GROUP, user, f"Жалоба жителя {user}: нет связи в подъезде.",
                                                       secret=SECRET, message_id=user)) for user in writers]
    assert [r.status for r in await asyncio.gather(*posts)] == [200] * len(writers)
    messages = await registry_of(client).list_messages()
    named = {int(m.customer.identities[0].value): m.customer.name for m in messages}
    assert named == {user: f"{first} {last}" for user, (first, last) in writers.items()}
    calls = vk.calls_of("users.get")
    assert len(calls) < len(writers)  # asked together (the first writer's call may go alone)
    assert sorted(int(u) for call in calls for u in call.params["user_ids"].split(",")) == sorted(writers)


QUICK_RETRY = {"retry": {"attempts": 3, "first_delay_seconds": 0.05}}


async def test_a_failed_acknowledgement_is_sent_again_with_the_same_random_id(vk, make_config, start_gateway):
    client = await start_gateway(make_config(channels=vk_channel(vk), acknowledgements=QUICK_RETRY))
    vk.fail_next("messages.send", (10, "Internal server error"))
    event = events.message_new(GROUP, USER, "Третий день нет интернета.", secret=SECRET)
    assert (await client.post(PATH, json=event)).status == 200

    first, second = await vk.wait_for("messages.send", 2)
    assert first.params["random_id"] == second.params["random_id"]  # VK delivers it once, however often it is sent
    assert first.params["message"] == second.params["message"]
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="vk",result="sent"} 1.0'))
    assert await has_metric(client, 'complaint_gateway_acknowledgements_total{channel="vk",result="retried"} 1.0')


async def test_an_acknowledgement_the_user_does_not_allow_is_not_sent_again(vk, make_config, start_gateway):
    client = await start_gateway(make_config(channels=vk_channel(vk), acknowledgements=QUICK_RETRY))
    vk.fail_next("messages.send", (901, "Can't send messages for users without permission"))
    event = events.message_new(GROUP, USER, "Третий день нет интернета.", secret=SECRET)
    assert (await client.post(PATH, json=event)).status == 200
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="vk",result="failed"} 1.0'))
    await asyncio.sleep(0.3)  # several back-offs: nothing more is sent
    assert len(vk.calls_of("messages.send")) == 1


async def send_while_vk_holds_the_first(vk: FakeVk, client: Any, writers: list[int], failures: tuple[Any, ...] = ()) -> None:
    """The first writer's acknowledgement taken by VK and not answered while the others
    register: theirs wait together for the next call. ``failures``: of the calls from the
    held one on (None: goes through)."""
    vk.pause("messages.send")
    first = events.message_new(GROUP, USER, "Третий день нет интернета.", secret=SECRET)
    assert (await client.post(PATH, json=first)).status == 200
    await vk.wait_for("messages.send", 1)
    posts = [client.post(PATH, json=events.message_new(GROUP, user, f"Жалоба жителя {user}: нет связи в подъезде.",
                                                       secret=SECRET, message_id=user)) for user in writers]
    assert [r.status for r in await asyncio.gather(*posts)] == [200] * len(writers)
    await asyncio.sleep(0.1)  # every acknowledgement started
    vk.fail_next("messages.send", *failures)
    vk.resume("messages.send")


def sent_to(vk: FakeVk) -> dict[int, list[dict[str, str]]]:
    sends: dict[int, list[dict[str, str]]] = {}
    for call in vk.calls_of("messages.send"):
        sends.setdefault(int(call.params["peer_id"]), []).append(call.params)
    return sends


def acknowledgements(result: str, count: int) -> str:
    return f'complaint_gateway_acknowledgements_total{{channel="vk",result="{result}"}} {count}.0'


async def test_acknowledgements_waiting_together_go_out_in_one_execute(vk, make_config, start_gateway):
    # VK allows a community 20 calls a second: one call per acknowledgement would cap the door
    client = await start_gateway(make_config(channels=vk_channel(vk), acknowledgements=QUICK_RETRY))
    writers = [9200 + i for i in range(30)]
    vk.users.update({user: (f"Имя{i}", "Фамилия") for i, user in enumerate(writers)})
    await send_while_vk_holds_the_first(vk, client, writers)
    await wait_until(lambda: has_metric(client, acknowledgements("sent", 31)))

    assert len(vk.calls_of("execute")) == 2  # 30 waiting: 25, then 5
    sends = sent_to(vk)
    assert sorted(sends) == sorted([USER, *writers]) and all(len(s) == 1 for s in sends.values())  # each once
    registered = await registry_of(client).read_events("test", "c1", count=40)
    assert len(registered) == 31
    for event in registered:
        [params] = sends[int(event.payload["complaint"]["customer"]["identities"][0]["value"])]
        assert params["message"] == expected_acknowledgement(client.server.app, event) and int(params["random_id"]) > 0


async def test_in_one_execute_each_acknowledgement_keeps_its_own_fate(vk, make_config, start_gateway):
    client = await start_gateway(make_config(channels=vk_channel(vk), acknowledgements=QUICK_RETRY))
    writers = [9300, 9301, 9302]
    vk.users.update({user: ("Имя", "Фамилия") for user in writers})
    # in the execute, one writer's VK refuses for good, another's fails once
    await send_while_vk_holds_the_first(vk, client, writers, (None, (901, "Can't send messages for users without permission"),
                                                              (10, "Internal server error")))
    await wait_until(lambda: has_metric(client, acknowledgements("sent", 3)))
    assert await has_metric(client, acknowledgements("failed", 1)) and await has_metric(client, acknowledgements("retried", 1))
    assert len(vk.calls_of("execute")) == 1
    counts = sorted(len(s) for s in sent_to(vk).values())
    assert counts == [1, 1, 1, 2]  # the refused one not again; the failed one again, alone
    [again] = [s for s in sent_to(vk).values() if len(s) == 2]
    assert again[0]["random_id"] == again[1]["random_id"]


async def test_an_execute_that_fails_as_a_whole_is_tried_again_message_by_message(vk, make_config, start_gateway):
    client = await start_gateway(make_config(channels=vk_channel(vk), acknowledgements=QUICK_RETRY))
    writers = [9400, 9401, 9402]
    vk.users.update({user: ("Имя", "Фамилия") for user in writers})
    vk.fail_next("execute", (10, "Internal server error"))
    await send_while_vk_holds_the_first(vk, client, writers)
    await wait_until(lambda: has_metric(client, acknowledgements("sent", 4)))
    assert await has_metric(client, acknowledgements("retried", 3))
    assert sorted(sent_to(vk)) == sorted([USER, *writers]) and all(len(s) == 1 for s in sent_to(vk).values())


def test_the_vk_client_reads_the_environment_once_per_host_as_requests_does(monkeypatch):
    import requests

    from channels.social import vk_client

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "lp.vk.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session, plain = vk_client._RoutedSession("https://api.vk.example/method/", 5.0), requests.Session()
    urls = ("https://api.vk.example/method/messages.send", "https://api.vk.example/method/users.get", "https://lp.vk.example/lp")
    expected = {url: plain.merge_environment_settings(url, {}, None, None, None) for url in urls}
    assert expected[urls[0]]["proxies"]["https"] == "http://proxy.example:3128" and "https" not in expected[urls[2]]["proxies"]

    read = []
    original = requests.sessions.get_environ_proxies
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", lambda *a, **k: read.append(a[0]) or original(*a, **k))
    for _ in range(3):
        for url in urls:
            assert session.merge_environment_settings(url, {}, None, None, None) == expected[url]
    assert read == [urls[0], urls[2]]  # once per host
    given = {"https": "http://other.example:8080"}  # a call's own proxies: as requests does, not cached
    assert session.merge_environment_settings(urls[0], dict(given), None, None, None)["proxies"]["https"] == given["https"]
