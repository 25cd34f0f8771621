"""The blob store keeps complete blobs only — small ones as rows of one SQLite file, large
ones as files where ``path()`` says — with or without fsync, and leaves no temporary file
behind, even when a write fails."""
from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from gateway.blobs import SMALL_MAX_BYTES, STAGE_MAX_BYTES, BlobStore
from gateway.sqlite_wal import connect_wal


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith("small.sqlite3")]


@pytest.mark.parametrize("fsync", [True, False])
@pytest.mark.parametrize("size", [0, 300, SMALL_MAX_BYTES, SMALL_MAX_BYTES + 1])
async def test_stored_blob_is_complete_and_content_addressed(tmp_path: Path, fsync: bool, size: int) -> None:
    store = BlobStore(tmp_path, fsync=fsync)
    data = os.urandom(size)
    digest = await store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert await store.get(digest) == data
    assert store.exists(digest) and store.size(digest) == size
    assert list(store.digests()) == [digest]
    large = size > SMALL_MAX_BYTES
    assert store.path(digest) == tmp_path / digest[:2] / digest[2:4] / digest
    assert store.path(digest).exists() == large  # a small blob is a row, not a file
    assert files(tmp_path) == ([store.path(digest)] if large else [])  # no temporary file left
    reopened = BlobStore(tmp_path, fsync=fsync)  # another process sees it
    assert reopened.get_sync(digest) == data


async def test_same_bytes_twice_is_one_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    for data in (b"complaint", os.urandom(SMALL_MAX_BYTES + 10)):
        first, second = await store.put(data), await store.put(data)
        assert first == second
    assert len(list(store.digests())) == 2


@pytest.mark.parametrize("fsync", [True, False])
async def test_many_blobs_at_once_are_each_complete(tmp_path: Path, fsync: bool) -> None:
    store = BlobStore(tmp_path, fsync=fsync)
    items = [os.urandom(size) for size in (0, 10, 300, 70_000, 80_000)] + [b"same", b"same"]
    digests = await store.put_many(items)
    assert digests == [hashlib.sha256(data).hexdigest() for data in items]
    for data, digest in zip(items, digests):
        assert await store.get(digest) == data
    assert sorted(store.digests()) == sorted(set(digests))
    assert len(files(tmp_path)) == 2  # the two above SMALL_MAX_BYTES
    assert await store.put_many(items[:2]) == digests[:2]  # already there: nothing written again
    big = [os.urandom(STAGE_MAX_BYTES // 2 + 1) for _ in range(2)]  # a batch too large to hash on the loop
    assert [await store.get(d) for d in await store.put_many(big)] == big


async def test_a_staged_batch_is_known_before_it_is_written(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    staged = store.stage([b"raw one", b"raw two"])
    assert staged is not None
    assert staged.digests == [hashlib.sha256(b"raw one").hexdigest(), hashlib.sha256(b"raw two").hexdigest()]
    assert not store.exists(staged.digests[0])
    staged.start()
    assert await staged.commit() == staged.digests
    assert [store.get_sync(d) for d in staged.digests] == [b"raw one", b"raw two"]


async def test_small_batch_is_written_at_once_unless_another_process_is_writing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    staged = store.stage([b"raw one", b"raw two"])
    assert staged is not None
    staged.start()  # the write lock is free: written and flushed before start() returns
    assert store.exists(staged.digests[0]) and store.exists(staged.digests[1])
    assert await staged.commit() == staged.digests

    other = connect_wal(tmp_path / "small.sqlite3", "FULL")
    other.execute("BEGIN IMMEDIATE")  # another gateway process writing to the same store
    staged = store.stage([b"raw three", b"x" * (SMALL_MAX_BYTES + 1)])
    assert staged is not None
    staged.start()  # handed to a thread, which waits for the lock
    await asyncio.sleep(0.1)
    assert not store.exists(staged.digests[0])
    other.execute("COMMIT")
    other.close()
    assert await asyncio.wait_for(staged.commit(), 10) == staged.digests
    assert store.get_sync(staged.digests[0]) == b"raw three" and store.size(staged.digests[1]) == SMALL_MAX_BYTES + 1
    assert not store.write_small_now({"d": b"x" * (SMALL_MAX_BYTES + 1)})  # a large blob is never written on the loop


async def test_failed_small_write_on_the_loop_reaches_commit(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    await store.put(b"first")
    store._connection().execute("PRAGMA query_only=1")
    staged = store.stage([b"second"])
    assert staged is not None
    staged.start()
    with pytest.raises(OSError, match="readonly"):
        await staged.commit()
    store._connection().execute("PRAGMA query_only=0")
    assert not store.exists(staged.digests[0])


async def test_failed_file_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path, fsync=True)
    real_replace = os.replace
    calls = []

    def refuse_second(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_second)
    blobs = [os.urandom(SMALL_MAX_BYTES + n) for n in (1, 2, 3)]
    with pytest.raises(OSError, match="No space left"):
        await store.put_many(blobs)
    assert list((tmp_path / ".incoming").iterdir()) == []
    assert store.exists(hashlib.sha256(blobs[0]).hexdigest())  # complete, written before the failure
    assert not store.exists(hashlib.sha256(blobs[1]).hexdigest())


async def test_failed_small_write_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    await store.put(b"first")
    store._connection().execute("PRAGMA query_only=1")  # every write now fails, as on a full disk
    with pytest.raises(Exception, match="readonly"):
        await store.put_many([b"second", b"third"])
    assert not store.exists(hashlib.sha256(b"second").hexdigest())
    store._connection().execute("PRAGMA query_only=0")
    assert store.get_sync(await store.put(b"second")) == b"second"  # the connection is usable again


async def test_deleted_blobs_are_gone(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    small, large = await store.put(b"small"), await store.put(os.urandom(SMALL_MAX_BYTES + 1))
    assert store.delete(small) and store.delete(large)
    assert not store.exists(small) and not store.exists(large)
    assert not store.delete(small)
    assert list(store.digests()) == []


@pytest.mark.parametrize("size", [300, SMALL_MAX_BYTES + 1])
async def test_a_blob_stored_again_since_a_purge_began_is_not_deleted_by_it(tmp_path: Path, size: int) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(size)
    digest = await store.put(data)
    old = time.time() - 3600
    if size > SMALL_MAX_BYTES:
        os.utime(store.path(digest), (old, old))
    else:
        store._connection().execute("UPDATE blobs SET put_at=? WHERE sha256=?", (old, digest))
    purge_began = time.time() - 1
    assert await store.put(data) == digest  # a new message with the same bytes, while the purge runs
    assert not store.delete(digest, put_before=purge_began)
    assert store.get_sync(digest) == data
    assert files(tmp_path / ".incoming") == []  # a file moved aside to be looked at is back in place
    assert store.delete(digest, put_before=time.time() + 1)
    assert not store.exists(digest)


async def test_a_store_written_before_blobs_had_times_is_read_and_purged(tmp_path: Path) -> None:
    db = connect_wal(tmp_path / "small.sqlite3", "FULL", "CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);")
    db.execute("INSERT INTO blobs VALUES (?, ?)", (hashlib.sha256(b"old").hexdigest(), b"old"))
    db.close()
    store = BlobStore(tmp_path)
    assert store.get_sync(hashlib.sha256(b"old").hexdigest()) == b"old"
    assert store.delete(hashlib.sha256(b"old").hexdigest(), put_before=time.time())  # stored before any purge
    again = await store.put(b"new")
    assert not store.delete(again, put_before=time.time() - 60)


def test_blobs_a_purge_kept_are_remembered_for_the_next(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.purge_deferred() == []
    store.set_purge_deferred(["b" * 64, "a" * 64, "b" * 64])
    assert BlobStore(tmp_path).purge_deferred() == ["a" * 64, "b" * 64]
    store.set_purge_deferred([])
    assert store.purge_deferred() == []


def _put_in_a_process(folder: str, n: int, start: float) -> str:
    import time

    time.sleep(max(0.0, start - time.time()))  # every process opens the new store at the same moment
    return BlobStore(folder).put_sync(f"raw original {n}".encode())


def test_stores_of_several_processes_opening_one_folder_at_once_all_write(tmp_path: Path) -> None:
    import multiprocessing
    import time

    with multiprocessing.get_context("spawn").Pool(6) as pool:
        pool.map(abs, range(6))  # the workers are up
        for attempt in range(8):
            folder = str(tmp_path / str(attempt))
            start = time.time() + 0.2
            digests = pool.starmap(_put_in_a_process, [(folder, n, start) for n in range(6)])
            assert sorted(BlobStore(folder).digests()) == sorted(digests)
