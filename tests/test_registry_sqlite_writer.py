"""The SQLite registry's batch of submits: on the event loop's thread when the file's write
lock is free, in its executor thread (without holding up the loop) while another process
writes, and registered exactly once either way."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.registry import RegistryError, RegistrySettings
from gateway.registry.sqlite import SqliteRegistry
from gateway.sqlite_wal import WriteLockBusy, connect_wal, write_transaction
from tests.test_registry_contract import complaint


@pytest.fixture
async def registry(tmp_path: Path):
    reg = SqliteRegistry(RegistrySettings(timezone="Europe/Moscow"), tmp_path / "registry.sqlite3", synchronous="NORMAL")
    await reg.open()
    yield reg
    await reg.close()


def record_threads(registry: SqliteRegistry, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    threads: list[int] = []
    submit = registry._submit_tx

    def recorded(db: sqlite3.Connection, plan, now=None):  # type: ignore[no-untyped-def]
        threads.append(threading.get_ident())
        return submit(db, plan, now)

    monkeypatch.setattr(registry, "_submit_tx", recorded)
    return threads


async def test_a_batch_runs_on_the_loop_thread_when_the_write_lock_is_free(registry: SqliteRegistry,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    threads = record_threads(registry, monkeypatch)
    receipts = await registry.submit_many([complaint(ids=[("phone", f"+7916000000{i}")]) for i in range(3)])
    assert [r.registration_number for r in receipts] == ["2026-000001", "2026-000002", "2026-000003"]  # type: ignore[union-attr]
    assert threads == [threading.get_ident()] * 3
    assert await registry.queue_length() == 3


async def test_a_batch_waits_in_the_thread_while_another_process_writes(registry: SqliteRegistry, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    threads = record_threads(registry, monkeypatch)
    other = connect_wal(tmp_path / "registry.sqlite3", "NORMAL")
    other.execute("BEGIN IMMEDIATE")  # another gateway process in the middle of its own write
    third = connect_wal(tmp_path / "registry.sqlite3", "NORMAL")
    with pytest.raises(WriteLockBusy):
        write_transaction(third, lambda db: None, wait=False)
    third.close()

    submitting = asyncio.create_task(registry.submit_many([complaint(ids=[("phone", "+79160000001")]),
                                                           complaint(ids=[("phone", "+79160000002")])]))
    ticks = 0
    while ticks < 20:  # the loop keeps running while the batch waits for the lock
        await asyncio.sleep(0.01)
        ticks += 1
    assert not submitting.done()
    other.execute("COMMIT")
    receipts = await asyncio.wait_for(submitting, 10)
    assert [r.registration_number for r in receipts] == ["2026-000001", "2026-000002"]  # type: ignore[union-attr]
    assert threads and threading.get_ident() not in threads
    assert registry.db.execute("PRAGMA busy_timeout").fetchone()[0] == 60000  # the no-wait attempt restored it
    again = await registry.submit_many([complaint(ids=[("phone", "+79160000003")])])
    assert again[0].registration_number == "2026-000003"  # type: ignore[union-attr]
    assert await registry.queue_length() == 3
    other.close()


async def test_the_page_cache_is_the_configured_size(tmp_path: Path) -> None:
    from gateway.config import from_dict
    from gateway.registry import build_registry

    config = from_dict({"registry": {"backend": "sqlite", "sqlite": {"path": str(tmp_path / "r.sqlite3"), "cache_mb": 16}}})
    reg = build_registry(config.registry)
    await reg.open()
    try:
        assert reg.db.execute("PRAGMA cache_size").fetchone()[0] == -16 * 1024  # type: ignore[attr-defined]
    finally:
        await reg.close()
    default = SqliteRegistry(RegistrySettings(), tmp_path / "d.sqlite3")
    await default.open()
    try:
        assert default.db.execute("PRAGMA cache_size").fetchone()[0] == -64 * 1024
    finally:
        await default.close()


async def test_a_complaint_that_fails_inside_the_batch_transaction_is_undone_alone(registry: SqliteRegistry) -> None:
    """The batch's one savepoint is undone and the batch runs again, a savepoint per submit."""
    registry.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.channel_message_id = 'broken'"
                        " BEGIN SELECT RAISE(ABORT, 'refused on purpose'); END")
    same_customer = [("email", "anna@example.com")]
    batch = [complaint("Нет связи в квартире", ids=same_customer, message_id="first"),
             complaint("Нет связи в квартире", ids=same_customer, message_id="broken"),
             complaint("Нет связи в квартире!", ids=same_customer, message_id="third"),
             complaint("Счёт выставлен дважды за март", ids=[("email", "boris@example.com")], message_id="fourth")]
    receipts = await registry.submit_many(batch)
    assert isinstance(receipts[1], RegistryError) and "refused on purpose" in str(receipts[1])
    first, third, fourth = receipts[0], receipts[2], receipts[3]
    assert not isinstance(first, Exception) and not isinstance(third, Exception) and not isinstance(fourth, Exception)
    assert (first.status, first.registration_number) == ("new", "2026-000001")
    assert (third.status, third.registration_number) == ("repeat", "2026-000001")  # of the first, not of the broken one
    assert (fourth.status, fourth.registration_number) == ("new", "2026-000002")  # no number lost to the failure
    assert batch[2].meta["repeat_of"] == "2026-000001"
    assert batch[3].customer.customer_id == fourth.customer_id != first.customer_id
    assert await registry.queue_length() == 3
    assert (await registry.get_message(third.complaint_id or "")).meta["repeat_of"] == "2026-000001"  # type: ignore[union-attr]
