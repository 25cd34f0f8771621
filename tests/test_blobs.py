"""The blob store keeps complete blobs only, where ``path()`` says, with or without fsync,
and leaves no temporary file behind, even when a write fails."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gateway.blobs import INLINE_WRITE_BYTES, BlobStore


@pytest.mark.parametrize("fsync", [True, False])
@pytest.mark.parametrize("size", [0, 300, INLINE_WRITE_BYTES + 1])
async def test_stored_blob_is_complete_and_content_addressed(tmp_path: Path, fsync: bool, size: int) -> None:
    store = BlobStore(tmp_path, fsync=fsync)
    data = os.urandom(size)
    digest = await store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.path(digest) == tmp_path / digest[:2] / digest[2:4] / digest
    assert await store.get(digest) == data
    assert store.exists(digest)
    assert list((tmp_path / ".incoming").iterdir()) == []  # the temporary file was renamed into place


async def test_same_bytes_twice_is_one_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first, second = await store.put(b"complaint"), await store.put(b"complaint")
    assert first == second
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [store.path(first)]


async def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path, fsync=False)

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        await store.put(b"a complaint that could not be stored")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert not store.exists(hashlib.sha256(b"a complaint that could not be stored").hexdigest())


@pytest.mark.parametrize("fsync", [True, False])
async def test_many_blobs_at_once_are_each_complete(tmp_path: Path, fsync: bool) -> None:
    store = BlobStore(tmp_path, fsync=fsync)
    items = [os.urandom(size) for size in (0, 10, 300, 70_000)] + [b"same", b"same"]
    digests = await store.put_many(items)
    assert digests == [hashlib.sha256(data).hexdigest() for data in items]
    assert digests[-1] == digests[-2]
    for data, digest in zip(items, digests):
        assert await store.get(digest) == data
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 5
    assert list((tmp_path / ".incoming").iterdir()) == []
    assert await store.put_many(items[:2]) == digests[:2]  # already there: nothing written again


async def test_failed_batch_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path, fsync=True)
    real_replace = os.replace
    calls = []

    def refuse_second(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_second)
    with pytest.raises(OSError, match="No space left"):
        await store.put_many([b"first complaint", b"second complaint", b"third complaint"])
    assert list((tmp_path / ".incoming").iterdir()) == []
    assert store.exists(hashlib.sha256(b"first complaint").hexdigest())  # complete, written before the failure
    assert not store.exists(hashlib.sha256(b"second complaint").hexdigest())
