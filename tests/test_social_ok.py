"""The Odnoklassniki door end to end: webhook in, registered, answer in the chat, against a
fake OK Bot API on loopback; the subscription commands run as a real process."""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.social.fakes import ok as events
from channels.social.fakes.ok import FakeOk
from channels.social.fakes.testing import FlakySink, expected_acknowledgement, has_metric, wait_until
from gateway.app import ADAPTERS
from tests.conftest import base_config, registry_of

PATH_SECRET = "pK7vR2mX9qL4sT8wZ3nB"
PATH = f"/channels/ok/ok/{PATH_SECRET}"
USER = "user:575662066926"
CHAT = "chat:C3ecb9d02a600"


@pytest.fixture
async def ok():
    async with FakeOk() as fake:
        yield fake


def ok_channel(fake: FakeOk, **overrides: Any) -> dict[str, Any]:
    return {"ok": {"adapter": "ok", "access_token": fake.token, "path_secret": PATH_SECRET,
                   "allowed_networks": ["127.0.0.0/8", "::1/128"], "api_base_url": fake.api_url,
                   "download_hosts": ["127.0.0.1"], **overrides}}


@pytest.fixture
async def client(ok, make_config, start_gateway):
    return await start_gateway(make_config(channels=ok_channel(ok)))



async def test_chat_message_with_image_is_registered_and_answered_in_the_chat(ok, client):
    photo = b"\xff\xd8\xff meter photo"
    image = ok.add_file("meter.jpg", photo, "image/jpeg")
    event = events.message_created(USER, CHAT, "Счётчик показывает неверные данные, фото прилагаю.", name="Мария Смирнова",
                                   attachments=[events.image_attachment(image), events.share_attachment("https://ok.ru/x")])
    resp = await client.post(PATH, json=event)
    assert resp.status == 200

    [new] = await registry_of(client).read_events("test", "c1")
    complaint = new.payload["complaint"]
    assert complaint["customer"]["identities"] == [{"kind": "ok", "value": "575662066926"}]
    assert complaint["customer"]["name"] == "Мария Смирнова"
    assert complaint["channel_message_id"] == event["message"]["mid"]
    assert [(a["filename"], a["size"]) for a in complaint["attachments"]] == [("image_895214812336.jpg", len(photo))]
    assert complaint["meta"]["ok_unsupported_attachments"] == ["SHARE"]

    [answer] = await ok.wait_for("messages")
    assert answer.params["chat_id"] == CHAT
    assert answer.params["body"]["recipient"] == {"chat_id": CHAT}
    assert new.registration_number in answer.params["body"]["message"]["text"]
    assert answer.params["body"]["message"]["text"] == expected_acknowledgement(client.server.app, new)
    assert answer.params["query"]["access_token"] == ok.token


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_redelivered_message_adds_nothing(ok, make_config, start_gateway, redis_url, backend):
    client = await start_gateway(make_config(backend=backend, channels=ok_channel(ok)))
    event = events.message_created(USER, CHAT, "Интернет пропадает каждый вечер.")
    statuses = [(await client.post(PATH, json=event)).status for _ in range(2)]
    assert statuses == [200, 200]
    registry = registry_of(client)
    [new] = await registry.read_events("test", "c1")
    assert (await registry.get_customer(new.customer_id))["registrations"] == [new.registration_number]
    assert await has_metric(client, 'complaint_gateway_duplicate_total{channel="ok"} 1.0')
    await client.server.app[ADAPTERS]["ok"].drain()
    assert len(ok.calls_of("messages")) == 1


async def test_wrong_path_secret_is_refused_and_not_logged(client, caplog):
    with caplog.at_level(logging.DEBUG):
        resp = await client.post("/channels/ok/ok/guessed-secret-value", json=events.message_created(USER, CHAT, "Поддельное"))
    assert resp.status == 404
    assert await has_metric(client, 'complaint_gateway_rejected_total{channel="ok",reason="bad_secret"} 1.0')
    assert await registry_of(client).queue_length() == 0
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records if r.name.startswith("complaint_gateway"))
    assert "wrong path secret" in logged
    assert "guessed-secret-value" not in logged and PATH_SECRET not in logged


async def test_request_from_outside_the_allowed_networks_is_refused(ok, make_config, start_gateway):
    client = await start_gateway(make_config(channels=ok_channel(ok, allowed_networks=["217.20.145.192/28"])))
    resp = await client.post(PATH, json=events.message_created(USER, CHAT, "Жалоба не из сети OK."))
    assert resp.status == 403
    assert await has_metric(client, 'complaint_gateway_rejected_total{channel="ok",reason="forbidden_network"} 1.0')
    assert await registry_of(client).queue_length() == 0


async def test_forwarded_for_is_read_from_the_proxy_end(ok, make_config, start_gateway):
    client = await start_gateway(make_config(channels=ok_channel(
        ok, allowed_networks=["217.20.145.192/28"], trust_forwarded_for=True)))
    event = events.message_created(USER, CHAT, "Через прокси от OK: нет связи в доме.")
    forged = await client.post(PATH, json=event, headers={"X-Forwarded-For": "217.20.145.200, 203.0.113.9"})
    assert forged.status == 403  # the client claimed an OK address; the proxy saw 203.0.113.9
    accepted = await client.post(PATH, json=event, headers={"X-Forwarded-For": "203.0.113.9, 217.20.145.200"})
    assert accepted.status == 200
    assert await registry_of(client).queue_length() == 1


async def test_malformed_json_gets_400_and_a_log_line(client, caplog):
    with caplog.at_level(logging.WARNING):
        resp = await client.post(PATH, data=b"{'not': json}", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert any(r.getMessage() == "malformed request" and getattr(r, "channel", None) == "ok" for r in caplog.records)
    assert await has_metric(client, 'complaint_gateway_rejected_total{channel="ok",reason="malformed"} 1.0')


async def test_other_webhook_types_are_answered_and_skipped(client):
    resp = await client.post(PATH, json={"webhookType": "CHAT_SYSTEM", "recipient": {"chat_id": CHAT},
                                         "timestamp": 1498581292941})
    assert resp.status == 200
    assert await registry_of(client).list_messages() == []


async def test_message_without_sender_is_kept_as_dead_letter(client):
    resp = await client.post(PATH, json={"webhookType": "MESSAGE_CREATED", "recipient": {"chat_id": CHAT},
                                         "message": {"text": "без отправителя", "mid": "mid:broken.1"}})
    assert resp.status == 200
    [dead] = await registry_of(client).list_dead_letters()
    assert dead["record"]["message_id"] == "mid:broken.1"


async def test_temporary_failure_answers_503(ok, client):
    adapter = client.server.app[ADAPTERS]["ok"]
    FlakySink(adapter)
    resp = await client.post(PATH, json=events.message_created(USER, CHAT, "Хранилище недоступно."))
    assert resp.status == 503


async def test_operator_reply_goes_to_the_chat(ok, client):
    await client.post(PATH, json=events.message_created(USER, CHAT, "Не приходит квитанция за газ."))
    [message] = await registry_of(client).list_messages()
    await client.server.app[ADAPTERS]["ok"].send_reply(message, "Квитанция отправлена повторно.")
    calls = await ok.wait_for("messages", count=2)
    assert calls[-1].params["body"]["message"]["text"] == "Квитанция отправлена повторно."


QUICK_RETRY = {"retry": {"attempts": 4, "first_delay_seconds": 0.01, "max_delay_seconds": 0.02}}


async def test_oks_outage_and_flood_limit_are_sent_again_until_the_answer_goes_through(ok, make_config, start_gateway):
    client = await start_gateway(make_config(channels=ok_channel(ok), acknowledgements=QUICK_RETRY))
    ok.fail_next("messages", (2, "SERVICE : Service is temporary unavailable"), (8, "FLOOD_BLOCKED : Flood"))
    assert (await client.post(PATH, json=events.message_created(USER, CHAT, "Нет интернета с утра."))).status == 200
    calls = await ok.wait_for("messages", 3)
    [new] = await registry_of(client).read_events("test", "c1")
    assert [c.params["body"]["message"]["text"] for c in calls] == [expected_acknowledgement(client.server.app, new)] * 3
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="ok",result="sent"} 1.0'))
    assert await has_metric(client, 'complaint_gateway_acknowledgements_total{channel="ok",result="retried"} 2.0')


@pytest.mark.parametrize("code, message", [(458, "PRIVACY_RESTRICTION : privacy"), (454, "CENSOR_MATCH : text rejected"),
                                           (102, "PARAM_SESSION_EXPIRED : Session expired")])
async def test_an_answer_ok_refuses_for_good_is_not_sent_again(ok, make_config, start_gateway, caplog, code, message):
    client = await start_gateway(make_config(channels=ok_channel(ok), acknowledgements=QUICK_RETRY))
    ok.fail_next("messages", (code, message))
    assert (await client.post(PATH, json=events.message_created(USER, CHAT, "Нет интернета с утра."))).status == 200
    await wait_until(lambda: has_metric(client, 'complaint_gateway_acknowledgements_total{channel="ok",result="failed"} 1.0'))
    await asyncio.sleep(0.1)  # several back-offs: nothing more is sent
    assert len(ok.calls_of("messages")) == 1
    [failed] = [r for r in caplog.records if r.getMessage() == "acknowledgement failed"]
    assert failed.attempts == 1 and f"OK API error {code}" in failed.error  # type: ignore[attr-defined]


async def test_an_http_error_of_ok_is_logged_without_the_token_in_its_url(ok, make_config, start_gateway, caplog):
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bad_gateway)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        client = await start_gateway(make_config(channels=ok_channel(ok, api_base_url=str(server.make_url("/graph"))),
                                                 acknowledgements={"retry": {"attempts": 1}}))
        assert (await client.post(PATH, json=events.message_created(USER, CHAT, "Нет света с утра."))).status == 200
        await client.server.app[ADAPTERS]["ok"].drain()
    finally:
        await server.close()
    [failed] = [r for r in caplog.records if r.getMessage() == "acknowledgement failed"]
    assert "HTTP 502" in failed.error  # type: ignore[attr-defined]
    assert ok.token not in caplog.text


# -- the subscription commands -------------------------------------------------------------
async def run_cli(tmp_path, ok: FakeOk, *args: str, **overrides: Any) -> tuple[int, str, str]:
    config = base_config(tmp_path, channels=ok_channel(ok, **overrides), http={"public_base_url": "https://complaints.example.com"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", "-c", str(path), "ok", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_cli_subscribe_list_and_unsubscribe(ok, tmp_path):
    code, out, _ = await run_cli(tmp_path, ok, "subscribe")
    expected_url = f"https://complaints.example.com/channels/ok/ok/{PATH_SECRET}"
    assert code == 0
    assert list(ok.subscriptions) == [expected_url]
    assert json.loads(out) == {"command": "subscribe", "url": "https://complaints.example.com/channels/ok/ok/***",
                               "success": True}
    assert PATH_SECRET not in out

    code, out, _ = await run_cli(tmp_path, ok, "subscriptions")
    assert code == 0
    [listed] = [json.loads(line) for line in out.splitlines()]
    assert listed["url"].endswith("/***") and isinstance(listed["time"], int)

    code, out, _ = await run_cli(tmp_path, ok, "unsubscribe")
    assert code == 0 and ok.subscriptions == {}
    assert [c.params["body"] for c in ok.calls_of("unsubscribe")] == [{"url": expected_url}]


async def test_cli_reports_an_api_error(ok, tmp_path):
    code, _, err = await run_cli(tmp_path, ok, "subscribe", "--url", "https://hooks.example.com/x", access_token="expired")
    assert code == 1
    assert "OK API error 102" in err
    assert ok.subscriptions == {}
