"""VK in Long Poll mode passes the pull-adapter conformance suite against the fake VK API
(groups.getLongPollServer and the Bots Long Poll server on loopback, called by vk-api)."""
from __future__ import annotations

from typing import Any

from channels.social.fakes import vk as vk_events
from channels.social.fakes.vk import FakeVk
from gateway.testing.conformance import Expect, PullAdapterConformance, PullHarness, wait_for

GROUP = 218_555_001
MESSAGES = [(606_001, ("Наталья", "Орлова"), "Жалоба: второй день нет горячей воды, в диспетчерской не отвечают.")]


class TestVkLongPollConformance(PullAdapterConformance):
    adapter = "vk"
    instance = "vk_lp"

    async def channel_settings(self) -> dict[str, Any]:
        self.fake = FakeVk(group_id=GROUP)
        await self.fake.start()
        for user_id, name, _ in MESSAGES:
            self.fake.users[user_id] = name
        return {"mode": "longpoll", "group_id": GROUP, "access_token": self.fake.token,
                "api_base_url": self.fake.api_url, "longpoll_wait_seconds": 1}

    async def cleanup(self) -> None:
        await self.fake.close()

    async def prepare(self, harness: PullHarness) -> None:
        """VK's Long Poll starts from "now": one (empty) cycle gets the key and the ts."""
        await harness.pull()
        assert await harness.registry.get_cursor(f"vk:{self.instance}:ts") == str(self.fake.next_ts)

    async def put_message(self, index: int) -> None:
        user_id, _, text = MESSAGES[index]
        await self.fake.push_update(vk_events.message_new(GROUP, user_id, text, event_id=f"lp-conformance-{index}",
                                                          message_id=100 + index))

    def expect(self, index: int) -> Expect:
        user_id, (first, last), text = MESSAGES[index]
        return Expect(identities=[("vk", str(user_id))], text_contains=[text], language="ru", name=f"{first} {last}",
                      reply_to=("vk", str(user_id)), attachments=0, auto_submitted=False)

    # -- beyond the suite ------------------------------------------------------------------
    async def test_pulled_message_is_acknowledged_by_private_message(self, harness: PullHarness) -> None:
        await self._prepared(harness)
        await self.put_message(0)
        await harness.pull()
        events = await wait_for(harness.events)
        await harness.adapter.drain()
        sent = self.fake.calls_of("messages.send")
        assert [c.params["peer_id"] for c in sent] == [str(MESSAGES[0][0])]
        assert events[0].registration_number in sent[0].params["message"]
