"""The SQLite registry's batch of submits: its statements on the event loop's thread when the
file's write lock is free and its commit in a thread of its own, or all of it in the executor's
thread (without holding up the loop) while another process writes; registered exactly once
either way."""
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

    def recorded(db: sqlite3.Connection, plan, now, counters):  # type: ignore[no-untyped-def]
        threads.append(threading.get_ident())
        return submit(db, plan, now, counters)

    monkeypatch.setattr(registry, "_submit_tx", recorded)
    return threads


def hold_up_commits(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every commit (the flush to disk) waits, as on a slow disk, until the event is set."""
    import gateway.sqlite_wal as sqlite_wal

    flushing = threading.Event()
    commit = sqlite_wal._commit_and_release

    def slow_commit(db: sqlite3.Connection, lock: threading.Lock) -> None:
        flushing.wait(10)
        commit(db, lock)

    monkeypatch.setattr(sqlite_wal, "_commit_and_release", slow_commit)
    return flushing


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
        assert default.db.execute("PRAGMA cache_size").fetchone()[0] == -256 * 1024
    finally:
        await default.close()


async def test_a_complaint_that_fails_inside_the_batch_transaction_is_undone_alone(registry: SqliteRegistry) -> None:
    """The batch's transaction is rolled back and the batch runs again, a savepoint per submit."""
    statements = trace(registry)
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
    assert statements.count("SAVEPOINT submit") == 4 and statements.count("ROLLBACK") == 1


def trace(registry: SqliteRegistry) -> list[str]:
    """The statements the registry's connection runs from now on."""
    statements: list[str] = []
    registry.db.set_trace_callback(statements.append)
    return statements


async def test_a_batch_that_does_not_fail_runs_without_a_savepoint(registry: SqliteRegistry) -> None:
    """A savepoint makes SQLite copy every page changed after it; a batch that needs none has none."""
    statements = trace(registry)
    receipts = await registry.submit_many([complaint(ids=[("phone", f"+7916000000{i}")]) for i in range(3)])
    assert [r.registration_number for r in receipts] == ["2026-000001", "2026-000002", "2026-000003"]  # type: ignore[union-attr]
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements[-1] == "COMMIT"
    assert not [s for s in statements if "SAVEPOINT" in s.upper() or "ROLLBACK" in s.upper()]


async def test_a_failing_batch_run_in_the_thread_is_undone_alone_too(registry: SqliteRegistry, tmp_path: Path) -> None:
    """While another process writes the batch runs in the executor's thread; a submit that
    fails there is undone alone as on the loop."""
    registry.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.channel_message_id = 'broken'"
                        " BEGIN SELECT RAISE(ABORT, 'refused on purpose'); END")
    other = connect_wal(tmp_path / "registry.sqlite3", "NORMAL")
    other.execute("BEGIN IMMEDIATE")
    submitting = asyncio.create_task(registry.submit_many([
        complaint(ids=[("phone", "+79160000001")], message_id="first"),
        complaint(ids=[("phone", "+79160000002")], message_id="broken"),
        complaint(ids=[("phone", "+79160000003")], message_id="third")]))
    await asyncio.sleep(0.2)  # past write_lock_poll_ms: the batch waits in the thread
    assert not submitting.done()
    other.execute("COMMIT")
    other.close()
    first, broken, third = await asyncio.wait_for(submitting, 10)
    assert isinstance(broken, RegistryError) and "refused on purpose" in str(broken)
    assert [first.registration_number, third.registration_number] == ["2026-000001", "2026-000002"]  # type: ignore[union-attr]
    assert await registry.queue_length() == 2


async def test_a_batch_is_committed_in_a_thread_of_its_own_while_the_loop_goes_on(registry: SqliteRegistry,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The statements run on the loop's thread, the commit (the flush to disk) in the
    committer's thread; the connection stays taken until the commit is done, so a batch
    handed over meanwhile comes after it."""
    import gateway.sqlite_wal as sqlite_wal

    flushing, committed_in = threading.Event(), []
    commit = sqlite_wal._commit_and_release

    def slow_commit(db: sqlite3.Connection, lock: threading.Lock) -> None:
        committed_in.append(threading.get_ident())
        flushing.wait(10)  # a slow disk
        commit(db, lock)

    monkeypatch.setattr(sqlite_wal, "_commit_and_release", slow_commit)
    first = asyncio.create_task(registry.submit_many([complaint(ids=[("phone", "+79160000001")])]))
    for _ in range(20):  # the loop keeps running while the disk flushes
        await asyncio.sleep(0.01)
    assert not first.done() and registry._db_lock.locked()
    assert committed_in and committed_in[0] != threading.get_ident()
    second = asyncio.create_task(registry.submit_many([complaint(ids=[("phone", "+79160000002")])]))
    await asyncio.sleep(0.05)
    assert not second.done()  # it waits for the connection, in the executor's thread
    flushing.set()
    receipts = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert [r[0].registration_number for r in receipts] == ["2026-000001", "2026-000002"]  # type: ignore[union-attr]
    assert not registry._db_lock.locked() and not registry.db.in_transaction
    assert await registry.queue_length() == 2


async def test_a_commit_that_fails_registers_nothing_and_frees_the_connection(registry: SqliteRegistry) -> None:
    """A deferred foreign key makes COMMIT itself fail (as an I/O error would): the batch is
    rolled back, the caller told, and the next batch registered from the same number."""
    db = registry.db
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    db.execute("CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    db.execute("CREATE TRIGGER orphan AFTER INSERT ON messages BEGIN INSERT INTO child VALUES (42); END")
    with pytest.raises(RegistryError, match="FOREIGN KEY"):
        await registry.submit_many([complaint(ids=[("phone", "+79160000001")]), complaint(ids=[("phone", "+79160000002")])])
    assert not registry._db_lock.locked() and not db.in_transaction
    assert await registry.queue_length() == 0
    db.execute("DROP TRIGGER orphan")
    receipts = await registry.submit_many([complaint(ids=[("phone", "+79160000001")])])
    assert receipts[0].registration_number == "2026-000001"  # type: ignore[union-attr]


def test_a_failed_commit_is_rolled_back_on_any_thread(tmp_path: Path) -> None:
    db = connect_wal(tmp_path / "f.sqlite3", "NORMAL", "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                     "CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);")
    db.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(sqlite3.IntegrityError):
        write_transaction(db, lambda d: d.execute("INSERT INTO child VALUES (7)"))
    assert not db.in_transaction and db.execute("SELECT count(*) FROM child").fetchone()[0] == 0
    db.close()


async def submitted_while_another_process_writes_briefly(registry: SqliteRegistry, path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One complaint submitted while another connection holds the file's write lock for 20
    ms; the threads its statements ran on."""
    threads = record_threads(registry, monkeypatch)
    other = connect_wal(path, "NORMAL")
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.02, other.execute, "COMMIT")
    receipts = await registry.submit_many([complaint(ids=[("phone", "+79160000001")])])
    assert receipts[0].registration_number == "2026-000001"  # type: ignore[union-attr]
    other.close()
    return threads


async def test_a_batch_tries_again_on_the_loop_while_another_process_writes_briefly(
        registry: SqliteRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker's write of a few milliseconds is waited out on the loop (tried again
    every millisecond, ``write_lock_poll_ms``), not in the executor's thread."""
    threads = await submitted_while_another_process_writes_briefly(registry, tmp_path / "registry.sqlite3", monkeypatch)
    assert threads == [threading.get_ident()]


async def test_with_no_polling_a_busy_write_lock_is_waited_for_in_the_thread(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import from_dict
    from gateway.registry import build_registry

    config = from_dict({"registry": {"backend": "sqlite", "sqlite": {"path": str(tmp_path / "r.sqlite3"),
                                                                     "write_lock_poll_ms": 0}}})
    reg = build_registry(config.registry)
    assert isinstance(reg, SqliteRegistry) and reg.write_lock_poll_ms == 0
    await reg.open()
    try:
        threads = await submitted_while_another_process_writes_briefly(reg, tmp_path / "r.sqlite3", monkeypatch)
        assert threads and threading.get_ident() not in threads
    finally:
        await reg.close()


async def test_taking_a_lock_does_not_wait_for_a_batch_being_flushed(registry: SqliteRegistry,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The locks have a connection and a thread of their own: the e-mail door takes one for
    every mail, and a slow disk flushing the registry must not hold it up."""
    flushing = hold_up_commits(monkeypatch)
    submitting = asyncio.create_task(registry.submit_many([complaint(ids=[("phone", "+79160000001")])]))
    await asyncio.sleep(0.05)
    assert registry._db_lock.locked() and not submitting.done()
    try:
        assert await asyncio.wait_for(registry.acquire_lock("mail-received:<a@b>", "door-1", 60), 2) is True
        assert await asyncio.wait_for(registry.acquire_lock("mail-received:<a@b>", "door-2", 60), 2) is False
        await asyncio.wait_for(registry.release_lock("mail-received:<a@b>", "door-1"), 2)
        assert await asyncio.wait_for(registry.acquire_lock("mail-received:<a@b>", "door-2", 60), 2) is True
        assert not submitting.done()
    finally:
        flushing.set()
    receipt = (await submitting)[0]
    assert receipt.registration_number == "2026-000001"  # type: ignore[union-attr]


async def test_a_lock_is_taken_on_the_loop_thread_while_the_locks_file_is_free(registry: SqliteRegistry,
                                                                              tmp_path: Path) -> None:
    """A lock's transaction waits for no disk (the locks' file is never flushed): on the
    loop's own thread it costs a fraction of a hand-over to the locks' thread. While another
    process writes that file, the lock is taken in the thread, and the loop goes on."""
    assert await registry.acquire_lock("mail-received:<a@b>", "door-1", 60) is True  # opens the file, in the thread
    assert await registry._locks_transaction(lambda db: threading.get_ident()) == threading.get_ident()
    other = connect_wal(f"{tmp_path / 'registry.sqlite3'}-locks", "OFF")
    other.execute("BEGIN IMMEDIATE")  # another gateway process taking a lock
    taking = asyncio.create_task(registry.acquire_lock("mail-received:<c@d>", "door-1", 60))
    for _ in range(20):  # the loop keeps running while the lock waits in the thread
        await asyncio.sleep(0.01)
    assert not taking.done()
    other.execute("ROLLBACK")
    other.close()
    assert await asyncio.wait_for(taking, 5) is True
    assert await registry.acquire_lock("mail-received:<c@d>", "door-2", 60) is False
    assert await registry._locks_transaction(lambda db: threading.get_ident()) == threading.get_ident()


async def test_reads_do_not_wait_for_a_batch_being_flushed(registry: SqliteRegistry,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The inbox's and the command line's reads have a connection and a thread of their own:
    while a batch is flushed to a slow disk they answer at once, with what was committed."""
    [first] = await registry.submit_many([complaint(ids=[("phone", "+79160000001")])])
    flushing = hold_up_commits(monkeypatch)
    submitting = asyncio.create_task(registry.submit_many([complaint(ids=[("phone", "+79160000002")])]))
    await asyncio.sleep(0.05)
    assert registry._db_lock.locked() and not submitting.done()
    try:
        listed = await asyncio.wait_for(registry.list_messages(), 2)
        assert [m.registration_number for m in listed] == [first.registration_number]  # type: ignore[union-attr]
        registration = await asyncio.wait_for(registry.get_registration(first.registration_number), 2)  # type: ignore[union-attr]
        assert registration is not None and len(registration["messages"]) == 1
        assert await asyncio.wait_for(registry.queue_length(), 2) == 1
        assert not submitting.done()
    finally:
        flushing.set()
    [second] = await submitting
    assert second.registration_number == "2026-000002"  # type: ignore[union-attr]
    assert [m.registration_number for m in await registry.list_messages()] == ["2026-000002", "2026-000001"]
    assert await registry.queue_length() == 2


async def test_the_reading_connection_cannot_write(registry: SqliteRegistry) -> None:
    await registry.submit_many([complaint(ids=[("phone", "+79160000001")])])
    with pytest.raises(RegistryError, match="readonly"):
        await registry._read(lambda db: db.execute("DELETE FROM events"))
    assert await registry.queue_length() == 1
