"""Content-addressed blob store on disk: raw originals and attachments, by SHA-256.

A blob is written to a temporary file, flushed to disk and renamed into place, so a blob
that exists is complete. Storing the same bytes twice is a no-op. Temporary files are made
in one directory (``.incoming``): creating a file among thousands of sparse directories
costs the filesystem several times more than a rename into one.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

#: Without fsync, a blob up to this size is written on the event loop: the write costs less
#: than handing it to a thread.
INLINE_WRITE_BYTES = 64 * 1024


class BlobStore:
    def __init__(self, root: str | Path, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.incoming = self.root / ".incoming"

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(ch in "0123456789abcdef" for ch in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put_sync(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.incoming, prefix=".incoming-")
        except FileNotFoundError:
            self.incoming.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.incoming, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, target)
            if self.fsync:  # the rename itself must survive a power cut too
                directory = os.open(target.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    async def put(self, data: bytes) -> str:
        if not self.fsync and len(data) <= INLINE_WRITE_BYTES:
            return self.put_sync(data)
        return await asyncio.to_thread(self.put_sync, data)

    def get_sync(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, sha256)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False
