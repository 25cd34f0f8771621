"""The SQLite registry's file: a delivery is stored once, as its message row, and a file
written by an earlier version (receipts in a table of their own, the repeat check's earlier
index, an index of registrations by customer) is read the same; the repeat check reads its
candidates from an index alone; the queue's pending deliveries read with the events they
name; the inbox search asks the file for what its columns answer."""
from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.inbound import Receipt
from gateway.registry import RegistrySettings
from gateway.registry.sqlite import SqliteRegistry, _few_in_state
from normalizer.schema import Complaint
from tests.test_registry_contract import NOW, complaint, opened_numbers, registrations_with_deadlines


def open_registry(path: Path, **settings: float) -> SqliteRegistry:
    return SqliteRegistry(RegistrySettings(timezone="Europe/Moscow", **settings), path, synchronous="NORMAL")  # type: ignore[arg-type]


async def submitted_then_rewritten(path: Path, first: Complaint, earlier_layout: Callable[[Receipt], str]) -> Receipt:
    """``first`` registered in a new file, which ``earlier_layout(receipt)`` (SQL) then turns
    into what an earlier version wrote; the registry is closed meanwhile."""
    registry = open_registry(path)
    await registry.open()
    receipt = await registry.submit(first)
    await registry.close()
    db = sqlite3.connect(path)
    db.executescript(earlier_layout(receipt))
    db.close()
    return receipt


async def test_a_second_message_row_for_one_delivery_is_refused_by_the_file_itself(tmp_path: Path) -> None:
    registry = open_registry(tmp_path / "registry.sqlite3")
    await registry.open()
    try:
        await registry.submit(complaint(channel="telegram", message_id="42:7"))
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            registry.db.execute(
                "INSERT INTO messages(id, kind, channel, channel_message_id, received_epoch, simhash, digest, body)"
                " VALUES ('other', 'new', 'telegram', '42:7', 0, 0, '', '{}')")
    finally:
        await registry.close()


async def test_a_file_of_the_earlier_layout_recognises_its_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    first = await submitted_then_rewritten(path, complaint(channel="vk", message_id="vk-1"), lambda first: (
        # the earlier layout: a receipts table beside the messages, no index of deliveries
        "DROP INDEX messages_delivery;"
        "CREATE TABLE receipts (channel TEXT NOT NULL, message_id TEXT NOT NULL, receipt TEXT NOT NULL,"
        " PRIMARY KEY (channel, message_id));"
        f"INSERT INTO receipts VALUES ('vk', 'vk-1', '{{\"status\": \"new\", \"registration_number\":"
        f" \"{first.registration_number}\"}}');"))

    registry = open_registry(path)
    await registry.open()
    try:
        again = await registry.submit(complaint(text="Другой текст", channel="vk", message_id="vk-1"))
        assert (again.status, again.registration_number, again.customer_id, again.complaint_id) == (
            "duplicate", first.registration_number, first.customer_id, first.complaint_id)
        later = await registry.submit(complaint(text="Счёт выставлен дважды", channel="vk", message_id="vk-2"))
        assert (later.status, later.registration_number) == ("new", "2026-000002")
        assert registry.db.execute("SELECT name FROM sqlite_master WHERE name='messages_delivery'").fetchone()
        assert registry.db.execute("SELECT COUNT(*) FROM receipts").fetchone() == (1,)  # left as it was
    finally:
        await registry.close()


async def test_the_repeat_check_reads_its_candidates_from_the_index_alone(tmp_path: Path) -> None:
    """A returning customer's complaint is compared with up to ``repeat_candidates`` recent
    ones: their SimHashes come from the index, not from the rows of whole messages."""
    registry = open_registry(tmp_path / "registry.sqlite3")
    await registry.open()
    statements: list[str] = []
    try:
        first = await registry.submit(complaint("Третий день нет интернета, роутер мигает красным", at=NOW))
        await registry.submit(complaint("Прошу пересчитать абонентскую плату за февраль", at=NOW + timedelta(hours=1)))
        registry.db.set_trace_callback(statements.append)
        repeat = await registry.submit(complaint("Третий день нет интернета, роутер мигает красным!",
                                                 at=NOW + timedelta(hours=2)))
        registry.db.set_trace_callback(None)
        assert (repeat.status, repeat.registration_number) == ("repeat", first.registration_number)
        candidates = [s for s in statements if "simhash" in s and s.startswith("SELECT")]
        assert len(candidates) == 1
        plan = " ".join(row[3] for row in registry.db.execute("EXPLAIN QUERY PLAN " + candidates[0]))
        assert "USING COVERING INDEX messages_recent_simhash" in plan, plan
    finally:
        await registry.close()


async def test_a_file_with_the_earlier_repeat_index_gets_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    first = await submitted_then_rewritten(path, complaint("Третий день нет интернета, роутер мигает красным", at=NOW), lambda _: (
        # the earlier layout: the candidates' index without their SimHash
        "DROP INDEX messages_recent_simhash;"
        "CREATE INDEX messages_recent ON messages(customer_id, kind, received_epoch);"))

    registry = open_registry(path)
    await registry.open()
    try:
        indexes = {row[0] for row in registry.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "messages_recent_simhash" in indexes and "messages_recent" not in indexes
        repeat = await registry.submit(complaint("Третий день нет интернета, роутер мигает красным!!",
                                                 at=NOW + timedelta(days=1)))
        assert (repeat.status, repeat.registration_number) == ("repeat", first.registration_number)
    finally:
        await registry.close()


async def test_a_customers_registrations_are_read_from_their_messages_also_in_a_file_of_the_earlier_layout(tmp_path: Path) -> None:
    """No index of registrations by customer is kept (a returning customer's complaint would
    write a page of it anywhere in the file): a customer's registrations are found through
    the index of their messages. An earlier file's index is dropped when it is opened, and
    a merged customer's registrations are still listed with the customer's own."""
    path = tmp_path / "registry.sqlite3"
    anna = await submitted_then_rewritten(path, complaint("Нет интернета", ids=[("email", "anna@example.com")]), lambda _: (
        "CREATE INDEX registrations_customer ON registrations(customer_id);"))  # the earlier layout
    registry = open_registry(path)
    await registry.open()
    try:
        assert registry.db.execute("SELECT name FROM sqlite_master WHERE name='registrations_customer'").fetchone() is None
        boris = await registry.submit(complaint("Счёт неверный", ids=[("email", "boris@example.com")], name="Борис"))
        await registry.merge_customers(boris.customer_id or "", anna.customer_id or "", "operator")
        customer = await registry.get_customer(anna.customer_id or "")
        assert customer is not None
        assert customer["registrations"] == [anna.registration_number, boris.registration_number]
    finally:
        await registry.close()


async def test_customers_are_a_table_without_rowid_also_in_a_file_of_the_earlier_layout(tmp_path: Path) -> None:
    """A new file's customers are a WITHOUT ROWID table; an earlier file's table is rebuilt
    when it is opened, its rows and merges kept: the same customers are found again."""
    path = tmp_path / "registry.sqlite3"
    anna = await submitted_then_rewritten(path, complaint("Нет интернета", ids=[("email", "anna@example.com")]), lambda _: "")
    registry = open_registry(path)
    await registry.open()
    try:
        assert "WITHOUT ROWID" in registry.db.execute("SELECT sql FROM sqlite_master WHERE name='customers'").fetchone()[0]
        boris = await registry.submit(complaint("Счёт неверный", ids=[("email", "boris@example.com")], name="Борис"))
        await registry.merge_customers(boris.customer_id or "", anna.customer_id or "", "operator")
    finally:
        await registry.close()
    db = sqlite3.connect(path)  # the earlier layout: customers with a rowid
    db.executescript(
        "CREATE TABLE customers_earlier (customer_id TEXT PRIMARY KEY, name TEXT, created_at TEXT NOT NULL, merged_into TEXT);"
        "INSERT INTO customers_earlier SELECT * FROM customers; DROP TABLE customers;"
        "ALTER TABLE customers_earlier RENAME TO customers; CREATE INDEX customers_merged ON customers(merged_into);")
    rows = db.execute("SELECT * FROM customers ORDER BY customer_id").fetchall()
    db.close()

    registry = open_registry(path)
    await registry.open()
    try:
        db = registry.db
        assert "WITHOUT ROWID" in db.execute("SELECT sql FROM sqlite_master WHERE name='customers'").fetchone()[0]
        assert db.execute("SELECT * FROM customers ORDER BY customer_id").fetchall() == rows
        assert db.execute("SELECT name FROM sqlite_master WHERE name='customers_merged'").fetchone()
        again = await registry.submit(complaint("Опять нет интернета", ids=[("email", "boris@example.com")], at=NOW + timedelta(days=9)))
        assert again.customer_id == anna.customer_id  # Boris was merged into Anna
    finally:
        await registry.close()


@asynccontextmanager
async def queue_of(path: Path, visibility_timeout_seconds: float, complaints: int) -> AsyncIterator[SqliteRegistry]:
    """An open registry whose queue holds ``complaints`` new complaints' events."""
    registry = open_registry(path, visibility_timeout_seconds=visibility_timeout_seconds)
    await registry.open()
    try:
        await submit_numbered(registry, range(complaints))
        yield registry
    finally:
        await registry.close()


async def submit_numbered(registry: SqliteRegistry, numbers: range) -> None:
    for n in numbers:
        await registry.submit(complaint(f"Жалоба номер {n}", ids=[("email", f"c{n}@example.com")]))


async def test_one_read_gives_expired_deliveries_first_then_new_events(tmp_path: Path) -> None:
    async with queue_of(tmp_path / "registry.sqlite3", 0.2, 3) as registry:
        first = await registry.read_events("crm", "w1", count=2)
        assert [e.deliveries for e in first] == [1, 1]
        await asyncio.sleep(0.3)  # both past the visibility timeout
        await submit_numbered(registry, range(3, 5))
        again = await registry.read_events("crm", "w2", count=4)
        assert [e.id for e in again[:2]] == [e.id for e in first]  # the expired ones first, in order
        assert [e.deliveries for e in again] == [2, 2, 1, 1]
        assert [e.payload["complaint"]["text"] for e in again] == [f"Жалоба номер {n}" for n in (0, 1, 2, 3)]
        assert registry.db.execute("SELECT consumer, deliveries FROM pending ORDER BY seq").fetchall() == [("w2", 2)] * 2 + [("w2", 1)] * 2
        assert await registry.ack_events("crm", [e.id for e in again] + ["999"]) == 4
        assert [e.payload["complaint"]["text"] for e in await registry.read_events("crm", "w2")] == ["Жалоба номер 4"]


async def test_a_pending_delivery_of_an_event_no_longer_stored_is_dropped(tmp_path: Path) -> None:
    """Purging deletes an event's pending deliveries with it; a file where one was left behind
    (written otherwise) delivers the rest and forgets that one."""
    async with queue_of(tmp_path / "registry.sqlite3", 0.1, 2) as registry:
        first = await registry.read_events("crm", "w1", count=2)
        registry.db.execute("DELETE FROM events WHERE seq=?", (int(first[0].id),))
        await asyncio.sleep(0.2)
        again = await registry.read_events("crm", "w1", count=2)
        assert [(e.id, e.deliveries) for e in again] == [(first[1].id, 2)]
        assert registry.db.execute("SELECT seq FROM pending").fetchall() == [(int(first[1].id),)]


async def test_a_read_of_more_expired_deliveries_than_one_statement_takes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The expired deliveries' events are read in chunks (SQLite caps a statement's parameters)."""
    monkeypatch.setattr("gateway.registry.sqlite._IN_CHUNK", 2)
    async with queue_of(tmp_path / "registry.sqlite3", 0.1, 5) as registry:
        first = await registry.read_events("crm", "w1", count=5)
        await asyncio.sleep(0.2)
        again = await registry.read_events("crm", "w1", count=5)
        assert [(e.id, e.deliveries) for e in again] == [(e.id, 2) for e in first]
        assert [e.payload["complaint"]["text"] for e in again] == [f"Жалоба номер {n}" for n in range(5)]


async def test_the_search_asks_the_file_for_channel_status_and_dates_so_an_old_match_is_on_the_first_page(tmp_path: Path) -> None:
    """On SQLite only messages that pass the channel, status and date filters (and, for the
    overdue filter, whose registration's deadline has passed) count towards the scan limit:
    a claimed e-mail older than many web complaints is found by a search that may look at
    two messages."""
    registry = open_registry(tmp_path / "registry.sqlite3")
    await registry.open()
    try:
        first = complaint("Старая жалоба про связь", ids=[("email", "old@example.com")], channel="email")
        first.deadlines = {"acknowledge": "2026-03-10T17:00:00Z", "respond": "2026-03-11T09:00:00Z"}  # NOW: March 2026
        old = await registry.submit(first)
        await registry.apply_action(old.registration_number or "", "claim", "olga")
        for i in range(12):
            later = complaint(f"Новая жалоба {i} про связь", ids=[("phone", f"+7916200{i:04d}")],
                              at=NOW + timedelta(minutes=1 + i))
            later.deadlines = {"acknowledge": "2126-03-10T17:00:00Z"}  # in time
            await registry.submit(later)
        for filters in ({"state": "claimed"}, {"channel": "email"},
                        {"until": (NOW + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")}):
            found = await registry.search(scan_limit=2, **filters)  # type: ignore[arg-type]
            assert ([r["complaint"]["id"] for r in found.rows], found.next_before, found.scan_limited) == (
                [old.complaint_id], None, False), filters
        # instants compare as instants: "09:01:00Z" is before "09:01:00.500000Z", though not as text
        since = (NOW + timedelta(minutes=1, seconds=0.5)).isoformat().replace("+00:00", "Z")
        assert [r["complaint"]["text"] for r in (await registry.search(since=since, limit=20)).rows][-1] == "Новая жалоба 1 про связь"
        # without a filter the database can answer, the limit counts every message
        assert (await registry.search(kind="new", text="старая", scan_limit=2)).scan_limited is True
        # the overdue filter asks the index of deadlines: the old claimed one, its decision's
        # deadline passed, is found past six in time and six closed (their first answer late,
        # once reopened) by a search that may look at two
        numbers = [r["complaint"]["registration_number"] for r in (await registry.search(state="open", limit=20)).rows]
        for number in numbers[:6]:
            await registry.apply_action(number, "close", "olga")
        found = await registry.search(overdue=True, scan_limit=2)
        assert ([r["complaint"]["id"] for r in found.rows], found.scan_limited) == ([old.complaint_id], False)
        with registry.db:
            registry.db.execute("UPDATE registrations SET due_epoch = 0 WHERE number = ?", (numbers[7],))
        found = await registry.search(overdue=True, scan_limit=1)  # the index only lets in: the deadlines decide
        assert ([r["complaint"]["id"] for r in found.rows], found.scan_limited) == ([], True)
        assert [r["complaint"]["id"] for r in (await registry.search(overdue=True, scan_limit=2)).rows] == [old.complaint_id]
    finally:
        await registry.close()


async def test_a_rare_status_is_read_from_its_registrations_and_a_common_one_by_going_down_the_messages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claimed or closed registrations few against all (fewer than sqrt(page × registrations))
    are read from the partial index ``registrations_worked``, their messages by number; many,
    by going down the messages newest first. Both ways give the same rows, newest first, with
    a channel, follow-ups and paging."""
    registry = open_registry(tmp_path / "registry.sqlite3")
    await registry.open()
    try:
        old = await registry.submit(complaint("Старая жалоба про связь", ids=[("email", "old@example.com")], channel="email"))
        number = old.registration_number or ""
        follow_up = await registry.submit(complaint("Напоминаю", ids=[("email", "old@example.com")], channel="vk",
                                                    in_reply_to=number, at=NOW + timedelta(seconds=30)))
        later = [await registry.submit(complaint(f"Новая жалоба {i} про связь", ids=[("phone", f"+7916200{i:04d}")],
                                                 at=NOW + timedelta(minutes=1 + i))) for i in range(30)]
        await registry.apply_action(number, "claim", "olga")
        for receipt in later[:3]:
            await registry.apply_action(receipt.registration_number or "", "close", "olga")
        plan = registry.db.execute("EXPLAIN QUERY PLAN SELECT number FROM registrations WHERE state = 'claimed' AND state != 'open'")
        assert "registrations_worked" in str(plan.fetchall())
        # the choice: 1 claimed and 3 closed of 31 are few for a page of 3 (sqrt(3 × 31) = 9.6); 30 closed are not
        assert _few_in_state(registry.db, "claimed", 3) and _few_in_state(registry.db, "closed", 3)

        async def ids(**filters: object) -> list[str]:
            return [r["complaint"]["id"] for r in (await registry.search(limit=2, **filters)).rows]  # type: ignore[arg-type]

        for few in (True, False):  # each way of reading, whatever the counts
            monkeypatch.setattr("gateway.registry.sqlite._few_in_state", lambda db, state, limit, few=few: few)
            assert await ids(state="claimed") == [follow_up.complaint_id, old.complaint_id], few
            assert await ids(state="claimed", channel="email") == [old.complaint_id], few
            assert await ids(state="claimed", before=follow_up.complaint_id) == [old.complaint_id], few
            assert await ids(state="closed") == [later[2].complaint_id, later[1].complaint_id], few
            page = await registry.search(state="closed", limit=2)
            assert [r["complaint"]["id"] for r in (await registry.search(state="closed", limit=2, before=page.next_before)).rows] == [
                later[0].complaint_id], few
            assert await ids(state="open") == [later[29].complaint_id, later[28].complaint_id], few
            newest = await registry.search(state="closed", limit=1, scan_limit=1)  # two asked of the file: the newest two
            assert [r["complaint"]["id"] for r in newest.rows] == [later[2].complaint_id], few
        monkeypatch.undo()
        for receipt in later[3:]:
            await registry.apply_action(receipt.registration_number or "", "close", "olga")
        assert not _few_in_state(registry.db, "closed", 3) and _few_in_state(registry.db, "claimed", 3)
    finally:
        await registry.close()


async def test_a_file_without_the_index_of_deadlines_gets_it_worked_out_from_each_open_registration(tmp_path: Path) -> None:
    """A file of the earlier layout (no ``due_epoch``, ``due_name``, ``registrations_due``)
    gets the columns, their values and the index when opened, and keeps them up to date."""
    path = tmp_path / "registry.sqlite3"
    registry = open_registry(path)
    await registry.open()
    try:
        numbers = opened_numbers(await registrations_with_deadlines(registry))
        now = time.time()
        expected = await registry.registrations_due(now)
    finally:
        await registry.close()
    assert expected == {"acknowledge": {"pending": 2, "overdue": 1, "due_soon": 0}, "respond": {"pending": 2, "overdue": 1, "due_soon": 0}}
    db = sqlite3.connect(path)
    db.executescript("DROP INDEX registrations_due; ALTER TABLE registrations DROP COLUMN due_epoch;"
                     " ALTER TABLE registrations DROP COLUMN due_name;")
    db.close()

    registry = open_registry(path)
    await registry.open()
    try:
        assert registry.db.execute("SELECT name FROM sqlite_master WHERE name='registrations_due'").fetchone()
        assert await registry.registrations_due(now) == expected
        await registry.apply_action(numbers["open, first answer late"], "claim", "olga")  # its respond: 90 hours on
        assert await registry.registrations_due(now) == {"acknowledge": {"pending": 1, "overdue": 0, "due_soon": 0},
                                                         "respond": {"pending": 3, "overdue": 1, "due_soon": 0}}
    finally:
        await registry.close()
