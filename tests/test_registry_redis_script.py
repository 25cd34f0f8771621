"""The Redis registry's submit script: what one call does when its arguments are broken, or many."""
from __future__ import annotations

import logging
import struct
import time
from datetime import timedelta

import pytest
import redis as redis_sync
from test_registry_contract import NOW, complaint, opened_numbers, registrations_with_deadlines

from gateway.inbound import Receipt
from gateway.registry import RegistrySettings
from gateway.registry.base import epoch, make_plan
from gateway.registry.redis import RedisRegistry
from normalizer.schema import Complaint


async def test_a_script_call_with_unreadable_parameters_writes_nothing(redis_url: str) -> None:
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        assert (await reg.submit(complaint("Нет связи"))).registration_number == "2026-000001"
        good = reg._submit_args(make_plan(complaint("Не работает телевидение"), reg.settings, reg.number_format),
                               "2026-03-10T09:00:00Z")
        before = {key: await reg.r.dump(key) for key in await reg.r.keys("cgtest:*")}
        with pytest.raises(redis_sync.ResponseError):
            await reg.r.evalsha(reg._submit_script.sha, 1, reg.prefix, *good, "{not json", "piece")
        assert {key: await reg.r.dump(key) for key in await reg.r.keys("cgtest:*")} == before
        assert (await reg.submit(complaint("Не работает телевидение"))).registration_number == "2026-000002"
    finally:
        await reg.close()


async def test_a_registration_written_with_its_first_message_in_the_list_reads_the_same(redis_url: str) -> None:
    """Earlier versions listed a registration's first message in ``registration:N:messages``
    too; now only the hash names it. Both read as one message list, in order."""
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        first = await reg.submit(complaint("Нет интернета с утра, роутер мигает"))
        assert await reg.r.exists("cgtest:registration:2026-000001:messages") == 0
        again = await reg.submit(complaint("Нет интернета с утра, роутер мигает!"))
        assert again.status == "repeat"
        new_layout = await reg.get_registration("2026-000001")
        await reg.r.lpush("cgtest:registration:2026-000001:messages", first.complaint_id or "")  # as written before
        old_layout = await reg.get_registration("2026-000001")
        assert new_layout == old_layout
        assert new_layout is not None
        assert [(m["kind"], m["complaint"]["id"]) for m in new_layout["messages"]] == [
            ("new", first.complaint_id), ("repeat", again.complaint_id)]
        state = await reg.registration_state("2026-000001")
        assert state is not None and list(state["kinds"].items()) == [(first.complaint_id, "new"), (again.complaint_id, "repeat")]
    finally:
        await reg.close()


async def test_a_batch_past_luas_unpack_limit_reads_and_writes_every_identity_and_receipt(redis_url: str) -> None:
    """The script reads a whole batch's receipts and identities, and writes what it adds to
    them and to the timeline, in commands of at most 1 000 values: Lua's ``unpack`` refuses
    about 8 000. 2 100 new customers with two identities each make 8 400 values to write."""
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        batch = [complaint(f"Жалоба {i}: нет связи", ids=[("phone", f"+7916{i:07d}"), ("email", f"c{i}@example.com")],
                           message_id=f"m-{i}") for i in range(2100)]
        receipts = await reg.submit_many(batch)
        assert [r.registration_number for r in receipts] == [f"2026-{i:06d}" for i in range(1, 2101)]  # type: ignore[union-attr]
        assert await reg.r.hlen("cgtest:identity") == 4200
        assert await reg.r.hlen("cgtest:receipts") == await reg.r.zcard("cgtest:timeline") == 2100
        customers = {r.customer_id for r in receipts}  # type: ignore[union-attr]
        assert len(customers) == 2100
        later = complaint("Снова нет связи", ids=[("email", "c2099@example.com")])
        again = await reg.submit_many([complaint("Ещё раз", ids=[("email", "c2099@example.com")], message_id="m-2099"), later])
        assert [r.status for r in again] == ["duplicate", "new"]  # type: ignore[union-attr]
        assert again[1].customer_id == receipts[2099].customer_id  # type: ignore[union-attr]
        assert [m.id for m in await reg.list_messages(limit=3)] == [later.id, batch[2099].id, batch[2098].id]
    finally:
        await reg.close()


async def test_registrations_opened_before_the_index_of_deadlines_are_indexed_when_the_registry_opens(redis_url: str) -> None:
    """What an earlier version left (no ``due`` field, no sorted sets, no ``due_indexed``)
    is indexed from each registration's first message when the registry opens, once."""
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        numbers = opened_numbers(await registrations_with_deadlines(reg))
        now = time.time()
        expected = await reg.registrations_due(now)
        await reg.r.delete("cgtest:due_indexed", "cgtest:due_names", *await reg.r.keys("cgtest:due:*"))
        for number in numbers.values():
            await reg.r.hdel("cgtest:registration:" + number, "due")
        assert await reg.registrations_due(now) == {}
    finally:
        await reg.close()
    assert expected == {"acknowledge": {"pending": 2, "overdue": 1, "due_soon": 0}, "respond": {"pending": 2, "overdue": 1, "due_soon": 0}}

    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        assert await reg.registrations_due(now) == expected
        assert await reg.r.get("cgtest:due_indexed") == "1"
        await reg.apply_action(numbers["open, first answer late"], "claim", "olga")  # its respond: 90 hours on
        assert await reg.registrations_due(now) == {"acknowledge": {"pending": 1, "overdue": 0, "due_soon": 0},
                                                    "respond": {"pending": 3, "overdue": 1, "due_soon": 0}}
        # the script leaves an indexed registration as it is, and refuses a state read before a change
        number, key = numbers["no deadlines"], "cgtest:registration:" + numbers["no deadlines"]
        assert await reg._index_due_script(keys=[key, "cgtest:due:respond", "cgtest:due_names"],
                                           args=["open", "respond", "1.0", number]) == 0
        await reg.r.hdel(key, "due")
        assert await reg._index_due_script(keys=[key, "cgtest:due:respond", "cgtest:due_names"],
                                           args=["claimed", "respond", "1.0", number]) == -1
        assert await reg._index_due_script(keys=[key, "cgtest:due:respond", "cgtest:due_names"],
                                           args=["open", "respond", "1.0", number]) == 1
        assert (await reg.registrations_due(now))["respond"] == {"pending": 4, "overdue": 2, "due_soon": 0}
    finally:
        await reg.close()


async def test_a_state_filter_reads_the_index_of_states_so_an_old_claimed_complaint_is_on_the_first_page(redis_url: str) -> None:
    """The messages of a registration are in the sorted set of its state (``state:<state>``),
    moved with it, later messages included: a search for a state looks at those alone."""
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        old = await reg.submit(complaint("Старая жалоба про связь", ids=[("email", "old@example.com")], channel="email"))
        number = old.registration_number or ""
        await reg.apply_action(number, "claim", "olga")
        follow_up = await reg.submit(complaint("Ответьте, пожалуйста", ids=[("email", "old@example.com")], in_reply_to=number,
                                               at=NOW + timedelta(seconds=30)))
        assert follow_up.status == "follow_up"
        for i in range(12):
            await reg.submit(complaint(f"Новая жалоба {i} про связь", ids=[("phone", f"+7916200{i:04d}")],
                                       at=NOW + timedelta(minutes=1 + i)))
        auto = await reg.submit(complaint("Автоответ: я в отпуске", ids=[("phone", "+79162009999")], auto=True))
        assert auto.status == "automatic"

        async def ids_in(state: str, scan_limit: int = 2) -> list[str]:
            found = await reg.search(state=state, scan_limit=scan_limit, limit=20)
            assert found.scan_limited is False
            return [r["complaint"]["id"] for r in found.rows]

        assert await ids_in("claimed") == [follow_up.complaint_id, old.complaint_id]
        await reg.apply_action(number, "close", "olga")
        assert await ids_in("claimed") == [] and await ids_in("closed") == [follow_up.complaint_id, old.complaint_id]
        assert len(await ids_in("open", scan_limit=100)) == 12  # the automatic reply belongs to no registration
        await reg.apply_action(number, "reopen", "olga")
        assert (await ids_in("open", scan_limit=100))[-2:] == [follow_up.complaint_id, old.complaint_id]
        await reg.apply_action(number, "claim", "olga")

        # a registry written before the index of states gets it when opened, and the same answers
        await reg.r.delete("cgtest:states_indexed", *await reg.r.keys("cgtest:state:*"))
        await reg.close()
        await reg.open()
        assert await reg.r.get("cgtest:states_indexed") == "1"
        assert await ids_in("claimed") == [follow_up.complaint_id, old.complaint_id]
        assert len(await ids_in("open", scan_limit=100)) == 12
        # the script leaves a message already in a state's set where it is
        keys = ["cgtest:registration:" + number, "cgtest:timeline", *("cgtest:state:" + s for s in ("open", "claimed", "closed"))]
        assert await reg._index_state_script(keys=keys, args=[old.complaint_id, "open", "claimed", "closed"]) == 0
        await reg.r.zrem("cgtest:state:claimed", old.complaint_id)
        assert await reg._index_state_script(keys=keys, args=[old.complaint_id, "open", "claimed", "closed"]) == 1
        assert await ids_in("claimed") == [follow_up.complaint_id, old.complaint_id]
    finally:
        await reg.close()


async def test_the_overdue_filter_reads_only_the_messages_of_registrations_not_closed(redis_url: str) -> None:
    """On Redis the overdue filter reads the index of states' open and claimed sets, merged
    in the timeline's order: an old overdue complaint is found past twelve closed ones by a
    search that may look at two messages."""
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        first = complaint("Старая жалоба про связь", ids=[("email", "old@example.com")], channel="email")
        first.deadlines = {"acknowledge": "2026-03-10T17:00:00Z", "respond": "2026-03-11T09:00:00Z"}  # NOW: March 2026
        old = await reg.submit(first)
        claimed = complaint("Жалоба, взятая в работу", ids=[("email", "claimed@example.com")], at=NOW + timedelta(seconds=1))
        claimed.deadlines = {"acknowledge": "2026-03-10T17:00:00Z", "respond": "2026-03-11T09:00:00Z"}
        taken = await reg.submit(claimed)
        await reg.apply_action(taken.registration_number or "", "claim", "olga")
        for i in range(12):
            later = complaint(f"Новая жалоба {i} про связь", ids=[("phone", f"+7916200{i:04d}")], at=NOW + timedelta(minutes=1 + i))
            later.deadlines = dict(first.deadlines)
            await reg.apply_action((await reg.submit(later)).registration_number or "", "close", "olga")
        found = await reg.search(overdue=True, scan_limit=2)
        assert ([r["complaint"]["id"] for r in found.rows], found.scan_limited) == ([taken.complaint_id, old.complaint_id], False)
        found = await reg.search(overdue=True, scan_limit=1, limit=1)  # paging on goes from one set to the other
        assert [r["complaint"]["id"] for r in found.rows] == [taken.complaint_id] and found.next_before == taken.complaint_id
        found = await reg.search(overdue=True, scan_limit=1, before=found.next_before)
        assert ([r["complaint"]["id"] for r in found.rows], found.next_before) == ([old.complaint_id], None)
    finally:
        await reg.close()


async def test_channel_and_date_filters_read_their_indexes_so_an_old_match_is_on_the_first_page(redis_url: str) -> None:
    """A channel's messages are in ``channel:<channel>`` and every message's time of receipt in
    ``received``: a search by channel or by date looks at its matches alone, newest first in
    the timeline's order (mails imported later with earlier dates come before one that
    arrived before them), and pages on from its last row. A date range wider than
    ``filter_range_max_messages`` goes down the timeline as before."""
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        vk = await reg.submit(complaint("Старая жалоба из группы", ids=[("vk", "7001")], channel="vk"))
        imported = await reg.submit(complaint("Письмо из архива", ids=[("email", "a@example.com")], channel="email",
                                              at=NOW - timedelta(days=2)))
        archived = await reg.submit(complaint("Ещё письмо из архива", ids=[("email", "b@example.com")], channel="email",
                                              at=NOW - timedelta(days=1)))
        for i in range(12):
            await reg.submit(complaint(f"Новая жалоба {i} про связь", ids=[("phone", f"+7916200{i:04d}")],
                                       at=NOW + timedelta(days=1, minutes=i)))
        day_after = (NOW + timedelta(hours=12)).isoformat().replace("+00:00", "Z")
        yesterday = (NOW - timedelta(days=1)).isoformat().replace("+00:00", "Z")  # archived's instant: since takes it, until not

        async def ids_of(scan_limit: int = 3, **filters: object) -> tuple[list[str], bool]:
            found = await reg.search(scan_limit=scan_limit, limit=20, **filters)  # type: ignore[arg-type]
            return [r["complaint"]["id"] for r in found.rows], found.scan_limited

        assert await ids_of(channel="vk") == ([vk.complaint_id], False)
        assert await ids_of(until=day_after) == ([archived.complaint_id, imported.complaint_id, vk.complaint_id], False)
        assert await ids_of(until=yesterday) == ([imported.complaint_id], False)
        assert await ids_of(since=yesterday, until=day_after) == ([archived.complaint_id, vk.complaint_id], False)
        assert await ids_of(channel="email", until=day_after) == ([archived.complaint_id, imported.complaint_id], False)
        assert await ids_of(channel="web", until=day_after) == ([], False)
        pages, before = [], None
        for _ in range(3):
            page = await reg.search(until=day_after, scan_limit=1, limit=1, before=before)
            pages.append(([r["complaint"]["id"] for r in page.rows], page.next_before))
            before = page.next_before
        assert pages == [([archived.complaint_id], archived.complaint_id), ([imported.complaint_id], imported.complaint_id),
                         ([vk.complaint_id], None)]
        assert await ids_of(until=day_after, before="no such message") == ([], False)

        default, reg.filter_range_max_messages = reg.filter_range_max_messages, 2  # three in the range: down the timeline
        assert await ids_of(until=day_after) == ([], True)
        assert await ids_of(until=day_after, scan_limit=15) == (
            [archived.complaint_id, imported.complaint_id, vk.complaint_id], False)
        reg.filter_range_max_messages = default

        # a registry written before these indexes gets them when opened, and the same answers
        await reg.r.delete("cgtest:channels_indexed", "cgtest:received_indexed", "cgtest:received",
                           *await reg.r.keys("cgtest:channel:*"))
        await reg.close()
        await reg.open()
        assert await reg.r.get("cgtest:channels_indexed") == "1" and await reg.r.get("cgtest:received_indexed") == "1"
        assert await reg.r.zcard("cgtest:received") == 15 and await reg.r.zcard("cgtest:channel:web") == 12
        assert await ids_of(channel="vk") == ([vk.complaint_id], False)
        assert await ids_of(until=day_after) == ([archived.complaint_id, imported.complaint_id, vk.complaint_id], False)
        assert await ids_of(channel="email", until=day_after) == ([archived.complaint_id, imported.complaint_id], False)
    finally:
        await reg.close()


async def test_messages_an_earlier_version_writes_after_the_indexes_are_built_are_indexed_before_a_read(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """During a rolling upgrade the processes still running an earlier version add messages to
    the timeline alone. Before an index is read (a filtered search, the counts per deadline)
    they are found (fewer messages in ``received`` than in the timeline), looked for from
    where the last such walk ended, and put into every index, once."""
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        await registrations_with_deadlines(reg)
        now = time.time()
        expected = await reg.registrations_due(now)
        through = len(await reg.r.zrange("cgtest:timeline", 0, -1))
        await reg.r.set("cgtest:indexed_through", through - 3)  # the walk skips the three this version indexed
        async def written_by_an_earlier_version(text: str, vk_id: str) -> Receipt:
            """A complaint as an earlier version writes it: in the timeline, in none of the indexes."""
            late = complaint(text, ids=[("vk", vk_id)], channel="vk", at=NOW + timedelta(hours=2))
            late.deadlines = {"acknowledge": "2026-03-10T17:00:00Z", "respond": "2026-03-11T09:00:00Z"}  # NOW: March 2026
            receipt = await reg.submit(late)
            number = receipt.registration_number or ""
            await reg.r.zrem("cgtest:received", receipt.complaint_id)
            await reg.r.zrem("cgtest:channel:vk", receipt.complaint_id)
            await reg.r.zrem("cgtest:state:open", receipt.complaint_id)
            await reg.r.zrem("cgtest:due:acknowledge", number)
            await reg.r.zrem("cgtest:due_messages", receipt.complaint_id)
            await reg.r.hdel("cgtest:registration:" + number, "due")
            return receipt

        receipt = await written_by_an_earlier_version("Жалоба, принятая прежней версией", "7002")

        with caplog.at_level(logging.INFO, logger="complaint_gateway.registry.redis"):
            assert [r["complaint"]["id"] for r in (await reg.search(channel="vk")).rows] == [receipt.complaint_id]
            walks = [r for r in caplog.records if r.getMessage() == "registry: messages of an earlier version indexed"]
            assert [(w.messages, w.__dict__["from"], w.to) for w in walks] == [(1, through - 3, through + 1)]  # type: ignore[attr-defined]
            assert await reg.r.get("cgtest:indexed_through") == str(through + 1)
            since = (NOW + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
            assert [r["complaint"]["id"] for r in (await reg.search(since=since)).rows] == [receipt.complaint_id]
            assert receipt.complaint_id in [r["complaint"]["id"] for r in (await reg.search(state="open", limit=20)).rows]
            assert receipt.complaint_id in [r["complaint"]["id"] for r in (await reg.search(overdue=True, limit=20)).rows]
            assert await reg.r.zscore("cgtest:due_messages", receipt.complaint_id) == epoch("2026-03-10T17:00:00Z")
            assert len([r for r in caplog.records if r.getMessage() == walks[0].getMessage()]) == 1  # once
            await written_by_an_earlier_version("Ещё одна жалоба прежней версии", "7003")  # the counts read first
            due = await reg.registrations_due(now)
            assert due == {**expected, "acknowledge": {**expected["acknowledge"], "pending": expected["acknowledge"]["pending"] + 2,
                                                        "overdue": expected["acknowledge"]["overdue"] + 2}}
            assert await reg.r.get("cgtest:indexed_through") == str(through + 2)
    finally:
        await reg.close()


async def test_the_overdue_filter_reads_the_index_of_messages_deadlines_so_old_overdue_complaints_are_on_the_first_page(
        redis_url: str) -> None:
    """Each message of a registration not closed is in ``due_messages`` at the deadline that
    matters for it in its registration's state (the first answer's while open, the nearest
    other once claimed; moved by every change of state, out when closed): the overdue filter
    reads the part of it already past, so overdue complaints behind twelve open ones not yet
    due are on the first page of a search that may look at three messages."""
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        def dated(text: str, email: str, respond: str, in_reply_to: str | None = None) -> Complaint:
            c = complaint(text, ids=[("email", email)], channel="email", in_reply_to=in_reply_to)
            c.deadlines = {"acknowledge": "2026-03-10T17:00:00Z", "respond": respond}  # NOW is March 2026: the first long past
            return c

        late = await reg.submit(dated("Старая жалоба про связь", "old@example.com", "2026-03-17T09:00:00Z"))
        taken = await reg.submit(dated("Жалоба, взятая в работу", "claimed@example.com", "2099-03-17T09:00:00Z"))
        number = taken.registration_number or ""
        await reg.apply_action(number, "claim", "olga")  # its respond, far off, matters now: not overdue
        follow_up = await reg.submit(dated("Напоминаю о жалобе", "claimed@example.com", "2026-03-17T09:00:00Z", number))
        assert follow_up.status == "follow_up"  # its own respond has passed: overdue in the claimed registration
        for i in range(12):
            c = complaint(f"Новая жалоба {i} про связь", ids=[("phone", f"+7916200{i:04d}")], at=NOW + timedelta(minutes=1 + i))
            c.deadlines = {"acknowledge": "2099-03-10T17:00:00Z", "respond": "2099-03-17T09:00:00Z"}
            await reg.submit(c)

        async def overdue() -> list[str]:
            found = await reg.search(overdue=True, scan_limit=3)
            assert found.scan_limited is False
            return [r["complaint"]["id"] for r in found.rows]

        assert await overdue() == [follow_up.complaint_id, late.complaint_id]
        assert await reg.r.zscore("cgtest:due_messages", taken.complaint_id) == epoch("2099-03-17T09:00:00Z")
        assert await reg.r.zscore("cgtest:due_messages", follow_up.complaint_id) == epoch("2026-03-17T09:00:00Z")
        await reg.apply_action(number, "reopen", "olga")  # the first answer's deadline matters again: both overdue
        assert await overdue() == [follow_up.complaint_id, taken.complaint_id, late.complaint_id]
        await reg.apply_action(number, "close", "olga")
        assert await overdue() == [late.complaint_id]
        assert await reg.r.zscore("cgtest:due_messages", follow_up.complaint_id) is None
        assert await reg.r.zcard("cgtest:due_messages") == 13
        await reg.apply_action(number, "reopen", "olga")
        await reg.apply_action(number, "claim", "olga")

        # a registry written before this index gets it when opened, at the deadlines of the states then
        await reg.r.delete("cgtest:due_messages_indexed", "cgtest:due_messages")
        await reg.close()
        await reg.open()
        assert await reg.r.get("cgtest:due_messages_indexed") == "1"
        assert await overdue() == [follow_up.complaint_id, late.complaint_id]
        assert await reg.r.zscore("cgtest:due_messages", taken.complaint_id) == epoch("2099-03-17T09:00:00Z")
        # the script leaves a message already indexed as it is, and indexes none of a closed registration
        keys = ["cgtest:registration:" + number, "cgtest:due_messages"]
        assert await reg._index_message_due_script(keys=keys, args=[taken.complaint_id, "1.0", "2.0"]) == 0
        await reg.apply_action(number, "close", "olga")
        assert await reg._index_message_due_script(keys=keys, args=[taken.complaint_id, "1.0", "2.0"]) == 0
        assert await reg.r.zscore("cgtest:due_messages", taken.complaint_id) is None
    finally:
        await reg.close()


async def test_recent_complaints_are_packed_and_those_written_as_text_before_are_still_compared(redis_url: str) -> None:
    """A customer's recent complaints (``recent:<customer>``) are ``0|``, the time of receipt
    and the SimHash's halves packed, then the number; entries an earlier version wrote as
    ``received|high|low|digest|number`` are read as before, out of the window too."""
    reg = RedisRegistry(RegistrySettings(timezone="Europe/Moscow"), redis_url, prefix="cgtest:")
    await reg.open()
    try:
        text = "Третий день нет интернета в доме на Ленина 5, роутер мигает красным"
        first = await reg.submit(complaint(text, at=NOW))
        key = "cgtest:recent:" + (first.customer_id or "")
        plan = make_plan(complaint(text, at=NOW), reg.settings, reg.number_format)
        with redis_sync.Redis.from_url(redis_url) as raw:  # bytes: a client decoding UTF-8 cannot read them
            assert raw.lrange(key, 0, -1) == [
                b"0|" + struct.pack(">dII", plan.received_epoch, plan.simhash >> 32, plan.simhash & 0xFFFFFFFF)
                + (first.registration_number or "").encode()]
        again = await reg.submit(complaint(text + "!!!", at=NOW + timedelta(days=2)))
        assert (again.status, again.registration_number) == ("repeat", first.registration_number)

        as_text = "|".join([repr(plan.received_epoch), str(plan.simhash >> 32), str(plan.simhash & 0xFFFFFFFF), plan.digest,
                            first.registration_number or ""])
        await reg.r.delete(key)
        await reg.r.rpush(key, as_text)
        earlier = await reg.submit(complaint(text + "?", at=NOW + timedelta(days=3)))
        assert (earlier.status, earlier.registration_number) == ("repeat", first.registration_number)
        await reg.r.delete(key)
        await reg.r.rpush(key, as_text)
        late = await reg.submit(complaint(text, at=NOW + timedelta(days=30)))  # out of the window: a new registration
        assert late.status == "new" and late.registration_number != first.registration_number
    finally:
        await reg.close()
