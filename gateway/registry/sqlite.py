"""The embedded registry backend: one SQLite file, WAL mode, one writer at a time.

Every write is one ``BEGIN IMMEDIATE`` transaction, so several gateway processes sharing
the file serialise their submits and never create two customers or two registrations.
Calls run on one dedicated thread per process so the event loop never blocks on disk; a
batch of submits runs its statements on the event loop and flushes in a thread, or, with
``registry.sqlite.writer_process``, runs whole in a writer process (``sqlite_writer``).
"""
from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.ids import new_id
from gateway.inbound import Receipt
from gateway.registry.base import (
    ACTIONS,
    PURGE_CHUNK,
    Event,
    Registry,
    RegistryError,
    RegistrySettings,
    SubmitPlan,
    anonymise,
    anonymise_action,
    blobs_named,
    due,
    epoch,
    identity_kinds,
    iso,
    stored_json,
    utcnow,
)
from gateway.sqlite_wal import WriteLockBusy, connect_wal, write_transaction, write_transaction_flushed_aside, write_transaction_now
from normalizer.schema import Complaint

if TYPE_CHECKING:
    from gateway.registry.sqlite_writer import SubmitWriter

T = TypeVar("T")

#: The registry connections' page cache (``registry.sqlite.cache_mb``): what a returning
#: customer's complaint reads (identities, customers, recent complaints) stays in memory for
#: a million customers with their complaints (64 MB: such a complaint cost 1.13-1.23 times the
#: batch time of a thousand customers; 256 MB: 1.02).
DEFAULT_CACHE_MB = 256
#: How long a batch of submits tries again on the event loop, every millisecond, while another
#: process writes, before it waits in the executor's thread (``registry.sqlite.write_lock_poll_ms``).
DEFAULT_WRITE_LOCK_POLL_MS = 50
#: With a writer process, the registry's connections copy the WAL into the file once it holds
#: this many pages (``registry.sqlite.writer_checkpoint_pages``; SQLite's own is 1 000).
DEFAULT_WRITER_CHECKPOINT_PAGES = 10_000
#: Values per ``IN (...)`` list: SQLite allows 32 766 parameters in a statement.
_IN_CHUNK = 500

#: The customers' table after its name: a ``WITHOUT ROWID`` table (see ``_customers_without_rowid``).
_CUSTOMERS = "(customer_id TEXT PRIMARY KEY, name TEXT, created_at TEXT NOT NULL, merged_into TEXT) WITHOUT ROWID"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS customers {_CUSTOMERS};
CREATE TABLE IF NOT EXISTS identities (
    key TEXT PRIMARY KEY, customer_id TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS identities_customer ON identities(customer_id);
CREATE TABLE IF NOT EXISTS merge_suggestions (
    id TEXT PRIMARY KEY, customer_a TEXT NOT NULL, customer_b TEXT NOT NULL, identity TEXT NOT NULL,
    complaint_id TEXT, state TEXT NOT NULL DEFAULT 'open', created_at TEXT NOT NULL,
    UNIQUE (customer_a, customer_b, state));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS registrations (
    number TEXT PRIMARY KEY, customer_id TEXT NOT NULL, complaint_id TEXT NOT NULL, created_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open', assigned_to TEXT, updated_at TEXT, due_epoch REAL, due_name TEXT);
DROP INDEX IF EXISTS registrations_customer;
CREATE TABLE IF NOT EXISTS messages (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, number TEXT,
    customer_id TEXT, channel TEXT NOT NULL, channel_message_id TEXT NOT NULL,
    received_epoch REAL NOT NULL, simhash INTEGER NOT NULL, digest TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_number ON messages(number);
CREATE INDEX IF NOT EXISTS messages_recent_simhash ON messages(customer_id, kind, received_epoch, simhash);
DROP INDEX IF EXISTS messages_recent;
CREATE UNIQUE INDEX IF NOT EXISTS messages_delivery ON messages(channel, channel_message_id);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, number TEXT, customer_id TEXT,
    complaint_id TEXT, payload TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consumer_groups (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    group_name TEXT NOT NULL, seq INTEGER NOT NULL, consumer TEXT NOT NULL, delivered_at REAL NOT NULL,
    deliveries INTEGER NOT NULL, PRIMARY KEY (group_name, seq));
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, reason TEXT NOT NULL, record TEXT NOT NULL,
    created_at TEXT NOT NULL, resolved_at TEXT, receipt TEXT);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, operator TEXT NOT NULL, action TEXT NOT NULL,
    registration_number TEXT, customer_id TEXT, details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_registration ON audit(registration_number);
CREATE TABLE IF NOT EXISTS merges (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, target TEXT NOT NULL, operator TEXT NOT NULL, suggestion_id TEXT,
    created_at TEXT NOT NULL, undone_at TEXT, undone_by TEXT);
CREATE INDEX IF NOT EXISTS customers_merged ON customers(merged_into);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state_entries (name TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (name, key)) WITHOUT ROWID;
"""

#: The locks' file: expiring locks, and the attempts and lockouts of ``count_attempt``.
_LOCKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (name TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_by_name ON attempts(name);
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts(at);
CREATE TABLE IF NOT EXISTS lockouts (name TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, tokens REAL NOT NULL, at REAL NOT NULL, full_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS buckets_full ON buckets(full_at);
"""


def _customers_without_rowid(db: sqlite3.Connection) -> None:
    """A file written before customers were a ``WITHOUT ROWID`` table gets its table rebuilt
    (in the caller's transaction: another process opening the file meanwhile waits, then
    finds it done). A returning customer's row is then found in its key's B-tree alone, one
    page fewer to read: in a file of a million customers that page is rarely in the cache."""
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='customers'").fetchone()[0]
    if "WITHOUT ROWID" in sql.upper():
        return
    db.execute(f"CREATE TABLE customers_rebuilt {_CUSTOMERS}")
    db.execute("INSERT INTO customers_rebuilt SELECT customer_id, name, created_at, merged_into FROM customers")
    db.execute("DROP TABLE customers")  # and its index of merges
    db.execute("ALTER TABLE customers_rebuilt RENAME TO customers")
    db.execute("CREATE INDEX IF NOT EXISTS customers_merged ON customers(merged_into)")


def _registrations_due(db: sqlite3.Connection) -> None:
    """The index of deadlines: each registration not closed holds its current deadline
    (``due_epoch``, ``due_name``; NULL once closed or without deadlines), and the partial
    index ``registrations_due`` holds those rows alone. A file written before gets the two
    columns and their values, worked out from the deadlines of each open registration's first
    message, once (in the caller's transaction, as ``_customers_without_rowid``)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(registrations)")}
    if "due_epoch" not in columns:
        db.execute("ALTER TABLE registrations ADD COLUMN due_epoch REAL")
        db.execute("ALTER TABLE registrations ADD COLUMN due_name TEXT")
        rows = db.execute("SELECT r.number, r.state, json_extract(m.body, '$.deadlines') FROM registrations r"
                          " JOIN messages m ON m.id = r.complaint_id WHERE r.state != 'closed'")
        while chunk := rows.fetchmany(PURGE_CHUNK):
            updates = [(*current, number) for number, state, deadlines in chunk
                       if (current := due(stored_json(deadlines) if deadlines else {}, state))]
            db.executemany("UPDATE registrations SET due_epoch=?, due_name=? WHERE number=?", updates)
    db.execute("CREATE INDEX IF NOT EXISTS registrations_due ON registrations(due_name, due_epoch)"
               " WHERE due_epoch IS NOT NULL")


def _few_in_state(db: sqlite3.Connection, state: str, limit: int) -> bool:
    """Whether the registrations claimed or closed (``state``) are few enough for a search to
    find their messages from them (the partial index ``registrations_worked``, then the index
    of numbers) rather than by going down the messages newest first. Going down looks at
    about ``limit`` times all the registrations over those in the status before a page is
    full; from the registrations, one look-up each. The two cost the same at about
    sqrt(limit × registrations), so the status's registrations are counted up to that."""
    registrations = db.execute("SELECT MAX(rowid) FROM registrations").fetchone()[0] or 0
    bound = math.isqrt(limit * registrations) + 1
    counted = db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM registrations WHERE state = ? AND state != 'open' LIMIT ?)",
                         (state, bound)).fetchone()[0]
    return bool(counted < bound)


def _migrate(db: sqlite3.Connection) -> None:
    """What a file written by an earlier version needs, in one transaction. The partial index
    ``registrations_worked`` holds the registrations claimed or closed (a new one is open: the
    intake never writes to it), for the status filter (``_search_candidates``)."""
    _customers_without_rowid(db)
    _registrations_due(db)
    db.execute("CREATE INDEX IF NOT EXISTS registrations_worked ON registrations(state) WHERE state != 'open'")


async def _in_thread(executor: Executor, fn: Callable[..., T], *args: Any) -> T:
    try:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    except sqlite3.Error as exc:
        raise RegistryError(f"sqlite: {exc}") from exc


_EVENT_ROWS = "SELECT seq, kind, number, customer_id, complaint_id, payload FROM events"


def _events_by_seq(db: sqlite3.Connection, seqs: list[int]) -> dict[int, tuple[Any, ...]]:
    """The rows of the events ``seqs`` that are still stored (``_EVENT_ROWS``), by seq; read
    ``_IN_CHUNK`` at a time."""
    found: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(seqs), _IN_CHUNK):
        chunk = seqs[start:start + _IN_CHUNK]
        found.update((row[0], row) for row in db.execute(_in_list(_EVENT_ROWS + " WHERE seq IN ({})", chunk), chunk))
    return found


#: The parts of a customer as merged (``part``): itself first, then every customer merged into
#: it, and into those, breadth first.
_MERGED_PARTS = ("WITH RECURSIVE part(id) AS"
                 " (SELECT ? UNION SELECT c.customer_id FROM customers c JOIN part ON c.merged_into = part.id) ")
#: Whether the customer as merged has a message received at or after the cutoff.
_NEWER_IN_MERGED_CUSTOMER = (_MERGED_PARTS + "SELECT 1 FROM messages WHERE customer_id IN (SELECT id FROM part)"
                             " AND received_epoch >= ? LIMIT 1")


def _in_list(sql: str, keys: Sequence[Any]) -> str:
    """``sql`` with its ``IN ({})`` holding a parameter per key (at most 32 766 keys)."""
    return sql.format(",".join("?" * len(keys)))


class _OneByOne(Exception):
    """A batch's transaction failed and was rolled back: it is to run again, a savepoint per submit."""


class _Counters:
    """The registration counters of one write transaction: each read once, counted in memory
    and written back once (``write``) before the commit. The transaction holds the file's
    write lock, so no other process counts meanwhile."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.values: dict[str, int] = {}

    def next(self, name: str) -> int:
        value = self.values.get(name)
        if value is None:
            row = self.db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
            value = row[0] if row else 0
        self.values[name] = value + 1
        return value + 1

    def write(self) -> None:
        for name, value in self.values.items():
            self.db.execute("INSERT INTO counters(name, value) VALUES (?, ?)"
                            " ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))

    @classmethod
    def around(cls, db: sqlite3.Connection, work: Callable[[_Counters], T]) -> T:
        """``work(counters)``, then the counters it drew written back."""
        counters = cls(db)
        result = work(counters)
        counters.write()
        return result


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


class SqliteRegistry(Registry):
    backend = "sqlite"

    def __init__(self, settings: RegistrySettings, path: str | Path, synchronous: str = "FULL",
                 cache_mb: int = DEFAULT_CACHE_MB, write_lock_poll_ms: int = DEFAULT_WRITE_LOCK_POLL_MS,
                 writer_process: bool = False, checkpoint_pages: int | None = None) -> None:
        super().__init__(settings)
        self.path = Path(path)
        self.synchronous = synchronous
        self.cache_mb = cache_mb
        self.write_lock_poll_ms = write_lock_poll_ms
        #: The registry's connection copies the WAL into the file once the WAL holds this many
        #: pages (SQLite's ``wal_autocheckpoint``; None: SQLite's own, 1 000). The copy runs in
        #: the commit that passes it, so that commit's batch waits for it: with a writer
        #: process, whose batches the gateway waits for, fewer and larger copies register
        #: more (``registry.sqlite.writer_checkpoint_pages``, see docs/performance.md).
        self.checkpoint_pages = checkpoint_pages
        #: Submits run in a writer process of their own (``registry.sqlite.writer_process``),
        #: started by the first submit (the command line's reads start none).
        self.writer: SubmitWriter | None = None
        if writer_process:
            from gateway.registry.sqlite_writer import SubmitWriter

            self.checkpoint_pages = checkpoint_pages or DEFAULT_WRITER_CHECKPOINT_PAGES
            self.writer = SubmitWriter(self.path, synchronous, cache_mb, write_lock_poll_ms, self.checkpoint_pages)
        self._db: sqlite3.Connection | None = None
        self._locks_db: sqlite3.Connection | None = None
        self._lock_takes = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-registry")
        #: Commits a batch of submits run on the event loop (``_submit_many``): a thread of its
        #: own, because the executor's thread may be waiting for ``_db_lock``.
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        #: Held by whoever uses the connection: the executor's thread or, for a batch of
        #: submits, the event loop's own thread (``_submit_many``).
        self._db_lock = threading.Lock()
        #: The locks' file has a connection of its own, used on the event loop's thread while the
        #: file is free and in a thread of its own otherwise: a door taking a lock (the e-mail
        #: door, for every mail) does not wait for a batch of submits and its flush.
        self._locks_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-locks")
        #: Held by whoever uses the locks' connection: its thread or the event loop's own
        self._locks_db_lock = threading.Lock()
        #: Reads (the inbox, the command line) have a connection and a thread of their own too:
        #: in WAL mode they read the last committed state while a batch of submits is being
        #: written and flushed, instead of waiting for the registry's connection.
        self._reader_db: sqlite3.Connection | None = None
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-read")

    # -- plumbing ---------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await _in_thread(self._executor, self._locked, fn, *args)

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._db_lock:
            return fn(*args)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the reading connection, in one read transaction (one snapshot of the file)."""
        return await _in_thread(self._read_executor, self._read_snapshot, fn)

    def _read_snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise RegistryError("registry is not open")
        if self._reader_db is None:  # the registry's connection made the schema
            self._reader_db = connect_wal(self.path, self.synchronous, cache_mb=self.cache_mb)
            self._reader_db.execute("PRAGMA query_only=ON")
        db = self._reader_db
        db.execute("BEGIN")
        try:
            return fn(db)
        finally:
            db.execute("COMMIT")

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RegistryError("registry is not open")
        return self._db

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect_wal(self.path, self.synchronous, SCHEMA, cache_mb=self.cache_mb)
        if self.checkpoint_pages is not None:
            self._db.execute(f"PRAGMA wal_autocheckpoint={int(self.checkpoint_pages)}")
        write_transaction(self._db, _migrate)

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return write_transaction(self.db, fn)

    async def open(self) -> None:
        await self._run(self._open_sync)

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        if self._locks_db is not None:
            await _in_thread(self._locks_executor, self._locks_db.close)
            self._locks_db = None
        if self._reader_db is not None:
            await _in_thread(self._read_executor, self._reader_db.close)
            self._reader_db = None
        self._executor.shutdown(wait=True)
        self._committer.shutdown(wait=True)
        self._locks_executor.shutdown(wait=True)
        self._read_executor.shutdown(wait=True)

    async def healthy(self) -> bool:
        try:
            return await self._run(lambda: self.db.execute("SELECT 1").fetchone() == (1,))
        except RegistryError:
            return False

    # -- submit -----------------------------------------------------------------------
    async def _submit(self, plan: SubmitPlan) -> Receipt:
        if self.writer is not None:
            result = (await self.writer.submit([plan]))[0]
            if isinstance(result, Exception):
                raise result
            return result
        return await self._run(self._tx, lambda db: _Counters.around(
            db, lambda counters: self._submit_tx(db, plan, iso(utcnow()), counters)))

    async def _submit_many(self, plans: list[SubmitPlan]) -> list[Receipt | Exception]:
        if self.writer is not None:
            return await self.writer.submit(plans)
        return await self._submit_many_here(plans)

    async def _submit_many_here(self, plans: list[SubmitPlan], *, inline: bool = False) -> list[Receipt | Exception]:
        """One transaction, one commit (one flush to disk) for the batch. The submits run
        one after the other without a savepoint; if one of them fails, the transaction is
        rolled back and the batch runs again in a new one with a savepoint for each submit,
        so that the one that fails is undone alone. A savepoint makes SQLite copy every page
        the statements after it change (into a temporary file, made and deleted per batch,
        once the copies pass 64 KB), so only a batch that needs one has one. Either run is
        written by ``_write_now_or_in_thread``, or with ``inline`` by ``_write_inline``."""
        one_by_one = False

        def batch(db: sqlite3.Connection) -> list[Receipt | Exception]:
            now = iso(utcnow())  # the batch is registered in one transaction
            if not one_by_one:
                before = [_submit_fields(plan.complaint) for plan in plans]
                try:
                    return _Counters.around(db, lambda counters: [self._submit_tx(db, plan, now, counters) for plan in plans])
                except sqlite3.Error as exc:
                    for plan, fields in zip(plans, before):
                        _restore_submit_fields(plan.complaint, fields)
                    raise _OneByOne from exc  # the transaction is rolled back
            return _Counters.around(db, lambda counters: [self._submit_savepoint(db, plan, now, counters) for plan in plans])

        while True:
            try:
                return self._write_inline(batch) if inline else await self._write_now_or_in_thread(batch)
            except _OneByOne:
                one_by_one = True

    def _write_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in a write transaction on the calling thread, its commit (the flush) too: for
        the writer process (``sqlite_writer``), whose loop has nothing else to do meanwhile, so
        that handing the commit to a thread would only add the thread's wake-ups."""
        try:
            return self._locked(self._tx, fn)
        except sqlite3.Error as exc:
            raise RegistryError(f"sqlite: {exc}") from exc

    async def _write_now_or_in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in a write transaction: its statements on the event loop's own thread when
        the connection and the file's write lock are free at that moment, and its commit (the
        flush to disk) in the committer's thread while the loop goes on
        (``write_transaction_flushed_aside``). While another process writes, it is tried
        again every millisecond on the loop for ``write_lock_poll_ms`` (a transaction in a
        thread competes with the busy loop for the interpreter lock); after that it runs in
        the executor's thread, which waits for the lock."""
        waited_until = time.monotonic() + self.write_lock_poll_ms / 1000
        while True:
            try:
                return await write_transaction_flushed_aside(self._db_lock, lambda: self.db, fn, self._committer)
            except WriteLockBusy:  # the connection is in use or another process is writing
                if time.monotonic() >= waited_until:
                    break
            except sqlite3.Error as exc:
                raise RegistryError(f"sqlite: {exc}") from exc
            await asyncio.sleep(0.001)  # the loop goes on meanwhile
        return await self._run(self._tx, fn)

    def _submit_savepoint(self, db: sqlite3.Connection, plan: SubmitPlan, now: str,
                          counters: _Counters) -> Receipt | Exception:
        db.execute("SAVEPOINT submit")
        taken = dict(counters.values)
        try:
            receipt = self._submit_tx(db, plan, now, counters)
        except sqlite3.Error as exc:
            counters.values = taken  # the number it drew is not used
            db.execute("ROLLBACK TO submit")
            db.execute("RELEASE submit")
            return RegistryError(f"sqlite: {exc}")
        db.execute("RELEASE submit")
        return receipt

    def _submit_tx(self, db: sqlite3.Connection, plan: SubmitPlan, now: str, counters: _Counters) -> Receipt:
        """``now``: the time of registration (one for a batch); ``counters``: the
        transaction's registration counters, written by the caller."""
        c = plan.complaint
        row = db.execute("SELECT number, customer_id, id FROM messages WHERE channel=? AND channel_message_id=?",
                         (c.channel, c.channel_message_id)).fetchone()
        if row:  # delivered before: the receipt of its registration
            return Receipt("duplicate", row[0], row[1], row[2])

        customer_id, new_customer = self._resolve_customer(db, plan, now)
        c.customer.customer_id = customer_id

        kind, number = "new", None
        if c.auto_submitted:
            kind = "automatic"
        elif c.in_reply_to:
            owner = db.execute("SELECT customer_id FROM registrations WHERE number=?", (c.in_reply_to,)).fetchone()
            if owner and self._current_customer(db, owner[0]) == customer_id:
                kind, number = "follow_up", c.in_reply_to
            else:
                c.meta["in_reply_to_rejected"] = c.in_reply_to
                c.in_reply_to = None
        if kind == "new" and not new_customer:  # a customer created just now has no earlier complaint
            number = self._find_repeat(db, plan, customer_id)
            if number is not None:
                kind = "repeat"
                c.meta["repeat_of"] = number
        if kind == "new":
            number = plan.printf % counters.next(plan.counter)
            db.execute(
                "INSERT INTO registrations(number, customer_id, complaint_id, created_at, due_epoch, due_name)"
                " VALUES (?,?,?,?,?,?)",
                (number, customer_id, c.id, now, plan.due_epoch, plan.due_name),
            )
        c.registration_number = number
        body = c.to_json()
        db.execute(
            "INSERT INTO messages(id, kind, number, customer_id, channel, channel_message_id, received_epoch,"
            " simhash, digest, body) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (c.id, kind, number, customer_id, c.channel, c.channel_message_id, plan.received_epoch,
             _signed(plan.simhash), plan.digest, body),
        )
        if kind != "automatic":
            db.execute(
                "INSERT INTO events(kind, number, customer_id, complaint_id, payload, created_at) VALUES (?,?,?,?,?,?)",
                (kind, number, customer_id, c.id, '{"complaint":' + body + "}", now),
            )
        return Receipt(kind, number, customer_id, c.id)  # type: ignore[arg-type]

    def _resolve_customer(self, db: sqlite3.Connection, plan: SubmitPlan, now: str) -> tuple[str, bool]:
        """The customer's id, and whether the customer was created just now."""
        owners: list[str] = []
        unknown: list[str] = []
        for key in plan.identity_keys:
            row = db.execute("SELECT customer_id FROM identities WHERE key=?", (key,)).fetchone()
            if row is None:
                unknown.append(key)
            else:
                owner = self._current_customer(db, row[0])
                if owner not in owners:
                    owners.append(owner)
        name = plan.complaint.customer.name
        if owners:
            customer_id = owners[0]
            if name is not None:  # a name only fills in one not known yet
                db.execute("UPDATE customers SET name=? WHERE customer_id=? AND name IS NULL", (name, customer_id))
        else:
            customer_id = new_id()
            db.execute("INSERT INTO customers(customer_id, name, created_at) VALUES (?,?,?)", (customer_id, name, now))
        for other in owners[1:]:
            a, b = sorted((customer_id, other))
            db.execute(
                "INSERT OR IGNORE INTO merge_suggestions(id, customer_a, customer_b, identity, complaint_id, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (new_id(), a, b, ",".join(plan.identity_keys), plan.complaint.id, now),
            )
        if len(owners) > 1:
            plan.complaint.meta["merge_suggested"] = owners[1:]
        for key in unknown:
            db.execute("INSERT INTO identities(key, customer_id, created_at) VALUES (?,?,?)", (key, customer_id, now))
        return customer_id, not owners

    @staticmethod
    def _current_customer(db: sqlite3.Connection, customer_id: str) -> str:
        seen = {customer_id}
        while True:
            row = db.execute("SELECT merged_into FROM customers WHERE customer_id=?", (customer_id,)).fetchone()
            if not row or not row[0] or row[0] in seen:
                return customer_id
            customer_id = row[0]
            seen.add(customer_id)

    def _find_repeat(self, db: sqlite3.Connection, plan: SubmitPlan, customer_id: str) -> str | None:
        """The number of the customer's recent complaint whose SimHash is within
        ``max_distance`` of this one's, if any. The candidates are read from the index
        ``messages_recent_simhash`` alone (no message row is read but the one that matches:
        each would be a look-up in the table of whole messages). The same words give the
        same SimHash, so an exact copy is always within the distance: its digest need not be
        compared (nor does the Redis script compare it)."""
        rows = db.execute(
            "SELECT simhash, rowid FROM messages WHERE customer_id=? AND kind='new' AND received_epoch>=?"
            " ORDER BY received_epoch DESC LIMIT ?",
            (customer_id, plan.received_epoch - plan.window_seconds, plan.candidates),
        ).fetchall()
        for simhash, rowid in rows:
            if (_unsigned(simhash) ^ plan.simhash).bit_count() <= plan.max_distance:
                return str(db.execute("SELECT number FROM messages WHERE rowid=?", (rowid,)).fetchone()[0])
        return None

    # -- reading ----------------------------------------------------------------------
    async def get_message(self, complaint_id: str) -> Complaint | None:
        row = await self._read(lambda db: db.execute("SELECT body FROM messages WHERE id=?", (complaint_id,)).fetchone())
        return Complaint.from_json(row[0]) if row else None

    async def get_registration(self, registration_number: str) -> dict[str, Any] | None:
        def read(db: sqlite3.Connection) -> dict[str, Any] | None:
            reg = db.execute(
                "SELECT customer_id, complaint_id, created_at FROM registrations WHERE number=?", (registration_number,)
            ).fetchone()
            if reg is None:
                return None
            rows = db.execute(
                "SELECT kind, body FROM messages WHERE number=? ORDER BY rowid", (registration_number,)
            ).fetchall()
            return {
                "registration_number": registration_number,
                "customer_id": reg[0],
                "created_at": reg[2],
                "messages": [{"kind": k, "complaint": json.loads(b)} for k, b in rows],
            }

        return await self._read(read)

    async def list_messages(self, *, limit: int = 50, before: str | None = None) -> list[Complaint]:
        return await self._search_candidates(limit=limit, before=before, channel=None, state=None, since=None, until=None)

    async def _search_candidates(self, *, limit: int, before: str | None, channel: str | None, state: str | None,
                                 since: str | None, until: str | None, overdue_at: float | None = None) -> list[Complaint]:
        """The messages' own columns answer the channel, the registration's state and the
        time of receipt, so a search with those filters looks only at messages that pass
        them. For the overdue filter, a registration's first message (kind ``new``: its
        deadlines are the registration's) is overdue exactly when the index of deadlines says
        so (``due_epoch``); a later one only needs its registration not closed, and an
        automatic reply, which opens none, is never overdue. The scan goes newest first by rowid (``+channel``
        keeps SQLite from sorting a whole channel by another index); ``received_epoch`` is
        ``received_at`` as ``epoch`` reads it, so the times compare exactly as ``search``
        compares them after. A status whose registrations are few (``_few_in_state``) is read
        from those registrations instead of going down the messages."""
        where: list[str] = []
        args: list[Any] = []
        if before:
            where.append("rowid < (SELECT rowid FROM messages WHERE id=?)")
            args.append(before)
        if channel:
            where.append("+channel = ?")
            args.append(channel)
        state_at = len(where)  # where the status's clause is, to be replaced when its registrations are few
        if state:
            where.append("EXISTS (SELECT 1 FROM registrations r WHERE r.number = messages.number AND r.state = ?)")
            args.append(state)
        if overdue_at is not None:
            where.append("EXISTS (SELECT 1 FROM registrations r WHERE r.number = messages.number AND"
                         " CASE WHEN messages.kind = 'new' THEN r.due_epoch < ? ELSE r.state != 'closed' END)")
            args.append(overdue_at)
        if since:
            where.append("received_epoch >= ?")
            args.append(epoch(since))
        if until:
            where.append("received_epoch < ?")
            args.append(epoch(until))
        sql = "SELECT body FROM messages" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid DESC LIMIT ?"

        def read(db: sqlite3.Connection) -> list[Complaint]:
            query = sql
            if state in ("claimed", "closed") and _few_in_state(db, state, limit):
                # the status's messages found from its registrations by the index of numbers,
                # their rowids sorted (no body read but the page's), instead of a scan of every message
                clauses = list(where)
                clauses[state_at] = "number IN (SELECT number FROM registrations WHERE state = ? AND state != 'open')"
                query = ("SELECT body FROM messages WHERE rowid IN (SELECT rowid FROM messages WHERE "
                         + " AND ".join(clauses) + " ORDER BY rowid DESC LIMIT ?) ORDER BY rowid DESC")
            return [Complaint.from_json(r[0]) for r in db.execute(query, (*args, limit))]

        return await self._read(read)

    async def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        def read(db: sqlite3.Connection) -> dict[str, Any] | None:
            row = db.execute(
                "SELECT customer_id, name, created_at, merged_into FROM customers WHERE customer_id=?", (customer_id,)
            ).fetchone()
            if row is None:
                return None
            members = [r[0] for r in db.execute(_MERGED_PARTS + "SELECT id FROM part", (customer_id,))]
            keys = [r[0] for r in db.execute(
                _in_list("SELECT key FROM identities WHERE customer_id IN ({}) ORDER BY created_at, key", members), members)]
            numbers = [r[0] for r in db.execute(_in_list(  # a registration's first message is its customer's, kind "new"
                "SELECT r.number FROM messages m JOIN registrations r ON r.number=m.number"
                " WHERE m.customer_id IN ({}) AND m.kind='new' ORDER BY r.created_at, r.number", members), members)]
            return {
                "customer_id": row[0],
                "name": row[1],
                "created_at": row[2],
                "merged_into": row[3],
                "merged_from": members[1:],
                "identities": [dict(zip(("kind", "value"), k.split(":", 1))) for k in keys],
                "registrations": numbers,
            }

        return await self._read(read)

    async def merge_suggestions(self) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT id, customer_a, customer_b, identity, complaint_id, created_at FROM merge_suggestions"
                " WHERE state='open' ORDER BY created_at").fetchall()
            return [dict(zip(("id", "customer_a", "customer_b", "identities", "complaint_id", "created_at"), r))
                    for r in rows]

        return await self._read(read)

    # -- operators' actions -----------------------------------------------------------
    async def registration_state(self, registration_number: str) -> dict[str, Any] | None:
        return (await self._registration_states([registration_number])).get(registration_number)

    async def _registration_states(self, numbers: list[str]) -> dict[str, dict[str, Any]]:
        """Three statements for a list of numbers (``_IN_CHUNK`` at a time), in one read."""
        def read(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            states: dict[str, dict[str, Any]] = {}
            for start in range(0, len(numbers), _IN_CHUNK):
                chunk = numbers[start:start + _IN_CHUNK]
                for number, state, assigned_to, updated_at, customer_id in db.execute(_in_list(
                        "SELECT number, state, assigned_to, updated_at, customer_id FROM registrations"
                        " WHERE number IN ({})", chunk), chunk):
                    states[number] = {"state": state, "assigned_to": assigned_to, "updated_at": updated_at,
                                      "customer_id": customer_id, "kinds": {}, "acknowledgement_failed": False}
                for number, complaint_id, kind in db.execute(_in_list(
                        "SELECT number, id, kind FROM messages WHERE number IN ({})", chunk), chunk):
                    if number in states:
                        states[number]["kinds"][complaint_id] = kind
                for (number,) in db.execute(_in_list(
                        "SELECT DISTINCT registration_number FROM audit WHERE registration_number IN ({})"
                        " AND action='acknowledgement_failed'", chunk), chunk):
                    if number in states:
                        states[number]["acknowledgement_failed"] = True
            return states

        return await self._read(read)

    async def apply_action(self, registration_number: str, action: str, operator: str,
                           details: dict[str, Any] | None = None) -> dict[str, Any]:
        transition = ACTIONS.get(action)
        if transition is None:
            raise ValueError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")

        def act(db: sqlite3.Connection) -> dict[str, Any]:
            row = db.execute("SELECT customer_id, state, assigned_to, complaint_id FROM registrations WHERE number=?",
                             (registration_number,)).fetchone()
            if row is None:
                raise KeyError(registration_number)
            now = iso(utcnow())
            state, assigned = transition(row[1], row[2], operator)
            if state == row[1]:
                db.execute("UPDATE registrations SET assigned_to=?, updated_at=? WHERE number=?",
                           (assigned, now, registration_number))
            else:  # the deadline that matters changes with the state
                deadlines = db.execute("SELECT json_extract(body, '$.deadlines') FROM messages WHERE id=?",
                                       (row[3],)).fetchone()
                current = due(stored_json(deadlines[0]) if deadlines and deadlines[0] else {}, state)
                db.execute("UPDATE registrations SET state=?, assigned_to=?, updated_at=?, due_epoch=?, due_name=?"
                           " WHERE number=?", (state, assigned, now, *(current or (None, None)), registration_number))
            record = {"action": action, "operator": operator, "at": now, "registration_number": registration_number,
                      "state": state, "assigned_to": assigned, "details": details or {}}
            self._audit(db, record, customer_id=row[0])
            db.execute("INSERT INTO events(kind, number, customer_id, complaint_id, payload, created_at) VALUES (?,?,?,?,?,?)",
                       (action, registration_number, row[0], None, json.dumps({"action": record}, ensure_ascii=False), now))
            return record

        return await self._run(self._tx, act)

    @staticmethod
    def _audit(db: sqlite3.Connection, record: dict[str, Any], customer_id: str | None) -> None:
        db.execute("INSERT INTO audit(at, operator, action, registration_number, customer_id, details) VALUES (?,?,?,?,?,?)",
                   (record["at"], record["operator"], record["action"], record.get("registration_number"), customer_id,
                    json.dumps(record, ensure_ascii=False)))

    async def registrations_due(self, now: float) -> dict[str, dict[str, int]]:
        rows = await self._read(lambda db: db.execute(
            "SELECT due_name, count(*), sum(due_epoch < ?1), sum(due_epoch >= ?1 AND due_epoch < ?2) FROM registrations"
            " WHERE due_epoch IS NOT NULL GROUP BY due_name", (now, now + self.settings.due_soon_seconds)).fetchall())
        return {name: {"pending": pending, "overdue": overdue, "due_soon": soon} for name, pending, overdue, soon in rows}

    async def actions(self, registration_number: str) -> list[dict[str, Any]]:
        rows = await self._read(lambda db: db.execute(
            "SELECT details FROM audit WHERE registration_number=? ORDER BY seq", (registration_number,)).fetchall())
        return [json.loads(r[0]) for r in rows]

    async def merge_customers(self, source: str, target: str, operator: str, suggestion_id: str | None = None) -> str:
        def merge(db: sqlite3.Connection) -> str:
            if source == target:
                raise ValueError("a customer cannot be merged into itself")
            for cid in (source, target):
                row = db.execute("SELECT merged_into FROM customers WHERE customer_id=?", (cid,)).fetchone()
                if row is None:
                    raise KeyError(cid)
                if row[0]:
                    raise ValueError(f"customer {cid} is already merged into {row[0]}")
            if self._current_customer(db, target) != target:
                raise ValueError(f"customer {target} is merged into another")
            merge_id, now = new_id(), iso(utcnow())
            db.execute("UPDATE customers SET merged_into=? WHERE customer_id=?", (target, source))
            db.execute("INSERT INTO merges(id, source, target, operator, suggestion_id, created_at) VALUES (?,?,?,?,?,?)",
                       (merge_id, source, target, operator, suggestion_id, now))
            if suggestion_id:
                db.execute("UPDATE merge_suggestions SET state='accepted' WHERE id=?", (suggestion_id,))
            record = {"action": "customers_merged", "operator": operator, "at": now, "merge_id": merge_id,
                      "source": source, "target": target, "suggestion_id": suggestion_id}
            self._audit(db, record, customer_id=target)
            db.execute("INSERT INTO events(kind, number, customer_id, complaint_id, payload, created_at) VALUES (?,?,?,?,?,?)",
                       ("customers_merged", None, target, None, json.dumps({"merge": record}), now))
            return merge_id

        return await self._run(self._tx, merge)

    async def unmerge(self, merge_id: str, operator: str) -> None:
        def undo(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT source, target, undone_at FROM merges WHERE id=?", (merge_id,)).fetchone()
            if row is None:
                raise KeyError(merge_id)
            if row[2]:
                raise ValueError(f"merge {merge_id} was already undone")
            now = iso(utcnow())
            db.execute("UPDATE customers SET merged_into=NULL WHERE customer_id=?", (row[0],))
            db.execute("UPDATE merges SET undone_at=?, undone_by=? WHERE id=?", (now, operator, merge_id))
            record = {"action": "customers_unmerged", "operator": operator, "at": now, "merge_id": merge_id,
                      "source": row[0], "target": row[1]}
            self._audit(db, record, customer_id=row[1])
            db.execute("INSERT INTO events(kind, number, customer_id, complaint_id, payload, created_at) VALUES (?,?,?,?,?,?)",
                       ("customers_unmerged", None, row[1], None, json.dumps({"merge": record}), now))

        await self._run(self._tx, undo)

    async def reject_suggestion(self, suggestion_id: str, operator: str) -> None:
        def reject(db: sqlite3.Connection) -> None:
            if db.execute("UPDATE merge_suggestions SET state='rejected' WHERE id=? AND state='open'",
                          (suggestion_id,)).rowcount != 1:
                raise KeyError(suggestion_id)
            self._audit(db, {"action": "suggestion_rejected", "operator": operator, "at": iso(utcnow()),
                             "suggestion_id": suggestion_id}, customer_id=None)

        await self._run(self._tx, reject)

    async def merges(self, customer_id: str) -> list[dict[str, Any]]:
        rows = await self._read(lambda db: db.execute(
            "SELECT id, source, target, operator, suggestion_id, created_at, undone_at, undone_by FROM merges"
            " WHERE source=? OR target=? ORDER BY created_at", (customer_id, customer_id)).fetchall())
        keys = ("id", "source", "target", "operator", "suggestion_id", "created_at", "undone_at", "undone_by")
        return [dict(zip(keys, r)) for r in rows]

    async def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._read(lambda db: db.execute(
            "SELECT details FROM audit ORDER BY seq DESC LIMIT ?", (limit,)).fetchall())
        return [json.loads(r[0]) for r in rows]

    # -- queue ------------------------------------------------------------------------
    async def read_events(self, group: str, consumer: str, count: int = 10, block_ms: int = 0) -> list[Event]:
        deadline = time.monotonic() + block_ms / 1000.0
        while True:
            if await self._run(self._nothing_to_read, group):
                events: list[Event] = []
            else:
                events = await self._run(self._tx, lambda db: self._read_tx(db, group, consumer, count))
            if events or time.monotonic() >= deadline:
                return events
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _nothing_to_read(self, group: str) -> bool:
        """A cheap read-only look, so that idle consumers do not take the write lock."""
        row = self.db.execute("SELECT last_seq FROM consumer_groups WHERE name=?", (group,)).fetchone()
        if row is None:
            return False
        newer = self.db.execute("SELECT 1 FROM events WHERE seq>? LIMIT 1", (row[0],)).fetchone()
        stale = self.db.execute("SELECT 1 FROM pending WHERE group_name=? AND delivered_at<=? LIMIT 1",
                                (group, time.time() - self.settings.visibility_timeout_seconds)).fetchone()
        return newer is None and stale is None

    async def create_group(self, group: str, *, at_end: bool = False) -> None:
        await self._run(self._tx, lambda db: db.execute(
            "INSERT OR IGNORE INTO consumer_groups(name, last_seq) VALUES (?, ?)",
            (group, db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0] if at_end else 0)))

    async def delete_group(self, group: str) -> None:
        def drop(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM pending WHERE group_name=?", (group,))
            db.execute("DELETE FROM consumer_groups WHERE name=?", (group,))

        await self._run(self._tx, drop)

    def _read_tx(self, db: sqlite3.Connection, group: str, consumer: str, count: int) -> list[Event]:
        """Events whose delivery expired first (delivered again, to this consumer), then new
        ones: a statement per kind of work, not per event."""
        now = time.time()
        db.execute("INSERT OR IGNORE INTO consumer_groups(name, last_seq) VALUES (?, 0)", (group,))
        deliveries = {seq: n + 1 for seq, n in db.execute(
            "SELECT seq, deliveries FROM pending WHERE group_name=? AND delivered_at<=? ORDER BY seq LIMIT ?",
            (group, now - self.settings.visibility_timeout_seconds, count))}
        rows: list[tuple[Any, ...]] = []
        if deliveries:
            db.executemany("UPDATE pending SET consumer=?, delivered_at=?, deliveries=deliveries+1 WHERE group_name=? AND seq=?",
                           [(consumer, now, group, seq) for seq in deliveries])
            found = _events_by_seq(db, list(deliveries))
            gone = [seq for seq in deliveries if seq not in found]  # purged since: nothing to deliver again
            db.executemany("DELETE FROM pending WHERE group_name=? AND seq=?", [(group, seq) for seq in gone])
            rows = [found[seq] for seq in deliveries if seq in found]
        if len(deliveries) < count:
            last = db.execute("SELECT last_seq FROM consumer_groups WHERE name=?", (group,)).fetchone()[0]
            fresh = db.execute(_EVENT_ROWS + " WHERE seq>? ORDER BY seq LIMIT ?", (last, count - len(deliveries))).fetchall()
            if fresh:
                db.executemany("INSERT INTO pending(group_name, seq, consumer, delivered_at, deliveries) VALUES (?,?,?,?,1)",
                               [(group, row[0], consumer, now) for row in fresh])
                db.execute("UPDATE consumer_groups SET last_seq=? WHERE name=?", (fresh[-1][0], group))
            rows += fresh
        return [Event(str(seq), kind, number, customer, complaint_id, stored_json(payload), deliveries.get(seq, 1))
                for seq, kind, number, customer, complaint_id, payload in rows]

    async def ack_events(self, group: str, ids: list[str]) -> int:
        return await self._run(self._tx, lambda db: db.executemany(
            "DELETE FROM pending WHERE group_name=? AND seq=?", [(group, int(event_id)) for event_id in ids]).rowcount)

    async def queue_length(self) -> int:
        return await self._read(lambda db: int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0]))

    # -- dead letters -----------------------------------------------------------------
    async def add_dead_letter(self, record: dict[str, Any], reason: str) -> str:
        dead_letter_id = new_id()
        await self._run(self._tx, lambda db: db.execute(
            "INSERT INTO dead_letters(id, channel, reason, record, created_at) VALUES (?,?,?,?,?)",
            (dead_letter_id, record.get("channel", "?"), reason, json.dumps(record, ensure_ascii=False), iso(utcnow()))))
        return dead_letter_id

    async def list_dead_letters(self, include_resolved: bool = False) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            where = "" if include_resolved else "WHERE resolved_at IS NULL"
            rows = db.execute(
                f"SELECT id, channel, reason, record, created_at, resolved_at, receipt FROM dead_letters {where}"
                " ORDER BY created_at").fetchall()
            return [{"id": r[0], "channel": r[1], "reason": r[2], "record": json.loads(r[3]), "created_at": r[4],
                     "resolved_at": r[5], "receipt": json.loads(r[6]) if r[6] else None} for r in rows]

        return await self._read(read)

    async def resolve_dead_letter(self, dead_letter_id: str, receipt: Receipt) -> None:
        await self._run(self._tx, lambda db: db.execute(
            "UPDATE dead_letters SET resolved_at=?, receipt=? WHERE id=?",
            (iso(utcnow()), json.dumps(receipt.to_dict()), dead_letter_id)))

    # -- retention --------------------------------------------------------------------
    async def purge(self, before: str, recheck_blobs: Iterable[str] = ()) -> dict[str, Any]:
        """In chunks of ``PURGE_CHUNK``: what to change is looked for on the reading connection
        (no write lock held while tables are scanned), and each chunk is changed in a write
        transaction of its own, which checks again that its rows still need it (another purge
        may have run meanwhile). Intake waits for one chunk at most, not for the whole purge."""
        cutoff = epoch(before)
        now = iso(utcnow())
        result: dict[str, Any] = {"messages": 0, "customers": 0, "dead_letters": 0, "events": 0, "actions": 0,
                                  "merge_suggestions": 0}
        freed: set[str] = set(recheck_blobs)

        def anonymise_messages(db: sqlite3.Connection, keys: list[int]) -> None:
            """Old messages not purged yet (a purged one has no digest); their customers with
            nothing newer lose their identities and name."""
            touched = set()
            for complaint_id, body, customer_id in db.execute(_in_list(
                    "SELECT id, body, customer_id FROM messages WHERE digest != '' AND rowid IN ({})", keys), keys).fetchall():
                kept, blobs = anonymise(stored_json(body), now)
                freed.update(blobs)
                db.execute("UPDATE messages SET body=?, simhash=0, digest='' WHERE id=?",
                           (json.dumps(kept, ensure_ascii=False), complaint_id))
                result["messages"] += 1
                if customer_id:
                    touched.add(customer_id)
            for customer_id in sorted(touched):  # nothing newer for the customer as merged, all its parts together
                if db.execute(_NEWER_IN_MERGED_CUSTOMER, (self._current_customer(db, customer_id), cutoff)).fetchone() is None:
                    db.execute("DELETE FROM identities WHERE customer_id=?", (customer_id,))
                    db.execute("UPDATE customers SET name=NULL WHERE customer_id=?", (customer_id,))
                    result["customers"] += 1

        def delete_events(db: sqlite3.Connection, keys: list[int]) -> None:
            db.execute(_in_list("DELETE FROM pending WHERE seq IN ({})", keys), keys)
            result["events"] += db.execute(_in_list("DELETE FROM events WHERE seq IN ({})", keys), keys).rowcount

        def anonymise_actions(db: sqlite3.Connection, keys: list[int]) -> None:
            for seq, details in db.execute(_in_list("SELECT seq, details FROM audit WHERE seq IN ({})", keys), keys).fetchall():
                kept = anonymise_action(json.loads(details), now)
                if kept is not None:
                    db.execute("UPDATE audit SET details=? WHERE seq=?", (json.dumps(kept, ensure_ascii=False), seq))
                    result["actions"] += 1

        await self._purge_in_chunks(
            "SELECT rowid FROM messages WHERE rowid > ? AND received_epoch < ? AND digest != '' ORDER BY rowid LIMIT ?",
            cutoff, anonymise_messages)
        await self._purge_in_chunks("SELECT seq FROM events WHERE seq > ? AND created_at < ? ORDER BY seq LIMIT ?",
                                    before, delete_events)
        await self._purge_in_chunks(
            "SELECT seq FROM audit WHERE seq > ? AND at < ? AND (instr(details, '\"text\"') OR instr(details, '\"error\"'))"
            " ORDER BY seq LIMIT ?", before, anonymise_actions)

        def anonymise_suggestions(db: sqlite3.Connection, keys: list[int]) -> None:
            for rowid, identities in db.execute(_in_list("SELECT rowid, identity FROM merge_suggestions WHERE rowid IN ({})",
                                                         keys), keys).fetchall():
                kinds = identity_kinds(identities)
                if kinds is not None:
                    db.execute("UPDATE merge_suggestions SET identity=? WHERE rowid=?", (kinds, rowid))
                    result["merge_suggestions"] += 1

        await self._purge_in_chunks("SELECT rowid FROM merge_suggestions WHERE rowid > ? AND created_at < ?"
                                    " AND instr(identity, ':') ORDER BY rowid LIMIT ?", before, anonymise_suggestions)
        result["dead_letters"] = await self._run(self._tx, lambda db: db.execute(
            "DELETE FROM dead_letters WHERE created_at < ?", (before,)).rowcount)

        def still_named(db: sqlite3.Connection) -> set[str]:
            named: set[str] = set()
            for (body,) in db.execute("SELECT body FROM messages WHERE received_epoch >= ? AND instr(body, 'sha256')",
                                      (cutoff,)):
                named |= blobs_named(body)
            for (record,) in db.execute("SELECT record FROM dead_letters WHERE instr(record, 'sha256')"):
                named |= blobs_named(record)
            return named

        result["blobs"] = sorted(freed - await self._read(still_named)) if freed else []
        return result

    async def _purge_in_chunks(self, find: str, cutoff: float | str,
                               change: Callable[..., None]) -> None:
        """``find`` (a key after ``?``, the cutoff, a limit) on the reading connection, then
        ``change`` in a write transaction, chunk after chunk, until nothing is found."""
        def keys_after(after: int, db: sqlite3.Connection) -> list[int]:
            return [row[0] for row in db.execute(find, (after, cutoff, PURGE_CHUNK))]

        keys = await self._read(partial(keys_after, 0))
        while keys:
            await self._run(self._tx, partial(change, keys=keys))
            keys = await self._read(partial(keys_after, keys[-1]))

    # -- adapter state ----------------------------------------------------------------
    async def get_cursor(self, name: str) -> str | None:
        row = await self._run(lambda: self.db.execute("SELECT value FROM cursors WHERE name=?", (name,)).fetchone())
        return row[0] if row else None

    async def set_cursor(self, name: str, value: str) -> None:
        await self._run(self._tx, lambda db: db.execute(
            "INSERT INTO cursors(name, value) VALUES (?,?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (name, value)))

    async def get_entries(self, name: str) -> dict[str, str]:
        rows = await self._run(lambda: self.db.execute("SELECT key, value FROM state_entries WHERE name=?", (name,)).fetchall())
        return dict(rows)

    async def set_entry(self, name: str, key: str, value: str | None) -> None:
        if value is None:
            await self._run(self._tx, lambda db: db.execute("DELETE FROM state_entries WHERE name=? AND key=?", (name, key)))
        else:
            await self._run(self._tx, lambda db: db.execute(
                "INSERT INTO state_entries(name, key, value) VALUES (?,?,?) ON CONFLICT(name, key) DO UPDATE SET value=excluded.value",
                (name, key, value)))

    # Locks live in a file of their own without flushes to disk (``<path>-locks``): a lock is
    # worth nothing after a crash anyway (it expires), and taking one per mail would otherwise
    # cost a flush per mail. Attempts and lockouts live there too: a power cut forgets at most
    # the last few seconds of them, a restart nothing.
    def _locks(self) -> sqlite3.Connection:
        if self._locks_db is None:
            self._locks_db = connect_wal(f"{self.path}-locks", "OFF", _LOCKS_SCHEMA)
        return self._locks_db

    async def _locks_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in a write transaction of the locks' file: on the event loop's own thread
        when the file's write lock is free (nothing there waits for the disk: about 30 µs of
        CPU), else in the locks' thread, which waits for the other process's write. Handing a
        transaction to a thread and back costs about 110 µs of CPU, more than the lock itself."""
        if self._locks_db is not None:  # opened (and its schema made) in the thread, the first time
            try:
                return write_transaction_now(self._locks_db_lock, self._locks, fn)
            except WriteLockBusy:  # another process is writing the locks' file: wait for it in the thread, below
                pass
            except sqlite3.Error as exc:
                raise RegistryError(f"sqlite: {exc}") from exc
        return await _in_thread(self._locks_executor, self._locks_transaction_waiting, fn)

    def _locks_transaction_waiting(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._locks_db_lock:
            return write_transaction(self._locks(), fn)

    async def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        def take(db: sqlite3.Connection) -> bool:
            now = time.time()
            self._lock_takes += 1
            if self._lock_takes % 1000 == 0:  # locks expired an hour ago are kept no longer
                db.execute("DELETE FROM locks WHERE expires < ?", (now - 3600,))
            row = db.execute("SELECT owner, expires FROM locks WHERE name=?", (name,)).fetchone()
            if row and row[0] != owner and row[1] > now:
                return False
            db.execute("INSERT INTO locks(name, owner, expires) VALUES (?,?,?) ON CONFLICT(name) DO UPDATE SET"
                       " owner=excluded.owner, expires=excluded.expires", (name, owner, now + ttl_seconds))
            return True

        return await self._locks_transaction(take)

    async def release_lock(self, name: str, owner: str) -> None:
        await self._locks_transaction(lambda db: db.execute("DELETE FROM locks WHERE name=? AND owner=?", (name, owner)))

    async def count_attempt(self, name: str, limit: int, window_seconds: float, lock_seconds: float) -> float:
        def count(db: sqlite3.Connection) -> float:
            now = time.time()
            row = db.execute("SELECT until FROM lockouts WHERE name=?", (name,)).fetchone()
            if row and row[0] > now:
                return float(row[0] - now)
            # what has expired goes, for every name: user names and addresses are kept no longer than needed
            db.execute("DELETE FROM attempts WHERE at <= ?", (now - window_seconds,))
            db.execute("DELETE FROM lockouts WHERE until <= ?", (now,))
            db.execute("INSERT INTO attempts(name, at) VALUES (?,?)", (name, now))
            if db.execute("SELECT count(*) FROM attempts WHERE name=?", (name,)).fetchone()[0] >= limit:
                db.execute("DELETE FROM attempts WHERE name=?", (name,))
                db.execute("INSERT INTO lockouts(name, until) VALUES (?,?)", (name, now + lock_seconds))
            return 0.0

        return await self._locks_transaction(count)

    async def clear_attempts(self, name: str) -> None:
        def clear(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM attempts WHERE name=?", (name,))
            db.execute("DELETE FROM lockouts WHERE name=?", (name,))

        await self._locks_transaction(clear)

    async def take_tokens(self, names: list[str], per_second: float, burst: float) -> list[bool]:
        def take(db: sqlite3.Connection) -> list[bool]:
            now = time.time()
            db.execute("DELETE FROM buckets WHERE full_at <= ?", (now,))  # full again: as good as new
            answers = []
            for name in names:
                row = db.execute("SELECT tokens, at FROM buckets WHERE name=?", (name,)).fetchone()
                tokens = burst if row is None else min(burst, row[0] + max(0.0, now - row[1]) * per_second)
                answers.append(tokens >= 1)
                tokens -= 1 if answers[-1] else 0
                db.execute("INSERT INTO buckets(name, tokens, at, full_at) VALUES (?,?,?,?) ON CONFLICT(name) DO UPDATE"
                           " SET tokens=excluded.tokens, at=excluded.at, full_at=excluded.full_at",
                           (name, tokens, now, now + (burst - tokens) / per_second))
            return answers

        return await self._locks_transaction(take)


_SubmitFields = tuple[str | None, str | None, str | None, dict[str, Any]]


def _submit_fields(complaint: Complaint) -> _SubmitFields:
    """What ``_submit_tx`` may change in a complaint, to put back when its work is undone."""
    return complaint.customer.customer_id, complaint.registration_number, complaint.in_reply_to, dict(complaint.meta)


def _restore_submit_fields(complaint: Complaint, fields: _SubmitFields) -> None:
    complaint.customer.customer_id, complaint.registration_number, complaint.in_reply_to, meta = fields
    complaint.meta = dict(meta)
