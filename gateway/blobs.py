"""Content-addressed blob store on disk: raw originals and attachments, by SHA-256.

Small blobs (up to ``small_max_bytes``, 64 KB by default: nearly every raw e-mail, form and
webhook body) are rows of one SQLite file, ``small.sqlite3`` in the store's folder (WAL,
``synchronous=FULL`` when ``fsync`` is on). A batch of them is one multi-row insert and one
commit: one flush to disk for the batch, no file created per message. On this kind of
virtual disk creating, writing and renaming a file per message held the event loop for a
millisecond per blob while the journal was being flushed.

Larger blobs are files: written to a temporary file in ``.incoming``, flushed and renamed
into place (``<sha[:2]>/<sha[2:4]>/<sha>``), so a file that exists is complete. A batch of
files is flushed with one ``syncfs``. Storing the same bytes twice writes nothing again; it
renews the blob's time, which a purge's ``delete`` looks at.

``stage()`` hashes a batch on the event loop and ``StagedBlobs.start()`` writes it: a batch
of small blobs there and then, on the loop's thread, when the file's write lock is free
(``write_transaction_now``: one insert and one commit); otherwise in a thread, and
``commit()`` waits for that while the intake normalises the batch.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import hashlib
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gateway.sqlite_wal import WriteLockBusy, connect_wal, write_transaction, write_transaction_now

#: Blobs up to this size are rows of ``small.sqlite3`` (``blobs.small_max_bytes``).
SMALL_MAX_BYTES = 64 * 1024
#: A batch up to this size in all is hashed on the event loop (``stage``); a larger one is
#: hashed and written in a thread (``put_many``).
STAGE_MAX_BYTES = 1024 * 1024
#: SQLite allows 32 766 parameters in one statement; two per row.
_ROWS_PER_INSERT = 500


def _insert_rows(db: sqlite3.Connection, rows: list[tuple[str, bytes]]) -> None:
    """New rows, and ``put_at`` renewed on the rows already there (see ``BlobStore.delete``)."""
    now = time.time()
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start:start + _ROWS_PER_INSERT]
        db.execute("INSERT INTO blobs(sha256, data, put_at) VALUES " + ",".join(["(?,?,?)"] * len(chunk))
                   + " ON CONFLICT(sha256) DO UPDATE SET put_at=excluded.put_at",
                   [value for digest, data in chunk for value in (digest, data, now)])


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not Linux: fall back to one fsync per file
        return None


_SYNCFS = _load_syncfs()


def _sync(anchor: Path, paths: list[Path]) -> None:
    """Make ``paths`` (files or directories) durable. One file or directory: ``fsync``. More:
    one ``syncfs`` of the filesystem holding ``anchor`` — a batch of 32 small files costs
    a quarter of the CPU and wall time of 32 ``fsync`` calls. Without ``syncfs``: ``fsync`` each."""
    if len(paths) > 1 and _SYNCFS is not None:
        fd = os.open(anchor, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error), str(anchor))
        finally:
            os.close(fd)
        return
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class BlobStore:
    def __init__(self, root: str | Path, fsync: bool = True, small_max_bytes: int = SMALL_MAX_BYTES) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.small_max_bytes = small_max_bytes
        self.incoming = self.root / ".incoming"
        self._root, self._incoming = str(self.root), str(self.incoming)
        self._directories: set[str] = set()  # blob directories known to exist
        self._names = itertools.count()
        self._db: sqlite3.Connection | None = None  # writes (in threads), one at a time
        self._db_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None  # reads: never wait for a write's flush
        self._reader_lock = threading.Lock()

    # -- where blobs are -------------------------------------------------------------------
    def path(self, sha256: str) -> Path:
        """The file a large blob is kept in (small blobs have none: use ``get``/``size``)."""
        if len(sha256) != 64 or not all(ch in "0123456789abcdef" for ch in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _target(self, digest: str) -> tuple[str, str]:
        """The directory and the file of a blob (``digest`` computed here: not checked again)."""
        directory = f"{self._root}/{digest[:2]}/{digest[2:4]}"
        return directory, f"{directory}/{digest}"

    def _open(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        db = connect_wal(self.root / "small.sqlite3", "FULL" if self.fsync else "OFF",
                         "CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL,"
                         " put_at REAL NOT NULL DEFAULT 0);"
                         "CREATE TABLE IF NOT EXISTS purge_deferred (sha256 TEXT PRIMARY KEY);")
        if "put_at" not in {row[1] for row in db.execute("PRAGMA table_info(blobs)")}:  # a store written before
            try:
                db.execute("ALTER TABLE blobs ADD COLUMN put_at REAL NOT NULL DEFAULT 0")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    db.close()
                    raise
        return db

    def open(self) -> None:
        """Create the folder and open ``small.sqlite3`` for writing now, not on the event loop
        with the first message (two processes creating it together retry for a while)."""
        with self._db_lock:
            self._connection()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _query(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._reader_lock:
            if self._reader is None:
                self._reader = self._open()
            return self._reader.execute(sql, args).fetchall()

    # -- writing ---------------------------------------------------------------------------
    def put_sync(self, data: bytes) -> str:
        return self.put_many_sync([data])[0]

    def put_many_sync(self, items: list[bytes]) -> list[str]:
        """Store several blobs: the small ones in one transaction, the large ones as files
        with one flush for all of them."""
        digests = [hashlib.sha256(data).hexdigest() for data in items]
        self._write(dict(zip(digests, items)))
        return digests

    async def put(self, data: bytes) -> str:
        return (await self.put_many([data]))[0]

    async def put_many(self, items: list[bytes]) -> list[str]:
        """``put`` for several blobs at once, with one flush to disk."""
        if not items:
            return []
        staged = self.stage(items)
        if staged is None:
            return await asyncio.to_thread(self.put_many_sync, items)
        staged.start()
        return await staged.commit()

    def stage(self, items: list[bytes]) -> StagedBlobs | None:
        """Hash a batch on the event loop, so the caller knows the digests and can work
        while ``start()`` writes it; None for a batch above ``STAGE_MAX_BYTES``
        (use ``put_many``)."""
        if sum(map(len, items)) > STAGE_MAX_BYTES:
            return None
        digests = [hashlib.sha256(data).hexdigest() for data in items]
        return StagedBlobs(self, digests, dict(zip(digests, items)))

    def _write(self, blobs: dict[str, bytes]) -> None:
        """Write and flush ``blobs`` (digest -> data); runs in a thread. One statement per
        500 small blobs and one commit: the interpreter lock is given back a few times per
        batch, not after every system call."""
        try:
            self._write_rows([(digest, data) for digest, data in blobs.items() if len(data) <= self.small_max_bytes])
        except sqlite3.Error as exc:  # callers see one kind of storage failure
            raise OSError(f"blob store {self.root}/small.sqlite3: {exc}") from exc
        large = {digest: data for digest, data in blobs.items() if len(data) > self.small_max_bytes}
        if large:
            self._write_files(large)

    def _write_rows(self, small: list[tuple[str, bytes]]) -> None:
        if small:
            with self._db_lock:
                write_transaction(self._connection(), lambda db: _insert_rows(db, small))

    def write_small_now(self, blobs: dict[str, bytes]) -> bool:
        """Write a batch of small blobs on the calling thread, if that needs no waiting:
        False (nothing written) when a blob is large or the connection or the file's write
        lock is taken; OSError when the write fails."""
        if any(len(data) > self.small_max_bytes for data in blobs.values()):
            return False
        try:
            write_transaction_now(self._db_lock, self._connection, lambda db: _insert_rows(db, list(blobs.items())))
        except WriteLockBusy:
            return False
        except sqlite3.Error as exc:
            raise OSError(f"blob store {self.root}/small.sqlite3: {exc}") from exc
        return True

    def _write_files(self, blobs: dict[str, bytes]) -> None:
        written: dict[str, str] = {}  # digest -> temporary file
        try:
            for digest, data in blobs.items():
                try:  # stored already: its time renewed (see ``delete``)
                    os.utime(self._target(digest)[1])
                except FileNotFoundError:
                    written[digest] = self._write_temporary(data)
            if not written:
                return
            if self.fsync:
                _sync(self.incoming, [Path(tmp) for tmp in written.values()])
            directories = self._place(written)
            if self.fsync:  # the renames themselves must survive a power cut too
                _sync(self.root, directories)
        except BaseException:
            for tmp in written.values():
                Path(tmp).unlink(missing_ok=True)
            raise

    def _place(self, written: dict[str, str]) -> list[Path]:
        """Rename the temporary files into place; the directories that changed."""
        directories = set()
        for digest, tmp in written.items():
            directory, target = self._target(digest)
            if directory not in self._directories:
                os.makedirs(directory, exist_ok=True)
                if len(self._directories) < 70_000:  # 65 536 directories at most
                    self._directories.add(directory)
            try:
                os.replace(tmp, target)
            except FileNotFoundError:  # the directory was removed behind our back
                os.makedirs(directory, exist_ok=True)
                os.replace(tmp, target)
            directories.add(directory)
        return [Path(d) for d in sorted(directories)]

    def _write_temporary(self, data: bytes) -> str:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        while True:
            tmp = f"{self._incoming}/.incoming-{os.getpid()}-{next(self._names)}"
            try:
                fd = os.open(tmp, flags, 0o600)
                break
            except FileExistsError:  # left by an earlier process with the same pid
                continue
            except FileNotFoundError:
                os.makedirs(self._incoming, exist_ok=True)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    # -- reading ---------------------------------------------------------------------------
    def get_sync(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            rows = self._query("SELECT data FROM blobs WHERE sha256=?", (sha256,))
            if not rows:
                raise
            return bytes(rows[0][0])  # type: ignore[call-overload]

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, sha256)

    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes, or None when it is not stored."""
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            rows = self._query("SELECT length(data) FROM blobs WHERE sha256=?", (sha256,))
            return int(rows[0][0]) if rows else None  # type: ignore[call-overload]

    def exists(self, sha256: str) -> bool:
        return self.size(sha256) is not None

    def digests(self) -> Iterator[str]:
        """Every stored blob's digest (files, then rows)."""
        for path in self.root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*"):
            if path.is_file():
                yield path.name
        if (self.root / "small.sqlite3").exists():
            yield from (str(row[0]) for row in self._query("SELECT sha256 FROM blobs", ()))

    def delete(self, sha256: str, put_before: float | None = None) -> bool:
        """Delete a blob; with ``put_before`` (a Unix time) only if it was not stored since
        then. Storing bytes already there renews their time (a file's mtime, a row's
        ``put_at``), so a purge that found a blob unused keeps it when a message being
        registered meanwhile stored it again. A file is first moved aside and its time read
        there: a message storing it at that moment writes a new copy."""
        path = self.path(sha256)
        if put_before is None:
            try:
                path.unlink()
                return True
            except FileNotFoundError:
                return self._delete_row(sha256, float("inf"))
        aside = f"{self._incoming}/.purged-{sha256}-{os.getpid()}-{next(self._names)}"
        try:
            os.makedirs(self._incoming, exist_ok=True)
            os.rename(path, aside)
        except FileNotFoundError:
            return self._delete_row(sha256, put_before)
        if os.stat(aside).st_mtime >= put_before:
            os.replace(aside, path)  # stored since: back in place (a copy stored meanwhile has the same bytes)
            return False
        os.unlink(aside)
        return True

    def purge_deferred(self) -> list[str]:
        """The blobs a purge found unused but kept, because they were stored again lately:
        the next purge checks them again."""
        return [str(row[0]) for row in self._query("SELECT sha256 FROM purge_deferred ORDER BY sha256", ())]

    def set_purge_deferred(self, digests: Iterable[str]) -> None:
        rows = [(digest,) for digest in sorted(set(digests))]

        def replace(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM purge_deferred")
            db.executemany("INSERT INTO purge_deferred VALUES (?)", rows)

        with self._db_lock:
            write_transaction(self._connection(), replace)

    def _delete_row(self, sha256: str, put_before: float) -> bool:
        with self._db_lock:
            return self._connection().execute("DELETE FROM blobs WHERE sha256=? AND put_at < ?",
                                              (sha256, put_before)).rowcount > 0

    def close(self) -> None:
        with self._db_lock, self._reader_lock:
            for db in (self._db, self._reader):
                if db is not None:
                    db.close()
            self._db = self._reader = None


class StagedBlobs:
    """A hashed batch of blobs, not yet written (``BlobStore.stage``)."""

    def __init__(self, store: BlobStore, digests: list[str], blobs: dict[str, bytes]) -> None:
        self.store = store
        self.digests = digests
        self._blobs = blobs
        self._writing: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Write and flush the batch now (small blobs, write lock free) or begin to in a
        thread; ``commit()`` reports how it went."""
        if self._blobs and self._writing is None:
            loop = asyncio.get_running_loop()
            try:
                written = self.store.write_small_now(self._blobs)
            except OSError as exc:
                self._writing = loop.create_future()
                self._writing.set_exception(exc)
                return
            if written:
                self._writing = loop.create_future()
                self._writing.set_result(None)
            else:
                self._writing = loop.run_in_executor(None, self.store._write, self._blobs)

    async def commit(self) -> list[str]:
        """Wait until the batch is on disk; the digests."""
        self.start()
        if self._writing is not None:
            await self._writing
        return self.digests
