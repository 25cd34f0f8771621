"""One contract, two backends: every test here runs against SQLite (with its submits in the
gateway's process and in a writer process, ``registry.sqlite.writer_process``) and against
Redis (and, from tests/test_registry_cluster.py, against a Redis Cluster)."""
from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from gateway.inbound import Receipt
from gateway.registry import Registry, RegistrySettings
from gateway.registry import redis as redis_registry
from gateway.registry import sqlite as sqlite_registry
from gateway.registry.base import (
    NumberFormat,
    RegistryError,
    SearchResult,
    current_deadline,
    is_overdue,
    make_plan,
    stored_json,
)
from gateway.registry.redis import RedisRegistry
from gateway.registry.redis_cluster import RedisClusterRegistry
from gateway.registry.sqlite import SqliteRegistry
from normalizer.schema import Attachment, Complaint, Customer, Identity

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)


def complaint(text: str = "Нет интернета с утра, роутер мигает", *, ids: list[tuple[str, str]] | None = None,
              channel: str = "web", message_id: str | None = None, name: str | None = "Анна",
              in_reply_to: str | None = None, auto: bool = False, at: datetime = NOW) -> Complaint:
    return Complaint(
        id=uuid.uuid4().hex, channel=channel, channel_message_id=message_id or uuid.uuid4().hex,
        received_at=at.isoformat().replace("+00:00", "Z"),
        customer=Customer(name=name, identities=[Identity(k, v) for k, v in (ids or [("phone", "+79161234567")])]),
        text=text, in_reply_to=in_reply_to, auto_submitted=auto)


def open_backend(kind: str, tmp_path: Path, redis_url: str, **settings: object) -> Registry:
    s = RegistrySettings(timezone="Europe/Moscow", **settings)  # type: ignore[arg-type]
    if kind in ("sqlite", "sqlite_writer_process"):
        return SqliteRegistry(s, tmp_path / "registry.sqlite3", synchronous="NORMAL",
                              writer_process=kind == "sqlite_writer_process")
    if kind == "redis_cluster":  # run by tests/test_registry_cluster.py, with redis_url pointing at a cluster
        return RedisClusterRegistry(s, redis_url, prefix="{cgtest}:")
    return RedisRegistry(s, redis_url, prefix="cgtest:")


@pytest.fixture(params=["sqlite", "sqlite_writer_process", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def registry(backend: str, tmp_path: Path, redis_url: str):
    reg = open_backend(backend, tmp_path, redis_url, visibility_timeout_seconds=0.2)
    await reg.open()
    yield reg
    await reg.close()


async def test_new_complaint_gets_a_number_and_an_event(registry: Registry) -> None:
    c = complaint()
    receipt = await registry.submit(c)
    assert receipt.status == "new"
    assert receipt.registration_number == "2026-000001"
    assert c.registration_number == "2026-000001" and c.customer.customer_id == receipt.customer_id
    events = await registry.read_events("crm", "worker-1")
    assert len(events) == 1
    event = events[0]
    assert (event.event, event.registration_number, event.customer_id) == ("new", "2026-000001", receipt.customer_id)
    assert event.payload["complaint"]["registration_number"] == "2026-000001"
    assert event.payload["complaint"]["customer"]["customer_id"] == receipt.customer_id
    assert event.payload["complaint"]["text"] == c.text
    stored = await registry.get_message(receipt.complaint_id or "")
    assert stored is not None and stored.registration_number == "2026-000001"


async def test_same_channel_message_id_is_a_duplicate_with_the_same_receipt(registry: Registry) -> None:
    first = await registry.submit(complaint(message_id="tg-1001"))
    again = await registry.submit(complaint(text="anything else", message_id="tg-1001"))
    assert again.status == "duplicate"
    assert (again.registration_number, again.customer_id, again.complaint_id) == (
        first.registration_number, first.customer_id, first.complaint_id)
    assert await registry.queue_length() == 1
    other_channel = await registry.submit(complaint(text="Совсем другая жалоба на счёт", channel="vk", message_id="tg-1001"))
    assert other_channel.status == "new"


async def test_a_duplicate_of_a_follow_up_or_an_automatic_message_gets_its_receipt(registry: Registry) -> None:
    first = await registry.submit(complaint(message_id="m-1"))
    follow = await registry.submit(complaint(text="Всё ещё нет связи", message_id="m-2", in_reply_to=first.registration_number))
    auto = await registry.submit(complaint(text="Out of office", message_id="m-3", auto=True))
    for receipt, message_id in ((follow, "m-2"), (auto, "m-3")):
        again = await registry.submit_many([complaint(text="again", message_id=message_id)])
        assert again == [Receipt("duplicate", receipt.registration_number, receipt.customer_id, receipt.complaint_id)]
    assert (follow.status, follow.registration_number, auto.status, auto.registration_number) == (
        "follow_up", first.registration_number, "automatic", None)


async def test_a_customers_registrations_are_listed_once_each_in_the_order_they_were_made(registry: Registry) -> None:
    """Follow-ups, repeats and automatic messages are the customer's messages too, but no
    registrations: each number is listed once, in the order of registration."""
    first = await registry.submit(complaint("Нет интернета с утра, роутер мигает", message_id="r-1"))
    await registry.submit(complaint("Всё ещё нет связи", message_id="r-2", in_reply_to=first.registration_number))
    repeat = await registry.submit(complaint("Нет интернета с утра, роутер мигает!", message_id="r-3", at=NOW + timedelta(hours=1)))
    await registry.submit(complaint("Out of office", message_id="r-4", auto=True))
    second = await registry.submit(complaint("Счёт за март выставлен дважды", message_id="r-5"))
    assert (repeat.status, second.status) == ("repeat", "new")
    customer = await registry.get_customer(first.customer_id or "")
    assert customer is not None
    assert customer["registrations"] == [first.registration_number, second.registration_number] == ["2026-000001", "2026-000002"]


async def test_a_customers_name_is_filled_in_once_and_never_overwritten(registry: Registry) -> None:
    ids = [("email", "nameless@example.com")]
    first = await registry.submit(complaint(name=None, ids=ids))
    assert (await registry.get_customer(first.customer_id or ""))["name"] is None  # type: ignore[index]
    await registry.submit(complaint(text="Счёт пришёл дважды", name="Анна", ids=ids))
    await registry.submit(complaint(text="Роутер снова мигает", name=None, ids=ids))
    await registry.submit(complaint(text="Телевидение не показывает", name="Борис", ids=ids))
    assert (await registry.get_customer(first.customer_id or ""))["name"] == "Анна"  # type: ignore[index]


async def test_identities_arriving_together_link_one_customer_across_doors(registry: Registry) -> None:
    by_phone = await registry.submit(complaint("Нет связи в квартире", ids=[("phone", "+79161234567")]))
    both = await registry.submit(complaint("Счёт выставлен дважды за март", ids=[("email", "anna@example.com"), ("phone", "+79161234567")]))
    by_email = await registry.submit(complaint("Когда вернут деньги за двойной счёт?", ids=[("email", "anna@example.com")]))
    assert by_phone.customer_id == both.customer_id == by_email.customer_id
    customer = await registry.get_customer(by_phone.customer_id or "")
    assert customer is not None
    assert {(i["kind"], i["value"]) for i in customer["identities"]} == {("phone", "+79161234567"), ("email", "anna@example.com")}
    assert customer["registrations"] == ["2026-000001", "2026-000002", "2026-000003"]
    assert await registry.merge_suggestions() == []


async def test_message_joining_two_customers_suggests_a_merge_instead_of_merging(registry: Registry) -> None:
    a = await registry.submit(complaint("Нет связи в квартире", ids=[("phone", "+79161234567")]))
    b = await registry.submit(complaint("Не работает телевидение", ids=[("email", "boris@example.com")], name="Борис"))
    joined = await registry.submit(complaint("Верните деньги за март", ids=[("phone", "+79161234567"), ("email", "boris@example.com")]))
    assert a.customer_id != b.customer_id
    assert joined.customer_id == a.customer_id
    suggestions = await registry.merge_suggestions()
    assert len(suggestions) == 1
    assert {suggestions[0]["customer_a"], suggestions[0]["customer_b"]} == {a.customer_id, b.customer_id}
    customer_b = await registry.get_customer(b.customer_id or "")
    assert customer_b is not None and customer_b["identities"] == [{"kind": "email", "value": "boris@example.com"}]


async def test_follow_up_only_from_the_complaints_own_customer(registry: Registry) -> None:
    first = await registry.submit(complaint("Нет интернета с утра"))
    follow = await registry.submit(complaint("Дополняю: роутер перезагружал, не помогло", in_reply_to=first.registration_number))
    stranger = await registry.submit(complaint("Хочу дописать к чужой жалобе", ids=[("email", "mallory@example.com")],
                                               in_reply_to=first.registration_number))
    assert follow.status == "follow_up" and follow.registration_number == first.registration_number
    assert stranger.status == "new" and stranger.registration_number != first.registration_number
    registration = await registry.get_registration(first.registration_number or "")
    assert registration is not None
    assert [m["kind"] for m in registration["messages"]] == ["new", "follow_up"]
    events = await registry.read_events("crm", "w")
    assert [(e.event, e.registration_number) for e in events] == [
        ("new", first.registration_number), ("follow_up", first.registration_number), ("new", stranger.registration_number)]


async def test_what_the_registration_decided_is_noted_alike_on_every_backend(registry: Registry) -> None:
    """The stored complaint, its event and the complaint the door holds note a refused
    number (and drop it from in_reply_to), a repeat and a merge suggestion."""
    first = await registry.submit(complaint("Нет интернета с утра, роутер мигает красным"))
    number = first.registration_number
    own = complaint("Дополняю: роутер перезагружал, не помогло", in_reply_to=number)
    stranger = complaint("Хочу дописать к чужой жалобе", ids=[("email", "mallory@example.com")], in_reply_to=number)
    stranger.meta["door"] = "web"  # a meta that is not empty: the notes go after what is there
    repeat = complaint("Нет интернета с утра, роутер мигает красным!")
    boris = await registry.submit(complaint("Не работает телевидение", ids=[("email", "boris@example.com")], name="Борис"))
    joining = complaint("Верните деньги за март", ids=[("phone", "+79161234567"), ("email", "boris@example.com")])
    receipts = [await registry.submit(c) for c in (own, stranger, repeat, joining)]
    assert [r.status for r in receipts] == ["follow_up", "new", "repeat", "new"]
    expected = [
        (number, {}),
        (None, {"door": "web", "in_reply_to_rejected": number}),
        (None, {"repeat_of": number}),
        (None, {"merge_suggested": [boris.customer_id]}),
    ]
    events = {e.complaint_id: e for e in await registry.read_events("crm", "w")}
    for c, receipt, (in_reply_to, meta) in zip((own, stranger, repeat, joining), receipts, expected):
        stored = await registry.get_message(receipt.complaint_id or "")
        assert stored is not None
        assert (stored.in_reply_to, stored.meta) == (in_reply_to, meta), c.text
        assert (c.in_reply_to, c.meta) == (in_reply_to, meta), c.text  # the door's copy
        assert events[receipt.complaint_id].payload["complaint"] == stored.to_dict()


async def test_near_identical_text_in_the_window_is_a_repeat(registry: Registry) -> None:
    first = await registry.submit(complaint("Третий день нет интернета в доме на Ленина 5, роутер мигает красным", at=NOW))
    repeat = await registry.submit(complaint("Третий день нет интернета в доме на Ленина 5, роутер мигает красным!!!",
                                             at=NOW + timedelta(days=2)))
    different = await registry.submit(complaint("Прошу пересчитать абонентскую плату за февраль", at=NOW + timedelta(days=2)))
    late = await registry.submit(complaint("Третий день нет интернета в доме на Ленина 5, роутер мигает красным",
                                           at=NOW + timedelta(days=30)))
    assert repeat.status == "repeat" and repeat.registration_number == first.registration_number
    assert different.status == "new"
    assert late.status == "new" and late.registration_number != first.registration_number
    stranger = await registry.submit(complaint("Третий день нет интернета в доме на Ленина 5, роутер мигает красным",
                                               ids=[("email", "neighbour@example.com")], at=NOW + timedelta(days=1)))
    assert stranger.status == "new"


async def test_a_repeat_differs_in_at_most_max_distance_bits_in_either_half(registry: Registry,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """similarity 0.9: at most 6 of the 64 SimHash bits may differ, counted over both 32-bit
    halves (the Redis script counts them apart), the sign bits of each half included."""
    import hashlib

    import gateway.registry.base as base

    simhashes: dict[str, int] = {}
    monkeypatch.setattr(base, "fingerprint", lambda text, _: (simhashes[text], hashlib.sha1(text.encode()).hexdigest()))
    start = 0xF0E1D2C3B4A59687

    def bits(*positions: int) -> int:
        return sum(1 << p for p in positions)

    masks = {"none": (0, True), "six high": (bits(63, 62, 50, 40, 33, 32), True), "seven high": (bits(63, 62, 50, 40, 33, 32, 45), False),
             "three and three": (bits(63, 32, 40, 31, 0, 7), True), "four and three": (bits(63, 32, 40, 41, 31, 0, 7), False),
             "six low": (bits(31, 30, 16, 8, 1, 0), True), "seven low": (bits(31, 30, 16, 8, 1, 0, 20), False),
             "all low": ((1 << 32) - 1, False), "all": ((1 << 64) - 1, False)}
    for name, (mask, repeat) in masks.items():
        first, second = f"Первая жалоба ({name})", f"Вторая жалоба ({name})"
        simhashes[first], simhashes[second] = start, start ^ mask
        who = [("email", f"{name.replace(' ', '.')}@example.com")]
        a = await registry.submit(complaint(first, ids=who))
        b = await registry.submit(complaint(second, ids=who, at=NOW + timedelta(hours=1)))
        assert (b.status, b.registration_number == a.registration_number) == (("repeat", True) if repeat else ("new", False)), name


async def test_only_the_customers_last_candidates_are_compared_for_repeats(backend: str, tmp_path: Path,
                                                                           redis_url: str) -> None:
    """``repeat_candidates`` = 2: a complaint like one three complaints back is new again."""
    registry = open_backend(backend, tmp_path, redis_url, repeat_candidates=2)
    await registry.open()
    try:
        texts = ["Третий день нет интернета в доме на Ленина 5, роутер мигает красным",
                 "Прошу пересчитать абонентскую плату за февраль", "Курьер не привёз новый роутер в четверг"]
        first = [await registry.submit(complaint(text, at=NOW + timedelta(hours=i))) for i, text in enumerate(texts)]
        assert [r.status for r in first] == ["new", "new", "new"]
        recent = await registry.submit(complaint(texts[2] + "!", at=NOW + timedelta(hours=4)))
        assert (recent.status, recent.registration_number) == ("repeat", first[2].registration_number)
        again = await registry.submit(complaint(texts[0] + "!", at=NOW + timedelta(hours=5)))
        assert again.status == "new" and again.registration_number not in {r.registration_number for r in first}
        if isinstance(registry, RedisRegistry):  # the list the script keeps is cut to the candidates
            length = await registry.r.llen(registry.prefix + "recent:" + (again.customer_id or ""))
            assert length == 2
    finally:
        await registry.close()


async def test_no_candidates_means_no_repeats(backend: str, tmp_path: Path, redis_url: str) -> None:
    """``repeat_candidates`` = 0: nothing is compared, not even an exact copy, and Redis keeps no list."""
    registry = open_backend(backend, tmp_path, redis_url, repeat_candidates=0)
    await registry.open()
    try:
        text = "Третий день нет интернета в доме на Ленина 5, роутер мигает красным"
        first = await registry.submit(complaint(text))
        again = await registry.submit(complaint(text, at=NOW + timedelta(hours=1)))
        assert (first.status, again.status) == ("new", "new") and first.registration_number != again.registration_number
        if isinstance(registry, RedisRegistry):
            assert await registry.r.exists(registry.prefix + "recent:" + (again.customer_id or "")) == 0
    finally:
        await registry.close()


async def test_a_batch_is_registered_in_order_as_if_submitted_one_by_one(registry: Registry) -> None:
    first = complaint("Нет интернета с утра, роутер мигает", message_id="batch-1")
    batch = [
        first,
        complaint("Нет интернета с утра, роутер мигает!", message_id="batch-2"),  # same customer, same text
        complaint("anything", message_id="batch-1"),  # a redelivery of the first, in the same batch
        complaint("Счёт выставлен дважды за март", ids=[("email", "boris@example.com")], message_id="batch-3"),
        complaint("Дополняю: счёт за март так и не исправили", ids=[("email", "boris@example.com")],
                  in_reply_to="2026-000002", message_id="batch-4"),
    ]
    receipts = await registry.submit_many(batch)
    assert all(not isinstance(r, Exception) for r in receipts)
    assert [(r.status, r.registration_number) for r in receipts] == [  # type: ignore[union-attr]
        ("new", "2026-000001"), ("repeat", "2026-000001"), ("duplicate", "2026-000001"),
        ("new", "2026-000002"), ("follow_up", "2026-000002")]
    assert receipts[2].complaint_id == receipts[0].complaint_id == first.id  # type: ignore[union-attr]
    assert receipts[0].customer_id == receipts[1].customer_id != receipts[3].customer_id  # type: ignore[union-attr]
    assert [c.registration_number for c in batch] == ["2026-000001"] * 3 + ["2026-000002"] * 2
    events = await registry.read_events("crm", "w", count=10)
    assert [(e.event, e.registration_number) for e in events] == [
        ("new", "2026-000001"), ("repeat", "2026-000001"), ("new", "2026-000002"), ("follow_up", "2026-000002")]


async def test_one_bad_complaint_in_a_batch_fails_alone(registry: Registry) -> None:
    bad = complaint("Нет связи в квартире", message_id="bad")
    bad.received_at = "not a time"
    receipts = await registry.submit_many([complaint("Нет связи в квартире"), bad, complaint("Не работает телевидение")])
    assert isinstance(receipts[1], Exception)
    assert [r.registration_number for r in (receipts[0], receipts[2])] == ["2026-000001", "2026-000002"]  # type: ignore[union-attr]
    assert await registry.queue_length() == 2


async def test_automatic_messages_are_kept_without_number_or_event(registry: Registry) -> None:
    receipt = await registry.submit(complaint("I am out of office until Monday", ids=[("email", "robot@example.com")], auto=True))
    assert receipt.status == "automatic" and receipt.registration_number is None
    assert await registry.queue_length() == 0
    stored = await registry.get_message(receipt.complaint_id or "")
    assert stored is not None and stored.auto_submitted


async def test_numbers_follow_the_configured_format_and_restart_each_year(backend: str, tmp_path: Path, redis_url: str) -> None:
    reg = open_backend(backend, tmp_path, redis_url, number_format="C{year}/{seq:04d}")
    await reg.open()
    try:
        dec = await reg.submit(complaint("Жалоба в декабре", at=datetime(2026, 12, 31, 21, 30, tzinfo=timezone.utc)))
        # 21:30 UTC on 31 December is already 2027 in Moscow (UTC+3)
        assert dec.registration_number == "C2027/0001"
        nov = await reg.submit(complaint("Жалоба в ноябре", ids=[("email", "x@example.com")],
                                         at=datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)))
        assert nov.registration_number == "C2026/0001"
        stored = await reg.get_message(nov.complaint_id or "")
        assert stored is not None and stored.registration_number == "C2026/0001"
        assert stored.customer.customer_id == nov.customer_id
    finally:
        await reg.close()


async def test_each_counter_continues_from_batch_to_batch(backend: str, tmp_path: Path, redis_url: str) -> None:
    reg = open_backend(backend, tmp_path, redis_url, number_format="C{year}/{seq:04d}")
    await reg.open()
    try:
        dec, nov = datetime(2026, 12, 31, 21, 30, tzinfo=timezone.utc), datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)

        def batch(*years: datetime) -> list[Complaint]:
            return [complaint(f"Жалоба номер {uuid.uuid4().hex}", ids=[("email", f"{uuid.uuid4().hex}@example.com")], at=at)
                    for at in years]

        first = await reg.submit_many(batch(dec, nov, nov))
        second = await reg.submit_many(batch(nov, dec))
        assert [r.registration_number for r in (*first, *second)] == [  # type: ignore[union-attr]
            "C2027/0001", "C2026/0001", "C2026/0002", "C2026/0003", "C2027/0002"]
        newest_first = [m.registration_number for m in await reg.list_messages(limit=5)]
        assert newest_first == ["C2027/0002", "C2026/0003", "C2026/0002", "C2026/0001", "C2027/0001"]
    finally:
        await reg.close()


async def test_numbers_with_quotes_and_backslashes_are_stored_as_they_are(backend: str, tmp_path: Path, redis_url: str) -> None:
    reg = open_backend(backend, tmp_path, redis_url, number_format='N"{year}\\{seq:03d}%s')
    await reg.open()
    try:
        receipt = await reg.submit(complaint("Жалоба с кавычками \"CGNUMBER\" в тексте"))
        assert receipt.registration_number == 'N"2026\\001%s'
        stored = await reg.get_message(receipt.complaint_id or "")
        assert stored is not None and stored.registration_number == receipt.registration_number
        assert stored.text == "Жалоба с кавычками \"CGNUMBER\" в тексте" and stored.customer.customer_id == receipt.customer_id
        event = (await reg.read_events("crm", "w"))[0]
        assert event.payload["complaint"]["registration_number"] == receipt.registration_number
    finally:
        await reg.close()


def test_stored_json_reads_what_json_reads_including_what_orjson_refuses() -> None:
    """Event payloads are read with orjson; a value an earlier version's json.dumps wrote
    (NaN, Infinity) still reads, as json reads it."""
    body = complaint("Нет связи — «роутер» мигает \u2028 😀").to_json()
    assert stored_json(body) == stored_json(body.encode("utf-8")) == json.loads(body)
    old = json.dumps({"meta": {"score": float("nan"), "limit": float("inf")}, "text": "x"})
    read = stored_json(old)
    assert math.isnan(read["meta"]["score"]) and read["meta"]["limit"] == float("inf") and read["text"] == "x"
    with pytest.raises(ValueError):
        stored_json("{not json")


async def test_unacknowledged_events_are_redelivered_and_acked_ones_are_not(registry: Registry) -> None:
    await registry.submit(complaint("Первая жалоба о связи"))
    await registry.submit(complaint("Вторая жалоба о счёте", ids=[("email", "b@example.com")]))
    first = await registry.read_events("crm", "w1", count=10)
    assert [e.deliveries for e in first] == [1, 1]
    assert await registry.ack_events("crm", [first[0].id]) == 1
    assert await registry.read_events("crm", "w1") == []
    await asyncio.sleep(0.3)  # past the visibility timeout of 0.2 s
    again = await registry.read_events("crm", "w2")
    assert [e.id for e in again] == [first[1].id]
    assert again[0].deliveries == 2
    other_group = await registry.read_events("archive", "a1")
    assert len(other_group) == 2


async def test_blocking_read_returns_an_event_submitted_meanwhile(registry: Registry) -> None:
    async def later() -> None:
        await asyncio.sleep(0.1)
        await registry.submit(complaint("Жалоба во время ожидания"))

    task = asyncio.create_task(later())
    events = await registry.read_events("crm", "w", block_ms=3000)
    await task
    assert [e.event for e in events] == ["new"]


async def test_a_blocking_read_longer_than_the_socket_timeout_waits_it_out_and_wakes(
        backend: str, tmp_path: Path, redis_url: str) -> None:
    registry = open_backend(backend, tmp_path, redis_url)
    if isinstance(registry, RedisRegistry):
        registry.socket_timeout = 0.5  # the client gives up on any answer after 0.5 s
    await registry.open()
    try:
        if type(registry) is RedisRegistry:
            assert registry.r.connection_pool.connection_kwargs["socket_timeout"] == 0.5
        await registry.create_group("crm", at_end=True)
        started = time.monotonic()
        assert await registry.read_events("crm", "reader", block_ms=1500) == []
        assert time.monotonic() - started >= 1.4

        async def submit_later() -> Receipt:
            await asyncio.sleep(0.8)
            return await registry.submit(complaint())

        submitting = asyncio.create_task(submit_later())
        events = await registry.read_events("crm", "reader", block_ms=3000)
        receipt = await submitting
        assert [(e.event, e.registration_number) for e in events] == [("new", receipt.registration_number)]
    finally:
        await registry.close()


async def test_dead_letters_are_kept_listed_and_resolved(registry: Registry) -> None:
    dl = await registry.add_dead_letter({"channel": "email", "message_id": "m1", "text": None}, "no text")
    listed = await registry.list_dead_letters()
    assert [(d["id"], d["reason"]) for d in listed] == [(dl, "no text")]
    receipt = await registry.submit(complaint("Текст, восстановленный оператором"))
    await registry.resolve_dead_letter(dl, receipt)
    assert await registry.list_dead_letters() == []
    resolved = await registry.list_dead_letters(include_resolved=True)
    assert resolved[0]["receipt"]["registration_number"] == receipt.registration_number


async def test_cursors_and_locks(registry: Registry) -> None:
    assert await registry.get_cursor("imap:box") is None
    await registry.set_cursor("imap:box", "123:456")
    assert await registry.get_cursor("imap:box") == "123:456"
    assert await registry.acquire_lock("imap:box", "proc-a", 0.3)
    assert not await registry.acquire_lock("imap:box", "proc-b", 0.3)
    assert await registry.acquire_lock("imap:box", "proc-a", 0.3)  # renewal by the holder
    await asyncio.sleep(0.4)
    assert await registry.acquire_lock("imap:box", "proc-b", 0.3)  # expired: another may take it
    await registry.release_lock("imap:box", "proc-a")  # not the holder: no effect
    assert not await registry.acquire_lock("imap:box", "proc-a", 0.3)
    await registry.release_lock("imap:box", "proc-b")
    assert await registry.acquire_lock("imap:box", "proc-a", 0.3)


async def test_attempts_lock_a_name_at_the_limit_until_the_lock_ends_or_is_cleared(registry: Registry) -> None:
    async def attempts(n: int, name: str = "login:user:anna") -> list[float]:
        return [await registry.count_attempt(name, 3, 60, 0.4) for _ in range(n)]

    assert await attempts(3) == [0, 0, 0]  # the third goes ahead and locks
    [left] = await attempts(1)
    assert 0.2 < left <= 0.4
    assert await attempts(1, "login:user:boris") == [0]  # another name counts on its own
    await asyncio.sleep(0.45)
    assert await attempts(2) == [0, 0]  # the lock is over; refused attempts were not counted
    await registry.clear_attempts("login:user:anna")  # a login that succeeded
    assert await attempts(3) == [0, 0, 0]
    assert (await attempts(1))[0] > 0
    await registry.clear_attempts("login:user:anna")  # lifts the lock too
    assert await attempts(1) == [0]


async def test_attempts_older_than_the_window_do_not_count(registry: Registry) -> None:
    assert await registry.count_attempt("login:addr:198.51.100.7", 2, 0.3, 60) == 0
    await asyncio.sleep(0.35)
    assert await registry.count_attempt("login:addr:198.51.100.7", 2, 0.3, 60) == 0  # the first has left the window
    assert await registry.count_attempt("login:addr:198.51.100.7", 2, 0.3, 60) == 0  # the second within it locks
    assert await registry.count_attempt("login:addr:198.51.100.7", 2, 0.3, 60) > 59


async def test_attempts_sent_at_once_go_ahead_no_more_than_the_limit(registry: Registry) -> None:
    results = await asyncio.gather(*(registry.count_attempt("login:addr:203.0.113.9", 5, 60, 60) for _ in range(40)))
    assert [r == 0 for r in results].count(True) == 5


async def _gone_ahead(registry: Registry, what: str) -> int:
    """Of 20 at once, how many went ahead: ``attempts`` at one login, or ``tokens`` of one rate limit."""
    if what == "attempts":
        answers = await asyncio.gather(*(registry.count_attempt("login:user:olga", 7, 60, 60) for _ in range(20)))
        return [a == 0 for a in answers].count(True)
    return [taken for answers in await asyncio.gather(*(registry.take_tokens(["rate:web:192.0.2.1"], 0.01, 7) for _ in range(20)))
            for taken in answers].count(True)


def _limited_worker(kind: str, tmp: str, url: str, what: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> int:
        reg = open_backend(kind, Path(tmp), url)
        await reg.open()
        try:
            return await _gone_ahead(reg, what)
        finally:
            await reg.close()

    results.put(asyncio.run(run()))


@pytest.mark.parametrize("what", ["attempts", "tokens"])
async def test_processes_at_once_share_one_limit(backend: str, tmp_path: Path, redis_url: str, what: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_limited_worker, args=(backend, str(tmp_path), redis_url, what, results)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sum(results.get(timeout=5) for _ in procs) == 7
    reg = open_backend(backend, tmp_path, redis_url)
    await reg.open()
    try:
        assert await _gone_ahead(reg, what) == 0
    finally:
        await reg.close()


async def test_a_token_bucket_gives_its_burst_then_refills_at_its_rate(registry: Registry) -> None:
    async def take(n: int, name: str = "rate:web:198.51.100.7", per_second: float = 4.0) -> list[bool]:
        return [(await registry.take_tokens([name], per_second, 3))[0] for _ in range(n)]

    assert await take(4) == [True, True, True, False]
    assert await take(1, "rate:web:198.51.100.8") == [True]  # another key has a bucket of its own
    await asyncio.sleep(0.3)  # a token and a fifth back: the next token needs 0.2 s more
    assert await take(2) == [True, False]
    assert await take(2, "rate:slow", per_second=0.01) == [True, True]
    await asyncio.sleep(0.2)
    assert await take(2, "rate:slow", per_second=0.01) == [True, False]  # 0.002 of a token back: not one


async def test_a_bucket_full_again_is_forgotten(registry: Registry) -> None:
    async def buckets() -> int:
        if isinstance(registry, RedisRegistry):  # and the cluster
            return len([k async for k in registry.r.scan_iter(match=registry.prefix + "bucket:*")])
        assert isinstance(registry, SqliteRegistry)
        return int(registry._locks().execute("SELECT count(*) FROM buckets").fetchone()[0])

    assert await registry.take_tokens(["rate:web:198.51.100.9"], 20.0, 2) == [True]
    assert await buckets() == 1
    await asyncio.sleep(0.15)  # full again after 0.05 s
    assert await registry.take_tokens(["rate:web:198.51.100.10"], 20.0, 2) == [True]
    assert await buckets() == 1  # on SQLite the full bucket goes at the next take; on Redis it expired


async def test_tokens_taken_at_once_are_no_more_than_the_burst(registry: Registry) -> None:
    results = await asyncio.gather(*(registry.take_tokens(["rate:web:203.0.113.9"], 0.01, 5) for _ in range(40)))
    assert [answers[0] for answers in results].count(True) == 5
    # several names in one call: each in turn, a name twice takes two
    assert await registry.take_tokens(["rate:a", "rate:b", "rate:a", "rate:a"], 0.01, 2) == [True, True, True, False]


async def test_list_messages_pages_newest_first(registry: Registry) -> None:
    ids = []
    for i in range(5):
        r = await registry.submit(complaint(f"Жалоба номер {i} про разные вещи {i * 7}", ids=[("email", f"c{i}@example.com")]))
        ids.append(r.complaint_id)
    page1 = await registry.list_messages(limit=3)
    page2 = await registry.list_messages(limit=3, before=page1[-1].id)
    assert [c.id for c in page1 + page2] == list(reversed(ids))


# -- concurrency: several processes, the same customers --------------------------------
def _worker(kind: str, tmp: str, url: str, worker: int, customers: int, per_customer: int) -> None:
    async def run() -> None:
        reg = open_backend(kind, Path(tmp), url)
        await reg.open()
        try:
            for i in range(per_customer):
                for c in range(customers):
                    # every worker sends the same message ids: each message arrives once per worker
                    ids = [("phone", f"+7916000{c:04d}"), ("email", f"c{c}@example.com")]
                    await reg.submit(complaint(f"Customer {c} complaint {i}: distinct text number {i * 1000 + c} "
                                               f"about {['bill', 'line', 'tv', 'router', 'sms'][i % 5]} {uuid.uuid4().hex}",
                                               ids=ids[worker % 2:] + ids[:worker % 2], message_id=f"m-{c}-{i}"))
        finally:
            await reg.close()

    asyncio.run(run())


async def test_parallel_processes_create_one_customer_each_and_register_once(backend: str, tmp_path: Path, redis_url: str) -> None:
    customers, per_customer, workers = 6, 5, 4
    reg = open_backend(backend, tmp_path, redis_url)
    await reg.open()  # create the schema before the workers race
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(backend, str(tmp_path), redis_url, w, customers, per_customer))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    try:
        assert await reg.queue_length() == customers * per_customer
        events = await reg.read_events("check", "c", count=1000)
        numbers = [e.registration_number for e in events]
        assert len(set(numbers)) == customers * per_customer
        by_customer: dict[str, set[str]] = {}
        for e in events:
            by_customer.setdefault(e.customer_id or "", set()).add(e.payload["complaint"]["customer"]["identities"][0]["value"])
        assert len(by_customer) == customers
        assert await reg.merge_suggestions() == []
    finally:
        await reg.close()
    if backend == "redis":
        client = redis_sync.Redis.from_url(redis_url)
        assert client.hlen("cgtest:identity") == customers * 2
        client.close()


# -- operators' actions, merges and search ------------------------------------------------
async def test_actions_change_state_are_audited_and_queued(registry: Registry) -> None:
    r = await registry.submit(complaint("Нет интернета с утра"))
    number = r.registration_number or ""
    await registry.read_events("crm", "w")  # the "new" event
    claim = await registry.apply_action(number, "claim", "olga")
    assert (claim["state"], claim["assigned_to"]) == ("claimed", "olga")
    await registry.apply_action(number, "reply", "olga", {"text": "Мастер придёт завтра"})
    await registry.apply_action(number, "close", "olga")
    state = await registry.registration_state(number)
    assert state is not None and (state["state"], state["assigned_to"]) == ("closed", "olga")
    assert state["kinds"] == {r.complaint_id: "new"}
    history = await registry.actions(number)
    assert [(a["action"], a["operator"]) for a in history] == [("claim", "olga"), ("reply", "olga"), ("close", "olga")]
    assert history[1]["details"] == {"text": "Мастер придёт завтра"}
    events = await registry.read_events("crm", "w")
    assert [(e.event, e.registration_number, e.customer_id) for e in events] == [
        ("claim", number, r.customer_id), ("reply", number, r.customer_id), ("close", number, r.customer_id)]
    assert events[2].payload["action"]["operator"] == "olga"
    assert [a["action"] for a in await registry.audit_log()] == ["close", "reply", "claim"]
    with pytest.raises(KeyError):
        await registry.apply_action("1999-999999", "claim", "olga")
    with pytest.raises(ValueError):
        await registry.apply_action(number, "delete", "olga")


async def test_accepted_suggestion_merges_reversibly(registry: Registry) -> None:
    a = await registry.submit(complaint("Нет связи в квартире", ids=[("phone", "+79161234567")]))
    b = await registry.submit(complaint("Не работает телевидение", ids=[("email", "boris@example.com")], name="Борис"))
    await registry.submit(complaint("Верните деньги за март", ids=[("phone", "+79161234567"), ("email", "boris@example.com")]))
    suggestion = (await registry.merge_suggestions())[0]
    merge_id = await registry.merge_customers(b.customer_id or "", a.customer_id or "", "olga", suggestion["id"])
    assert await registry.merge_suggestions() == []
    merged = await registry.get_customer(a.customer_id or "")
    assert merged is not None and merged["merged_from"] == [b.customer_id]
    assert {i["value"] for i in merged["identities"]} == {"+79161234567", "boris@example.com"}
    assert set(merged["registrations"]) == {a.registration_number, b.registration_number, "2026-000003"}
    # a new message by the e-mail identity now lands with the merged customer, and can follow up a's complaint
    after = await registry.submit(complaint("Дополнение по связи", ids=[("email", "boris@example.com")],
                                            in_reply_to=a.registration_number))
    assert after.customer_id == a.customer_id and after.status == "follow_up"

    await registry.unmerge(merge_id, "olga")
    alone = await registry.submit(complaint("Снова про телевидение, новая жалоба", ids=[("email", "boris@example.com")]))
    assert alone.customer_id == b.customer_id
    history = await registry.merges(b.customer_id or "")
    assert len(history) == 1 and history[0]["undone_by"] == "olga"
    assert [x["action"] for x in await registry.audit_log()][:2] == ["customers_unmerged", "customers_merged"]
    with pytest.raises(ValueError):
        await registry.unmerge(merge_id, "olga")


async def test_rejected_suggestion_is_closed_without_merging(registry: Registry) -> None:
    a = await registry.submit(complaint("Нет связи", ids=[("phone", "+79161234567")]))
    b = await registry.submit(complaint("Нет ТВ", ids=[("email", "b@example.com")]))
    await registry.submit(complaint("Общая жалоба", ids=[("phone", "+79161234567"), ("email", "b@example.com")]))
    suggestion = (await registry.merge_suggestions())[0]
    await registry.reject_suggestion(suggestion["id"], "olga")
    assert await registry.merge_suggestions() == []
    assert (await registry.get_customer(b.customer_id or ""))["merged_into"] is None  # type: ignore[index]
    assert a.customer_id != b.customer_id


async def test_search_filters(registry: Registry) -> None:
    await registry.submit(complaint("Нет интернета в Казани", ids=[("email", "k@example.com")], channel="email"))
    tv = await registry.submit(complaint("Телевидение показывает чёрный экран", ids=[("email", "t@example.com")], channel="vk",
                                         at=NOW + timedelta(hours=1)))
    await registry.apply_action(tv.registration_number or "", "claim", "olga")
    assert [r["complaint"]["channel"] for r in (await registry.search()).rows] == ["vk", "email"]
    assert [r["complaint"]["id"] for r in (await registry.search(channel="vk")).rows] == [tv.complaint_id]
    assert [r["state"] for r in (await registry.search(state="claimed")).rows] == ["claimed"]
    assert [r["complaint"]["channel"] for r in (await registry.search(text="ИНТЕРНЕТА")).rows] == ["email"]
    since = (NOW + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    assert [r["complaint"]["channel"] for r in (await registry.search(since=since)).rows] == ["vk"]
    until = (NOW + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    assert [r["complaint"]["channel"] for r in (await registry.search(until=until)).rows] == ["email"]
    assert await registry.search(urgency="immediate") == SearchResult([], None, scan_limited=False)
    # instants compare as instants: the e-mail came at 09:00:00Z, before 09:00:00.500000Z (not so as text)
    half = (NOW + timedelta(seconds=0.5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert [r["complaint"]["channel"] for r in (await registry.search(since=half)).rows] == ["vk"]
    assert [r["complaint"]["channel"] for r in (await registry.search(until=half)).rows] == ["email"]


async def registrations_with_deadlines(registry: Registry) -> dict[str, Receipt]:
    """Six registrations with the deadlines and the action of each, and then a repeat and a
    follow-up of the first (their own first answer's deadline passed) and an automatic reply:
    the receipts by case."""
    now = datetime.now(timezone.utc)

    def at(hours: float) -> str:
        return (now + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")

    cases = {
        "open, first answer late": ({"acknowledge": at(-1), "respond": at(90)}, None),
        "open, first answer in time, the rest late": ({"acknowledge": at(2), "respond": at(-1)}, None),
        "claimed, only the first answer late": ({"acknowledge": at(-5), "respond": at(90)}, "claim"),
        "claimed, the answer late": ({"acknowledge": at(-5), "respond": at(-1), "legal": at(900)}, "claim"),
        "closed, everything late": ({"acknowledge": at(-5), "respond": at(-1)}, "close"),
        "no deadlines": ({}, None),
    }
    receipts = {}
    for i, (name, (deadlines, action)) in enumerate(cases.items()):
        c = complaint(f"Жалоба: {name}", ids=[("phone", f"+7916300{i:04d}")], at=NOW + timedelta(minutes=i))
        c.deadlines = deadlines
        receipts[name] = await registry.submit(c)
        assert receipts[name].status == "new"
        if action:
            await registry.apply_action(receipts[name].registration_number or "", action, "olga")
    first = receipts["open, first answer late"].registration_number
    for name, c in (("a repeat", complaint("Жалоба: open, first answer late", ids=[("phone", "+79163000000")],
                                           at=NOW + timedelta(minutes=9))),
                    ("a follow-up", complaint("Ещё раз: ответьте", ids=[("phone", "+79163000000")], in_reply_to=first)),
                    ("an automatic reply", complaint("Автоответ: я в отпуске", ids=[("phone", "+79163000002")], auto=True))):
        c.deadlines = {"acknowledge": at(-9)}
        receipts[name] = await registry.submit(c)
    assert [receipts[name].status for name in ("a repeat", "a follow-up", "an automatic reply")] == [
        "repeat", "follow_up", "automatic"]
    return receipts


def opened_numbers(receipts: dict[str, Receipt]) -> dict[str, str]:
    """The registration numbers of the cases that opened one."""
    return {name: receipt.registration_number or "" for name, receipt in receipts.items() if receipt.status == "new"}


async def test_the_overdue_filter_finds_messages_whose_current_deadline_has_passed(registry: Registry) -> None:
    """While open the first answer's deadline counts, once claimed the nearest of the
    others; each message's own (a repeat's, a follow-up's); a closed registration is never
    overdue, nor an automatic reply, which opens no registration and waits for no answer."""
    receipts = await registrations_with_deadlines(registry)
    names = {receipt.complaint_id: name for name, receipt in receipts.items()}
    found = await registry.search(overdue=True)
    assert [names[r["complaint"]["id"]] for r in found.rows] == [
        "a follow-up", "a repeat", "claimed, the answer late", "open, first answer late"]
    assert [names[r["complaint"]["id"]] for r in (await registry.search(overdue=True, state="open")).rows] == [
        "a follow-up", "a repeat", "open, first answer late"]


async def test_registrations_due_counts_each_open_registration_by_the_deadline_that_matters_now(
        registry: Registry) -> None:
    """The index of deadlines: a registration counts under the first answer's deadline while
    open, under the nearest other once claimed, not at all once closed or without deadlines;
    it moves as its state changes; follow-ups, repeats and automatic replies open none."""
    numbers = opened_numbers(await registrations_with_deadlines(registry))
    now = time.time()
    assert await registry.registrations_due(now) == {"acknowledge": {"pending": 2, "overdue": 1, "due_soon": 0},
                                                     "respond": {"pending": 2, "overdue": 1, "due_soon": 0}}
    await registry.apply_action(numbers["closed, everything late"], "reopen", "olga")  # open again: the first answer
    await registry.apply_action(numbers["claimed, the answer late"], "close", "olga")
    await registry.apply_action(numbers["open, first answer in time, the rest late"], "reply", "olga")  # no state change
    assert await registry.registrations_due(now) == {"acknowledge": {"pending": 3, "overdue": 2, "due_soon": 0},
                                                     "respond": {"pending": 1, "overdue": 0, "due_soon": 0}}
    for number in numbers.values():
        await registry.apply_action(number, "close", "olga")
    assert await registry.registrations_due(now) == {}
    assert await registry.registrations_due(now - 86400 * 400) == {}


async def test_registrations_due_counts_a_deadline_as_passed_only_after_its_instant_and_as_due_soon_before(
        registry: Registry) -> None:
    c = complaint()
    c.deadlines = {"acknowledge": "2026-03-10T17:00:00Z", "respond": "2026-03-17T17:00:00Z"}
    await registry.submit(c)
    at = datetime(2026, 3, 10, 17, tzinfo=timezone.utc).timestamp()
    assert await registry.registrations_due(at) == {"acknowledge": {"pending": 1, "overdue": 0, "due_soon": 1}}
    assert await registry.registrations_due(at + 0.001) == {"acknowledge": {"pending": 1, "overdue": 1, "due_soon": 0}}
    # due soon: the deadline passes within registry.due_soon_minutes (60 by default) from now
    assert (await registry.registrations_due(at - 3600))["acknowledge"]["due_soon"] == 0
    assert (await registry.registrations_due(at - 3599.999))["acknowledge"]["due_soon"] == 1


def test_the_current_deadline_is_the_nearest_instant_not_the_first_text() -> None:
    deadlines = {"technical": "2026-03-10T12:00:00.500000Z", "respond": "2026-03-10T12:00:00Z", "legal": "soon"}
    assert current_deadline(deadlines, "claimed") == ("respond", "2026-03-10T12:00:00Z")
    assert current_deadline({"acknowledge": "2026-03-10T09:00:00Z", **deadlines}, "open") == ("acknowledge", "2026-03-10T09:00:00Z")
    assert current_deadline({"acknowledge": "2026-03-10T09:00:00Z"}, "claimed") == ("acknowledge", "2026-03-10T09:00:00Z")
    assert current_deadline(deadlines, "closed") is None and current_deadline({"legal": "soon"}, "open") is None
    assert is_overdue(deadlines, "claimed", NOW.replace(hour=12, second=1).timestamp())
    assert not is_overdue(deadlines, "claimed", NOW.replace(hour=11).timestamp())


async def test_search_pages_by_next_before_and_says_when_there_is_no_more(registry: Registry) -> None:
    ids = [(await registry.submit(complaint(f"Жалоба номер {i} про связь", ids=[("phone", f"+7916000{i:04d}")],
                                            at=NOW + timedelta(minutes=i)))).complaint_id for i in range(5)]
    first = await registry.search(limit=2)
    assert [r["complaint"]["id"] for r in first.rows] == [ids[4], ids[3]]
    assert (first.next_before, first.scan_limited) == (ids[3], False)
    second = await registry.search(limit=2, before=first.next_before)
    assert [r["complaint"]["id"] for r in second.rows] == [ids[2], ids[1]] and second.next_before == ids[1]
    last = await registry.search(limit=2, before=second.next_before)
    assert [r["complaint"]["id"] for r in last.rows] == [ids[0]] and last.next_before is None
    exact = await registry.search(limit=5)  # exactly as many matches as asked for: no next page
    assert len(exact.rows) == 5 and exact.next_before is None


async def test_a_search_stopped_by_its_scan_limit_says_so_and_goes_on_to_an_older_match(registry: Registry) -> None:
    """The one claimed registration is older than the scan limit reaches: the first page is
    empty but says the search stopped, and paging on from it finds the match."""
    old = await registry.submit(complaint("Старая жалоба на качество связи", ids=[("phone", "+79160009999")],
                                          channel="email"))
    await registry.apply_action(old.registration_number or "", "claim", "olga")
    newer = [(await registry.submit(complaint(f"Новая жалоба {i} на связь", ids=[("phone", f"+7916100{i:04d}")],
                                              at=NOW + timedelta(minutes=1 + i)))).complaint_id for i in range(7)]
    page = await registry.search(kind="new", urgency="normal", text="старая", scan_limit=3)
    assert (page.rows, page.scan_limited, page.next_before) == ([], True, newer[4])
    seen: list[str] = []
    for _ in range(10):
        seen += [r["complaint"]["id"] for r in page.rows]
        if page.next_before is None:
            break
        page = await registry.search(kind="new", urgency="normal", text="старая", scan_limit=3, before=page.next_before)
    assert seen == [old.complaint_id] and page.next_before is None and not page.scan_limited
    full = await registry.search(limit=2, scan_limit=2)  # a page full at the scan limit: it goes on from its last row
    assert [r["complaint"]["id"] for r in full.rows] == [newer[6], newer[5]]
    assert (full.next_before, full.scan_limited) == (newer[5], False)


@pytest.fixture
def small_purge_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A purge works in chunks of two rows or keys: every chunk's edge is crossed."""
    monkeypatch.setattr(sqlite_registry, "PURGE_CHUNK", 2)
    monkeypatch.setattr(redis_registry, "PURGE_CHUNK", 2)


@pytest.mark.usefixtures("small_purge_chunks")
async def test_purge_removes_personal_data_and_keeps_statistics(registry: Registry) -> None:
    old = complaint("Старая жалоба Анны про счёт", ids=[("phone", "+79161234567")], at=NOW - timedelta(days=400))
    old.meta["raw"] = {"sha256": "a" * 64, "content_type": "message/rfc822"}
    kept_old = await registry.submit(old)
    shared = complaint("Свежая жалоба Бориса", ids=[("email", "boris@example.com")], at=NOW - timedelta(days=500))
    boris_old = await registry.submit(shared)
    fresh = complaint("Свежая жалоба Бориса о связи", ids=[("email", "boris@example.com")], at=NOW)
    fresh.meta["raw"] = {"sha256": "b" * 64, "content_type": "application/json"}
    await registry.submit(fresh)
    await registry.add_dead_letter({"channel": "email", "message_id": "x", "text": "личные данные"}, "no text")

    cutoff = (NOW - timedelta(days=365)).isoformat().replace("+00:00", "Z")
    result = await registry.purge(cutoff)
    assert result["messages"] == 2
    assert result["blobs"] == ["a" * 64]
    purged = await registry.get_message(kept_old.complaint_id or "")
    assert purged is not None
    assert (purged.text, purged.customer.name, purged.customer.identities) == ("", None, [])
    assert purged.registration_number == kept_old.registration_number and purged.channel == "web"
    assert purged.meta["purged_at"]
    anna = await registry.get_customer(kept_old.customer_id or "")
    assert anna is not None and anna["identities"] == [] and anna["name"] is None
    boris = await registry.get_customer(boris_old.customer_id or "")
    assert boris is not None and boris["identities"] == [{"kind": "email", "value": "boris@example.com"}]
    again = await registry.purge(cutoff)
    assert (again["messages"], again["customers"]) == (0, 0)


@pytest.mark.usefixtures("small_purge_chunks")
async def test_a_customer_who_writes_again_while_the_purge_runs_keeps_their_identities(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    old = await registry.submit(complaint("Жалоба двухлетней давности", at=NOW - timedelta(days=800)))
    for i in range(3):
        await registry.submit(complaint(f"Старая жалоба соседа {i}", ids=[("email", f"n{i}@example.com")], at=NOW - timedelta(days=700)))
    again: list[Receipt] = []

    async def customer_writes() -> None:  # once the purge has looked at everything and not yet changed the customers
        if not again:
            again.append(await registry.submit(complaint("Снова нет интернета, пишу через два года", at=NOW)))

    if isinstance(registry, RedisRegistry):  # and the cluster: after the last page of the timeline
        zrange = registry.r.zrange

        async def pages(*args: Any, **kwargs: Any) -> Any:
            found = await zrange(*args, **kwargs)
            if not found:
                await customer_writes()
            return found
        monkeypatch.setattr(registry.r, "zrange", pages)
    else:  # between finding the old messages and changing them
        assert isinstance(registry, SqliteRegistry)
        read = registry._read

        async def reads(fn: Any) -> Any:
            found = await read(fn)
            await customer_writes()
            return found
        monkeypatch.setattr(registry, "_read", reads)

    result = await registry.purge((NOW - timedelta(days=365)).isoformat().replace("+00:00", "Z"))
    assert again and again[0].customer_id == old.customer_id
    assert (result["messages"], result["customers"]) == (4, 3)  # the neighbours, not the customer who wrote again
    customer = await registry.get_customer(old.customer_id or "")
    assert customer is not None and customer["identities"] == [{"kind": "phone", "value": "+79161234567"}]
    assert customer["name"] == "Анна"
    later = await registry.submit(complaint("И ещё одно сообщение", at=NOW + timedelta(minutes=5)))
    assert later.customer_id == old.customer_id


@pytest.mark.usefixtures("small_purge_chunks")
async def test_a_customer_merged_into_one_with_newer_complaints_keeps_their_identities(registry: Registry) -> None:
    old = await registry.submit(complaint("Письмо двухлетней давности", ids=[("email", "boris@example.com")], name="Борис",
                                          at=NOW - timedelta(days=800)))
    active = await registry.submit(complaint("Свежая жалоба по телефону", ids=[("phone", "+79161234567")], at=NOW))
    await registry.merge_customers(old.customer_id or "", active.customer_id or "", "olga")
    result = await registry.purge((NOW - timedelta(days=365)).isoformat().replace("+00:00", "Z"))
    assert (result["messages"], result["customers"]) == (1, 0)  # the customer as merged has a newer complaint
    again = await registry.submit(complaint("Снова пишу с почты", ids=[("email", "boris@example.com")], at=NOW))
    assert again.customer_id == active.customer_id


@pytest.mark.usefixtures("small_purge_chunks")
async def test_purge_removes_the_identities_of_merge_suggestions_made_before_the_cutoff(registry: Registry) -> None:
    for i in range(3):  # three suggestions: each last complaint's two identities belong to two customers
        await registry.submit(complaint("Нет связи", ids=[("phone", f"+7916123456{i}")]))
        await registry.submit(complaint("Нет ТВ", ids=[("email", f"b{i}@example.com")]))
        await registry.submit(complaint("Общая жалоба", ids=[("phone", f"+7916123456{i}"), ("email", f"b{i}@example.com")]))
    rejected, *kept = await registry.merge_suggestions()
    await registry.reject_suggestion(rejected["id"], "olga")
    await asyncio.sleep(0.01)
    cutoff = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    await asyncio.sleep(0.01)
    await registry.submit(complaint("Новая пара", ids=[("phone", "+79169999999")]))
    await registry.submit(complaint("Новая пара, почта", ids=[("email", "new@example.com")]))
    await registry.submit(complaint("Новая пара вместе", ids=[("phone", "+79169999999"), ("email", "new@example.com")]))

    result = await registry.purge(cutoff)
    assert result["merge_suggestions"] == 3
    suggestions = await registry.merge_suggestions()  # the rejected one stays rejected
    assert [s["id"] for s in suggestions[:2]] == [s["id"] for s in kept]
    assert [s["identities"] for s in suggestions] == ["phone,email", "phone,email", "phone:+79169999999,email:new@example.com"]
    assert (await registry.purge(cutoff))["merge_suggestions"] == 0


@pytest.mark.usefixtures("small_purge_chunks")
async def test_purge_frees_only_the_blobs_nothing_kept_names(registry: Registry) -> None:
    def old(text: str, *blobs: str) -> Complaint:
        c = complaint(text, ids=[("email", f"{uuid.uuid4().hex}@example.com")], at=NOW - timedelta(days=400))
        c.meta["raw"] = {"sha256": blobs[0], "content_type": "message/rfc822"}
        c.attachments = [Attachment(filename="scan.pdf", content_type="application/pdf", size=3, sha256=b) for b in blobs[1:]]
        return c

    alone, shared, in_dead_letter, rechecked, named_later = ("a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64)
    await registry.submit_many([old("Старая жалоба с оригиналом", alone, shared),
                                old("Старая жалоба из письма", in_dead_letter), old("Ещё одна", named_later)])
    newer = complaint("Новая жалоба с тем же сканом", ids=[("email", "new@example.com")])
    newer.attachments = [Attachment(filename="scan.pdf", content_type="application/pdf", size=3, sha256=shared)]
    await registry.submit(newer)
    await registry.add_dead_letter({"channel": "email", "message_id": "m", "raw_sha256": in_dead_letter,
                                    "attachments": []}, "no text")
    fresh = complaint("Свежая жалоба", ids=[("email", "fresh@example.com")])
    fresh.meta["raw"] = {"sha256": named_later, "content_type": "message/rfc822"}
    await registry.submit(fresh)

    result = await registry.purge((NOW - timedelta(days=365)).isoformat().replace("+00:00", "Z"), [rechecked])
    assert (result["messages"], result["blobs"]) == (3, [alone, rechecked])
    assert (await registry.purge((NOW - timedelta(days=365)).isoformat().replace("+00:00", "Z"), [shared, named_later]))["blobs"] == []


async def test_a_registration_whose_acknowledgement_failed_is_marked_and_found_by_the_undelivered_filter(registry: Registry) -> None:
    failed = await registry.submit(complaint("Нет связи третий день", ids=[("phone", "+79160000001")]))
    fine = await registry.submit(complaint("Счёт завышен вдвое", ids=[("phone", "+79160000002")]))
    await registry.apply_action(fine.registration_number or "", "note", "olga", {"text": "проверить счёт"})
    await registry.apply_action(failed.registration_number or "", "acknowledgement_failed", "gateway",
                                {"channel": "telegram", "attempts": 1, "error": "Forbidden: bot was blocked by the user"})
    assert (await registry.registration_state(failed.registration_number or "") or {})["acknowledgement_failed"] is True
    assert (await registry.registration_state(fine.registration_number or "") or {})["acknowledgement_failed"] is False
    await registry.apply_action(failed.registration_number or "", "claim", "olga")  # another action keeps the mark
    rows = (await registry.search(undelivered=True)).rows
    assert [(r["complaint"]["id"], r["undelivered"], r["state"]) for r in rows] == [(failed.complaint_id, True, "claimed")]
    assert {r["complaint"]["id"]: r["undelivered"] for r in (await registry.search()).rows} == {
        failed.complaint_id: True, fine.complaint_id: False}


@pytest.mark.usefixtures("small_purge_chunks")
async def test_purge_removes_the_texts_and_errors_of_actions_taken_before_the_cutoff(registry: Registry) -> None:
    number = (await registry.submit(complaint("Нет связи, звоните Анне на +79161234567"))).registration_number or ""
    await registry.apply_action(number, "claim", "olga")
    await registry.apply_action(number, "reply", "olga", {"text": "Анна, мастер придёт завтра к 10:00", "channel": "sms"})
    await registry.apply_action(number, "note", "olga", {"text": "клиентка просила звонить на +79161234567"})
    await registry.apply_action(number, "acknowledgement_failed", "gateway",
                                {"channel": "sms", "attempts": 8, "error": "The 'To' number +79161234567 is not valid"})
    await asyncio.sleep(0.01)
    cutoff = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    await asyncio.sleep(0.01)
    await registry.apply_action(number, "note", "boris", {"text": "после отсечки"})

    result = await registry.purge(cutoff)
    assert result["actions"] == 3
    kept = await registry.actions(number)
    assert [(a["action"], a["operator"]) for a in kept] == [("claim", "olga"), ("reply", "olga"), ("note", "olga"),
                                                           ("acknowledgement_failed", "gateway"), ("note", "boris")]
    assert kept[0]["details"] == {}
    assert kept[1]["details"] == {"channel": "sms", "purged_at": kept[1]["details"]["purged_at"]}
    assert kept[2]["details"] == {"purged_at": kept[2]["details"]["purged_at"]}
    assert kept[3]["details"] == {"channel": "sms", "attempts": 8, "purged_at": kept[3]["details"]["purged_at"]}
    assert kept[4]["details"] == {"text": "после отсечки"}
    everything = json.dumps(await registry.audit_log(), ensure_ascii=False) + json.dumps(kept, ensure_ascii=False)
    assert "+79161234567" not in everything and "Анна" not in everything and "после отсечки" in everything
    assert (await registry.registration_state(number) or {})["state"] == "claimed"
    assert (await registry.purge(cutoff))["actions"] == 0


@pytest.mark.usefixtures("small_purge_chunks")
async def test_purge_of_actions_finishes_while_operators_of_another_process_go_on_acting(
        registry: Registry, backend: str, tmp_path: Path, redis_url: str) -> None:
    numbers = [(await registry.submit(complaint(f"Жалоба {i}", ids=[("phone", f"+7916000000{i}")]))).registration_number or ""
               for i in range(3)]
    for i in range(60):
        await registry.apply_action(numbers[i % 3], "note", "olga", {"text": f"звонила клиентке, заметка {i}"})
    await asyncio.sleep(0.01)
    cutoff = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    await asyncio.sleep(0.01)
    stop = threading.Event()

    def operators() -> int:  # another gateway process: its own connection and event loop
        async def act() -> int:
            # it submits nothing: no writer process to wait for while the purge runs
            other = open_backend("sqlite" if backend == "sqlite_writer_process" else backend, tmp_path, redis_url)
            await other.open()
            acted = 0
            try:
                while not stop.is_set():
                    await other.apply_action(numbers[acted % 3], "note", "boris", {"text": f"после отсечки {acted}"})
                    acted += 1
            finally:
                await other.close()
            return acted
        return asyncio.run(act())

    with ThreadPoolExecutor(1) as pool:
        acting = pool.submit(operators)
        try:
            result = await asyncio.wait_for(registry.purge(cutoff), timeout=20)
        finally:
            stop.set()
        acted = acting.result()
    assert result["actions"] == 60 and acted > 0
    after = [a for number in numbers for a in await registry.actions(number)]
    assert sorted(a["details"]["text"] for a in after if a["operator"] == "boris") == sorted(f"после отсечки {i}" for i in range(acted))
    assert all(set(a["details"]) == {"purged_at"} for a in after if a["operator"] == "olga")
    assert (await registry.purge(cutoff))["actions"] == 0


async def test_groups_created_at_the_end_see_only_new_events_and_can_be_deleted(registry: Registry) -> None:
    await registry.submit(complaint("Старое событие до группы"))
    await registry.create_group("live", at_end=True)
    await registry.create_group("live", at_end=False)  # exists already: no change
    assert await registry.read_events("live", "c") == []
    newer = await registry.submit(complaint("Новое событие после группы", ids=[("email", "n@example.com")]))
    assert [e.complaint_id for e in await registry.read_events("live", "c")] == [newer.complaint_id]
    await registry.delete_group("live")
    assert len(await registry.read_events("live", "c")) == 2  # a new group of that name starts from the first event


async def test_a_batch_survives_a_redis_server_that_lost_its_scripts(registry: Registry) -> None:
    if isinstance(registry, RedisRegistry):  # and the cluster
        await registry.r.script_flush()  # as after a Redis restart
    receipts = await registry.submit_many([complaint("Нет связи в квартире"), complaint("Не работает телевидение")])
    assert [r.registration_number for r in receipts] == ["2026-000001", "2026-000002"]  # type: ignore[union-attr]
    assert await registry.queue_length() == 2


async def refuse_customer_of(registry: Registry, identity: str) -> str:
    """Make every submit that reaches the customer of ``identity`` fail inside the backend's
    atomic step (a Lua script or an SQLite transaction); the reason it will give."""
    if isinstance(registry, RedisRegistry):  # and the cluster: a customer record that is not a hash
        await registry.r.hset(registry.prefix + "identity", identity, "broken")
        await registry.r.set(registry.prefix + "customer:broken", "not a hash")
        return "WRONGTYPE"
    assert isinstance(registry, SqliteRegistry)
    registry.db.execute("INSERT INTO customers(customer_id, name, created_at) VALUES ('broken', NULL, '2026-01-01')")
    registry.db.execute("INSERT INTO identities(key, customer_id, created_at) VALUES (?, 'broken', '2026-01-01')", (identity,))
    registry.db.execute("CREATE TRIGGER refuse BEFORE UPDATE ON customers WHEN OLD.customer_id = 'broken'"
                        " BEGIN SELECT RAISE(ABORT, 'refused on purpose'); END")
    return "refused on purpose"


async def test_a_complaint_that_fails_inside_the_atomic_step_fails_alone(registry: Registry) -> None:
    reason = await refuse_customer_of(registry, "phone:+79160000000")
    receipts = await registry.submit_many([
        complaint("Нет связи в квартире"),
        complaint("Не работает телевидение", ids=[("phone", "+79160000000")], message_id="broken"),
        complaint("Счёт выставлен дважды за март", ids=[("email", "boris@example.com")], message_id="third")])
    assert isinstance(receipts[1], RegistryError) and reason in str(receipts[1])
    assert [r.registration_number for r in (receipts[0], receipts[2])] == ["2026-000001", "2026-000002"]  # type: ignore[union-attr]
    assert await registry.queue_length() == 2


def test_the_year_of_a_number_turns_at_local_midnight_even_in_a_zone_off_the_hour() -> None:
    settings = RegistrySettings(timezone="Asia/Kathmandu")  # UTC+05:45
    numbers = NumberFormat("{year}-{seq:06d}")
    before = complaint("Жалоба", at=datetime(2026, 12, 31, 18, 14, 59, 999_999, tzinfo=timezone.utc))
    after = complaint("Жалоба", at=datetime(2026, 12, 31, 18, 15, tzinfo=timezone.utc))
    assert make_plan(before, settings, numbers).year == "2026"
    assert make_plan(after, settings, numbers).year == "2027"
    assert make_plan(after, settings, numbers).printf == "2027-%06d"
    offset = complaint("Жалоба", at=datetime(2026, 12, 31, 18, 15, tzinfo=timezone.utc))
    offset.received_at = "2027-01-01T00:00:00+05:45"  # not UTC: read as it is written
    assert make_plan(offset, settings, numbers).year == "2027"


async def test_state_maps_keep_one_entry_per_key(registry: Registry) -> None:
    assert await registry.get_entries("acknowledgements:telegram:0") == {}
    await registry.set_entry("acknowledgements:telegram:0", "c1", '{"failures":1}')
    await registry.set_entry("acknowledgements:telegram:0", "c2", '{"failures":1}')
    await registry.set_entry("acknowledgements:telegram:1", "c3", "other worker")
    await registry.set_entry("acknowledgements:telegram:0", "c1", '{"failures":2}')  # replaced
    assert await registry.get_entries("acknowledgements:telegram:0") == {"c1": '{"failures":2}', "c2": '{"failures":1}'}
    await registry.set_entry("acknowledgements:telegram:0", "c2", None)
    await registry.set_entry("acknowledgements:telegram:0", "absent", None)  # nothing to remove: no error
    assert await registry.get_entries("acknowledgements:telegram:0") == {"c1": '{"failures":2}'}
    assert await registry.get_entries("acknowledgements:telegram:1") == {"c3": "other worker"}
