"""SQLite files shared by several processes: opening one in WAL mode, and write transactions.

Switching a new file to WAL takes a lock that SQLite's busy timeout does not wait for: two
gateway workers starting together on a new file could fail with "database is locked".
``connect_wal`` retries that step.
"""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: How long a statement waits for another connection's lock before it fails.
BUSY_TIMEOUT_MS = 60_000


def connect_wal(path: str | Path, synchronous: str, schema: str = "", *, attempts: int = 500,
                cache_mb: int | None = None) -> sqlite3.Connection:
    """A connection (autocommit, usable from any thread) to ``path`` in WAL mode with
    ``synchronous`` and a busy timeout of ``BUSY_TIMEOUT_MS``; ``schema`` (``CREATE ... IF NOT EXISTS``
    statements) is run in one transaction. ``cache_mb``: the connection's page cache
    (SQLite's default is 2 MB)."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        for attempt in range(attempts):
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.01)
        db.execute(f"PRAGMA synchronous={synchronous}")
        if cache_mb is not None:
            db.execute(f"PRAGMA cache_size={-1024 * int(cache_mb)}")  # negative: in KiB
        if schema:
            db.executescript("BEGIN IMMEDIATE;" + schema + "COMMIT;")
    except BaseException:
        db.close()
        raise
    return db


class WriteLockBusy(Exception):
    """A write that was not to wait: the connection or the file's write lock is taken."""


def write_transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], *, wait: bool = True) -> T:
    """``fn(db)`` in one ``BEGIN IMMEDIATE`` transaction (the write lock taken at once, so
    processes sharing the file serialise): committed when it returns, rolled back if it raises.
    With ``wait=False`` the write lock is not waited for: ``WriteLockBusy`` when another
    connection holds it (in WAL mode nothing after ``BEGIN IMMEDIATE`` waits on a lock)."""
    result = _begin_and_run(db, fn, wait)
    _commit(db)
    return result


def _commit(db: sqlite3.Connection) -> None:
    try:
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # a commit that failed (an I/O error, say) may leave it open
            db.execute("ROLLBACK")
        raise


def _begin_and_run(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], wait: bool) -> T:
    """``fn(db)`` in a transaction begun with ``BEGIN IMMEDIATE``, left open for the commit;
    rolled back if ``fn`` raises."""
    if wait:
        db.execute("BEGIN IMMEDIATE")
    else:  # a connection of ``connect_wal``: its busy timeout is put back afterwards
        db.execute("PRAGMA busy_timeout=0")
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            raise WriteLockBusy(str(exc)) from exc
        finally:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        return fn(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise


def write_transaction_now(lock: threading.Lock, connection: Callable[[], sqlite3.Connection],
                          fn: Callable[[sqlite3.Connection], T]) -> T:
    """``write_transaction`` on the calling thread (the event loop's, say) if nothing has to
    be waited for: neither ``lock``, held by whoever uses the connection in this process, nor
    the file's write lock. ``WriteLockBusy`` otherwise: the caller then writes in a thread,
    which may wait. A thread running the statements would give the interpreter lock back
    around each one and wait for it again while the loop is busy."""
    if not lock.acquire(blocking=False):
        raise WriteLockBusy("the connection is in use")
    try:
        return write_transaction(connection(), fn, wait=False)
    finally:
        lock.release()


async def write_transaction_flushed_aside(lock: threading.Lock, connection: Callable[[], sqlite3.Connection],
                                          fn: Callable[[sqlite3.Connection], T], committer: Executor) -> T:
    """``write_transaction_now`` whose ``COMMIT`` (the flush to disk with
    ``synchronous=FULL``) runs in ``committer``'s thread: the statements run on the calling
    thread (the event loop's) and the loop goes on with other work while the disk flushes.
    ``lock`` stays held until the commit is done; ``committer`` must not run anything that
    waits for it. ``WriteLockBusy`` as ``write_transaction_now``."""
    if not lock.acquire(blocking=False):
        raise WriteLockBusy("the connection is in use")
    try:
        db = connection()
        result = _begin_and_run(db, fn, wait=False)
        committed = asyncio.get_running_loop().run_in_executor(committer, _commit_and_release, db, lock)
    except BaseException:
        lock.release()
        raise
    await committed  # cancelled, the commit still ends and releases the lock in its thread
    return result


def _commit_and_release(db: sqlite3.Connection, lock: threading.Lock) -> None:
    try:
        _commit(db)
    finally:
        lock.release()
