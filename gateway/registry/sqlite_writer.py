"""SQLite's submits in a writer process beside the gateway (``registry.sqlite.writer_process``).

A batch of submits costs the SQLite registry its statements on the event loop's thread and
its flush to disk in a thread beside it. With this setting the batch goes, as one frame of
JSON over a Unix socket, to a child process that runs the same transaction
(``SqliteRegistry._submit_many_here``, its commit too on the writer's one thread) on its
own connection to the same file and sends back the receipts and what the submits decided
about each complaint (its customer, its number, a follow-up refused, a repeat noted). The gateway's loop then spends its time on requests
while the statements run on another core: on a machine with a core to spare the web form
registers about a quarter more complaints a second in one gateway process; on one whose
cores are already full, the frames cost more than they save (see docs/performance.md).

Nothing changes in what is written: the writer runs the code a gateway without it runs, in
the same ``BEGIN IMMEDIATE`` transactions, so the gateway's other writes (operators'
actions, the queue, merges) and other processes' writers serialise with it on the file's
write lock. The writer ignores SIGINT and SIGTERM (a terminal's Ctrl-C and a service
manager's stop reach the whole process group): it ends when its gateway closes the socket,
after the batch it is writing, and also when the gateway dies (the socket closes then too).
If it ends while a batch is in it, that batch fails as a registry error ("try again"; the
transaction either committed whole or not at all, and a delivery sent again is then a
duplicate with its receipt) and the next batch starts a new writer; a writer found ended
between batches is replaced before the batch is sent.

Frames: four bytes of length (big-endian), then orjson. Gateway to writer: the plans, each
a ``SubmitPlan`` with its complaint. Writer to gateway: ``{"ready": true}`` once, after it
opened the file, then per batch ``{"results": [[receipt, error, customer_id,
registration_number, in_reply_to, meta], ...]}`` (``meta`` null when the submit left it as it
was) or ``{"error": "..."}`` when the whole batch failed.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway.inbound import Receipt
from gateway.registry.base import RegistryError, RegistrySettings, SubmitPlan
from normalizer.schema import Complaint

log = logging.getLogger("gateway.registry.sqlite")


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    size = int.from_bytes(await reader.readexactly(4), "big")
    return orjson.loads(await reader.readexactly(size))


def _write_frame(writer: asyncio.StreamWriter, value: Any) -> None:
    frame = orjson.dumps(value)
    writer.write(len(frame).to_bytes(4, "big") + frame)


class SubmitWriter:
    """The gateway's side: starts the writer process, hands it batches one at a time, and
    starts a new one after a writer that ended."""

    def __init__(self, path: Path, synchronous: str, cache_mb: int, write_lock_poll_ms: int, checkpoint_pages: int) -> None:
        self.args = [str(path), synchronous, str(cache_mb), str(write_lock_poll_ms), str(checkpoint_pages)]
        self.process: subprocess.Popen[bytes] | None = None
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()  # one batch in the writer at a time, as in the gateway's own connection

    async def start(self) -> None:
        """Start the writer and wait until it has opened the file (its import and open take
        about 0.15 s); the first batch does, and the first after a writer ended."""
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.registry.sqlite_writer", str(theirs.fileno()), *self.args],
                pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        self._streams = await asyncio.open_unix_connection(sock=ours)
        try:
            hello = await _read_frame(self._streams[0])
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self._ended()
            raise RegistryError(f"sqlite: the writer process did not start ({exc})") from exc
        if not hello.get("ready"):
            await self._ended()
            raise RegistryError(f"sqlite: the writer process did not start: {hello.get('error')}")

    async def submit(self, plans: list[SubmitPlan]) -> list[Receipt | Exception]:
        """The plans registered by the writer, each plan's complaint changed as
        ``_submit_tx`` changes it. The exchange goes on when the caller is cancelled, so
        that the next batch reads its own answer."""
        exchange = asyncio.ensure_future(self._exchange(plans))
        exchange.add_done_callback(_retrieved)
        return await asyncio.shield(exchange)

    async def _exchange(self, plans: list[SubmitPlan]) -> list[Receipt | Exception]:
        async with self._lock:
            return await self._exchange_locked(plans)

    async def _exchange_locked(self, plans: list[SubmitPlan]) -> list[Receipt | Exception]:
        if self.process is not None and self.process.poll() is not None:  # ended between batches: this one is not in it
            log.error("sqlite writer process ended (exit code %s) between batches; starting a new one", self.process.returncode)
            await self._ended()
        if self._streams is None:
            await self.start()
        assert self._streams is not None
        reader, writer = self._streams
        try:
            _write_frame(writer, plans)
            reply = await _read_frame(reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await self._ended()
            log.error("sqlite writer process ended (exit code %s) with a batch of %d in it; the next batch starts a new one",
                      code, len(plans))
            raise RegistryError(f"sqlite: the writer process ended (exit code {code})") from exc
        if "error" in reply:
            raise RegistryError(reply["error"])
        results: list[Receipt | Exception] = []
        for plan, (receipt, error, customer_id, number, in_reply_to, meta) in zip(plans, reply["results"]):
            c = plan.complaint
            c.customer.customer_id, c.registration_number, c.in_reply_to = customer_id, number, in_reply_to
            if meta is not None:
                c.meta = meta
            results.append(RegistryError(error) if receipt is None else Receipt.from_dict(receipt))
        return results

    async def _ended(self) -> int | None:
        """Forget a writer whose socket closed; its exit code."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None
        process, self.process = self.process, None
        if process is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(None, process.wait)

    async def close(self) -> None:
        """Close the socket and wait for the writer to finish its batch and exit."""
        async with self._lock:
            await self._ended()


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a batch's failure as read: when its caller was cancelled no one awaits it, and
    asyncio would report it as an exception never retrieved."""
    if not task.cancelled():
        task.exception()


async def _serve(sock: socket.socket, path: str, synchronous: str, cache_mb: int, write_lock_poll_ms: int,
                 checkpoint_pages: int) -> None:
    from gateway.registry.sqlite import SqliteRegistry  # the writer runs the gateway's own transaction

    reader, writer = await asyncio.open_unix_connection(sock=sock)
    registry = SqliteRegistry(RegistrySettings(), path, synchronous, cache_mb, write_lock_poll_ms,
                              checkpoint_pages=checkpoint_pages)
    try:
        await registry.open()
    except Exception as exc:  # the gateway reports it
        _write_frame(writer, {"error": str(exc)})
        await writer.drain()
        return
    _write_frame(writer, {"ready": True})
    try:
        while True:
            try:
                batch = await _read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the gateway closed the socket, or ended
            plans = [SubmitPlan(**{**item, "complaint": Complaint.from_dict(item["complaint"])}) for item in batch]
            metas = [dict(plan.complaint.meta) for plan in plans]
            try:
                results = await registry._submit_many_here(plans, inline=True)
            except Exception as exc:
                _write_frame(writer, {"error": str(exc) if isinstance(exc, RegistryError) else f"sqlite: {exc!r}"})
                continue
            _write_frame(writer, {"results": [
                [result.to_dict(), None, *_decided(plan, meta)] if isinstance(result, Receipt)
                else [None, str(result), *_decided(plan, meta)] for plan, meta, result in zip(plans, metas, results)]})
    finally:
        await registry.close()


def _decided(plan: SubmitPlan, meta_received: dict[str, Any]) -> list[Any]:
    """What the submit decided about the complaint: its meta only when the submit changed
    it (a follow-up refused, a repeat, a merge suggested), so that an inline original in it
    does not travel back."""
    c = plan.complaint
    return [c.customer.customer_id, c.registration_number, c.in_reply_to, None if c.meta == meta_received else c.meta]


def main() -> None:
    """``python -m gateway.registry.sqlite_writer FD PATH SYNCHRONOUS CACHE_MB WRITE_LOCK_POLL_MS CHECKPOINT_PAGES``,
    started by ``SubmitWriter`` with its end of a socket pair as FD."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd, path, synchronous = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    cache_mb, poll_ms, checkpoint_pages = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve(socket.socket(fileno=fd), path, synchronous, cache_mb, poll_ms, checkpoint_pages))


if __name__ == "__main__":
    main()
