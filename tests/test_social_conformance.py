"""VK, OK and Telegram pass the adapter conformance suite (with their fakes on loopback)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from channels.social.fakes import ok as ok_events
from channels.social.fakes import telegram as tg
from channels.social.fakes import vk as vk_events
from channels.social.fakes.ok import FakeOk
from channels.social.fakes.telegram import FakeTelegram
from channels.social.fakes.vk import FakeVk
from gateway.testing.conformance import Delivery, Expect, PullAdapterConformance, PushAdapterConformance

pytestmark = [pytest.mark.filterwarnings("ignore:Please use 'Bot.getUpdates':telegram.warnings.PTBUserWarning"),
              pytest.mark.filterwarnings("ignore:Please use 'Bot.sendMessage':telegram.warnings.PTBUserWarning")]

JSON = {"Content-Type": "application/json"}


def body(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


class TestVkConformance(PushAdapterConformance):
    adapter = "vk"
    instance = "vk_group"
    secret = "conformance-secret"
    event = vk_events.message_new(4242, 777001, "Второй день не работает домашний телефон.", secret=secret,
                                  event_id="conf-event-1", lang_id=0)

    async def channel_settings(self) -> dict[str, Any]:
        self.fake = await FakeVk(group_id=4242).start()
        self.fake.users[777001] = ("Ольга", "Сидорова")
        return {"group_id": 4242, "access_token": self.fake.token, "confirmation_code": "c0de", "secret": self.secret,
                "api_base_url": self.fake.api_url}

    async def cleanup(self) -> None:
        await self.fake.close()

    def deliveries(self) -> list[Delivery]:
        return [Delivery("message_new", "/channels/vk/vk_group", body(self.event), JSON, expect=Expect(
            identities=[("vk", "777001")], text_contains=["домашний телефон"], language="ru", name="Ольга Сидорова",
            reply_to=("vk", "777001"), attachments=0))]

    def forged(self, delivery: Delivery) -> Delivery:
        return Delivery("forged", delivery.path, body({**self.event, "secret": "guessed"}), JSON)

    def malformed(self) -> Delivery:
        return Delivery("broken", "/channels/vk/vk_group", b'{"type": "message_new"', JSON)

    async def acknowledgements(self) -> list[str]:
        return [c.params.get("message", "") for c in self.fake.calls_of("messages.send")]


class TestOkConformance(PushAdapterConformance):
    adapter = "ok"
    instance = "ok_group"
    path = "/channels/ok/ok_group/conformance-path-secret-1"
    from_ok = {**JSON, "X-Forwarded-For": "217.20.145.200"}
    event = ok_events.message_created("user:910000000001", "chat:C3ecb9d02a601", "Не пришёл перерасчёт за отопление.",
                                      name="Павел Орлов", mid="mid:C3ecb9d02a601.1")

    async def channel_settings(self) -> dict[str, Any]:
        self.fake = await FakeOk().start()
        # the test client is no OK server: requests count as OK's only with OK's address in X-Forwarded-For
        return {"access_token": self.fake.token, "path_secret": "conformance-path-secret-1",
                "trust_forwarded_for": True, "api_base_url": self.fake.api_url}

    async def cleanup(self) -> None:
        await self.fake.close()

    def deliveries(self) -> list[Delivery]:
        return [Delivery("message_created", self.path, body(self.event), self.from_ok, expect=Expect(
            identities=[("ok", "910000000001")], text_contains=["перерасчёт"], name="Павел Орлов",
            reply_to=("ok", "910000000001")))]

    def forged(self, delivery: Delivery) -> Delivery:
        return Delivery("not from OK", delivery.path, delivery.body, {**JSON, "X-Forwarded-For": "203.0.113.7"})

    def malformed(self) -> Delivery:
        return Delivery("broken", self.path, b"not json at all", self.from_ok)

    async def acknowledgements(self) -> list[str]:
        return [c.params["body"]["message"]["text"] for c in self.fake.calls_of("messages")]


class TestTelegramConformance(PushAdapterConformance):
    adapter = "telegram"
    instance = "tg_bot"
    headers = {**JSON, "X-Telegram-Bot-Api-Secret-Token": "conformance-token"}
    update = tg.message_update(31337, tg.user(606060, "Jan", "Kowalski", language_code="pl"),
                               text="Od tygodnia nie działa telewizja kablowa.", message_id=5)

    async def channel_settings(self) -> dict[str, Any]:
        self.fake = await FakeTelegram().start()
        return {"token": self.fake.token, "secret_token": "conformance-token", "api_base_url": self.fake.base_url,
                "file_base_url": self.fake.base_file_url}

    async def cleanup(self) -> None:
        await self.fake.close()

    def deliveries(self) -> list[Delivery]:
        return [Delivery("private text", "/channels/telegram/tg_bot", body(self.update), self.headers, expect=Expect(
            identities=[("telegram", "606060")], text_contains=["telewizja kablowa"], language="pl",
            name="Jan Kowalski", reply_to=("telegram", "606060")))]

    def forged(self, delivery: Delivery) -> Delivery:
        return Delivery("forged", delivery.path, delivery.body, {**JSON, "X-Telegram-Bot-Api-Secret-Token": "guess"})

    def malformed(self) -> Delivery:
        return Delivery("broken", "/channels/telegram/tg_bot", b'{"update_id": ', self.headers)

    async def acknowledgements(self) -> list[str]:
        return [str(c.params.get("text", "")) for c in self.fake.calls_of("sendMessage")]


class TestTelegramPollingConformance(PullAdapterConformance):
    adapter = "telegram"
    instance = "tg_poll"

    async def channel_settings(self) -> dict[str, Any]:
        self.fake = await FakeTelegram().start()
        return {"token": self.fake.token, "mode": "polling", "polling_timeout_seconds": 0,
                "api_base_url": self.fake.base_url, "file_base_url": self.fake.base_file_url}

    async def cleanup(self) -> None:
        await self.fake.close()

    async def put_message(self, index: int) -> None:
        sender = tg.user(707070 + index, "Ivan", "Petrov", language_code="ru")
        await self.fake.push_update(tg.message_update(5000 + index, sender, text=f"Жалоба {index}: нет связи в лифте."))

    def expect(self, index: int) -> Expect:
        return Expect(identities=[("telegram", str(707070 + index))], text_contains=["нет связи"], language="ru",
                      name="Ivan Petrov")
