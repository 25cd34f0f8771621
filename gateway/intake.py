"""The sink every adapter delivers to: store, normalise, register.

Order matters for the promise "nothing acknowledged is lost": the raw original and the
attachments are written to the blob store first; a message the normaliser cannot handle
goes to the dead-letter store with its reason; only then is the door told "success". If
even that fails, ``TemporaryFailure`` tells the adapter to answer "try again". A small
original that is UTF-8 text (a web form, a webhook's JSON: up to
``intake.inline_original_max_bytes``) is kept instead as text in the complaint's record, or
in the dead letter, written in the same atomic step as the registration before the door is
answered: no blob row and no flush of its own.

Messages are handled in batches (group commit). Every message handed over while the
previous batch was being prepared joins the next one: its blobs reach the disk with one
flush. Every message prepared while the registry was busy is registered in the next round
trip to Redis or SQLite transaction. Nobody waits for a batch to fill: a message arriving
alone is a batch of one. Each message still gets its own answer, dead letter or failure.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from gateway.adapters import Submitted, TemporaryFailure
from gateway.blobs import BlobStore
from gateway.inbound import Inbound, InboundAttachment, Receipt
from gateway.metrics import Metrics
from gateway.registry import Registry
from gateway.registry.base import SubmitPlan
from normalizer.pipeline import NormalizationError, Normalizer
from normalizer.schema import Complaint

log = logging.getLogger("complaint_gateway.intake")

T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

#: Messages handled in one batch at most (``intake.max_batch``).
DEFAULT_MAX_BATCH = 64
#: Originals up to this size, if UTF-8 text, are kept with the complaint (``intake.inline_original_max_bytes``).
DEFAULT_INLINE_ORIGINAL_MAX_BYTES = 1024


@dataclass(slots=True)
class _Waiting:
    inbound: Inbound
    future: asyncio.Future[Submitted]
    started: float


class Intake:
    def __init__(self, registry: Registry, blobs: BlobStore, normalizer: Normalizer, metrics: Metrics,
                 max_batch: int = DEFAULT_MAX_BATCH, inline_original_max_bytes: int = DEFAULT_INLINE_ORIGINAL_MAX_BYTES) -> None:
        self.registry = registry
        self.blobs = blobs
        self.normalizer = normalizer
        self.metrics = metrics
        self.max_batch = max(1, max_batch)
        self.inline_original_max_bytes = max(0, inline_original_max_bytes)
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        #: Messages prepared and not yet registered, in order of arrival, with their complaints
        #: and plans (or why there is none).
        self._prepared: list[tuple[_Waiting, Complaint | str, SubmitPlan | Exception | None]] = []
        self._registrar: asyncio.Task[None] | None = None
        #: Set whenever a registry round trip ends (a batch with blobs to flush waits for it).
        self._registered = asyncio.Event()

    async def submit(self, inbound: Inbound) -> Submitted:
        """Store and register ``inbound``; raises ``TemporaryFailure`` if it could not be
        made durable. The message joins the next batch."""
        self.metrics.child(self.metrics.received, inbound.channel).inc()
        future: asyncio.Future[Submitted] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(inbound, future, time.perf_counter()))
        if self._writer is None:
            # starts on the loop's next turn: requests read in this turn join the batch
            self._writer = asyncio.get_running_loop().create_task(self._write_batches())
        # a request cancelled while it waits (client gone) cancels only its future, not the
        # batch: the message is registered and a redelivery gets the same receipt
        return await future

    async def drain(self) -> None:
        """Wait until every message handed over is written (at shutdown)."""
        while (task := self._writer or self._registrar) is not None:
            await asyncio.shield(task)

    async def _write_batches(self) -> None:
        """Messages go through two stages. Preparing: a batch's blobs are written and flushed
        to disk, and its messages normalised while the flush waits in a thread. Registering:
        one registry round trip for every message prepared meanwhile (up to ``max_batch``).
        Messages with nothing to flush (a web form, a webhook) go on being prepared while
        earlier ones register, so the event loop works while the registry does. A batch with
        blobs to flush is taken once the registry round trip under way ends: a flush costs
        about as much for one message as for many, so messages gather meanwhile.
        Registrations keep the order of arrival."""
        try:
            while self._waiting:
                if self._registrar is not None and _stores_blobs(self._waiting[:self.max_batch], self.inline_original_max_bytes):
                    self._registered.clear()
                    await self._registered.wait()
                batch = self._waiting[:self.max_batch]
                del self._waiting[:len(batch)]
                prepared = await self._guarded(batch, self._prepare(batch))
                if prepared is not None:
                    self._prepared.extend((item, result, self.registry.plan(result) if isinstance(result, Complaint) else None)
                                          for item, result in zip(batch, prepared))
                    if self._registrar is None:
                        self._registrar = asyncio.get_running_loop().create_task(self._register_prepared())
        finally:
            self._writer = None

    async def _register_prepared(self) -> None:
        try:
            while self._prepared:
                taken, self._prepared = self._prepared[:self.max_batch], self._prepared[self.max_batch:]
                batch = [item for item, _, _ in taken]
                await self._guarded(batch, self._register(batch, [(result, plan) for _, result, plan in taken]))
                self._registered.set()
        finally:
            self._registrar = None
            self._registered.set()

    async def _guarded(self, batch: list[_Waiting], stage: Awaitable[T]) -> T | None:
        try:
            return await stage
        except Exception as exc:  # a bug must not leave a door waiting for ever
            log.exception("intake batch failed", extra={"error": repr(exc)})
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(TemporaryFailure("the message could not be registered"))
            return None

    async def _prepare(self, batch: list[_Waiting]) -> list[Complaint | str] | None:
        """Each message's complaint (or why there is none), once its blobs are on disk;
        None when they could not be stored (every message of the batch is told so)."""
        pending = _blobs_of([item.inbound for item in batch], self.inline_original_max_bytes)
        try:
            staged = self.blobs.stage([data for _, _, data in pending])
            if staged is None:  # a large batch: hashed and written in a thread first
                _assign(pending, await self.blobs.put_many([data for _, _, data in pending]))
                results = self._normalize_light(batch)
            else:
                _assign(pending, staged.digests)
                staged.start()
                results = self._normalize_light(batch)  # while the flush waits in its thread
                await staged.commit()
        except OSError as exc:
            log.error("blob store failed", extra={"error": repr(exc), "messages": len(batch)})
            for item in batch:
                self._fail(item, TemporaryFailure("the message could not be stored"))
            return None
        heavy = [i for i, result in enumerate(results) if result is None]
        if heavy:  # large HTML takes milliseconds to render: off the event loop, in parallel
            rendered = await asyncio.gather(*(asyncio.to_thread(self._normalize, batch[i].inbound) for i in heavy))
            for i, result in zip(heavy, rendered):
                results[i] = result
        return cast("list[Complaint | str]", results)  # every None (a heavy message) was filled in above

    def _normalize_light(self, batch: list[_Waiting]) -> list[Complaint | str | None]:
        return [None if _heavy(item.inbound) else self._normalize(item.inbound) for item in batch]

    async def _register(self, batch: list[_Waiting], results: list[tuple[Complaint | str, SubmitPlan | Exception | None]]) -> None:
        complaints: list[Complaint] = []
        plans: list[SubmitPlan | Exception] = []
        registering: list[_Waiting] = []
        for item, (result, plan) in zip(batch, results):
            if isinstance(result, Complaint):
                complaints.append(result)
                assert plan is not None  # planned as prepared
                plans.append(plan)
                registering.append(item)
            else:
                self._settle(item, await self._dead_letter(item.inbound, str(result)))

        if not complaints:
            return
        try:
            receipts = await self.registry.submit_many(complaints, plans)
        except Exception as exc:
            log.error("registry submit failed", extra={"error": repr(exc), "messages": len(complaints)})
            for item in registering:
                self._fail(item, TemporaryFailure("the registry is not available"))
            return
        metrics, registered_at, logs = self.metrics, time.perf_counter(), log.isEnabledFor(logging.INFO)
        for item, complaint, receipt in zip(registering, complaints, receipts):
            if isinstance(receipt, Exception):
                log.error("registry submit failed", extra={"channel": item.inbound.channel, "error": repr(receipt)})
                self._fail(item, TemporaryFailure("the registry is not available"))
                continue
            channel = item.inbound.channel
            metrics.child(metrics.submit_seconds, channel).observe(registered_at - item.started)
            if receipt.status == "duplicate":
                metrics.child(metrics.duplicates, channel).inc()
            else:
                metrics.child(metrics.registered, channel, receipt.status).inc()
            if logs:
                log.info("message registered", extra={
                    "channel": channel, "status": receipt.status, "registration_number": receipt.registration_number,
                    "customer_id": receipt.customer_id, "complaint_id": receipt.complaint_id})
            self._settle(item, Submitted(receipt, complaint))

    def _normalize(self, inbound: Inbound) -> Complaint | str:
        """The complaint, or why there is none (the dead letter's reason)."""
        try:
            return self.normalizer.normalize(inbound)
        except Exception as exc:  # any normaliser failure keeps the message as a dead letter
            return str(exc) if isinstance(exc, NormalizationError) else f"{type(exc).__name__}: {exc}"

    def _settle(self, item: _Waiting, result: Submitted | TemporaryFailure) -> None:
        if item.future.done():
            return
        if isinstance(result, TemporaryFailure):
            item.future.set_exception(result)
        else:
            item.future.set_result(result)

    def _fail(self, item: _Waiting, failure: TemporaryFailure) -> None:
        self.metrics.failed.labels(item.inbound.channel, "temporary").inc()
        self._settle(item, failure)

    async def _dead_letter(self, inbound: Inbound, reason: str) -> Submitted | TemporaryFailure:
        channel = inbound.channel
        try:
            dead_letter_id = await self.registry.add_dead_letter(inbound.to_record(), reason)
        except Exception as exc:
            self.metrics.failed.labels(channel, "temporary").inc()
            log.error("dead-letter store failed", extra={"channel": channel, "error": repr(exc)})
            return TemporaryFailure("the message could not be kept")
        self.metrics.failed.labels(channel, "dead_letter").inc()
        log.warning("message kept as dead letter", extra={"channel": channel, "dead_letter_id": dead_letter_id,
                                                          "reason": reason})
        return Submitted(Receipt("dead_letter", None, None, None, dead_letter_id), None)

    async def replay(self, dead_letter: dict[str, Any]) -> Submitted:
        """Process a dead letter again; on success it is marked resolved."""
        inbound = Inbound.from_record(dead_letter["record"])
        if inbound.raw_sha256 and self.blobs.exists(inbound.raw_sha256):
            inbound.raw = await self.blobs.get(inbound.raw_sha256)
        try:
            complaint = self.normalizer.normalize(inbound)
        except Exception as exc:  # still unusable: it stays a dead letter
            log.warning("replay failed again", extra={"dead_letter_id": dead_letter["id"], "error": repr(exc)})
            return Submitted(Receipt("dead_letter", None, None, None, dead_letter["id"]), None)
        receipt = await self.registry.submit(complaint)
        await self.registry.resolve_dead_letter(dead_letter["id"], receipt)
        return Submitted(receipt, complaint)


def _heavy(inbound: Inbound) -> bool:
    """Large HTML takes milliseconds to render: do that off the event loop."""
    return len(inbound.html or "") > 200_000 or len(inbound.text or "") > 500_000


def _unplaced_raw(inbound: Inbound) -> bytes | None:
    """The raw original, if it is neither in the blob store nor kept as text yet."""
    return inbound.raw if inbound.raw_sha256 is None and inbound.raw_text is None else None


def _unstored_data(attachment: InboundAttachment) -> bytes | None:
    return attachment.data if attachment.sha256 is None else None


def _stores_blobs(batch: list[_Waiting], inline_max_bytes: int) -> bool:
    """Whether preparing ``batch`` writes to the blob store (as ``_blobs_of`` decides, an
    original's size alone telling whether it could be kept as text)."""
    for inbound in (item.inbound for item in batch):
        raw = _unplaced_raw(inbound)
        if (raw is not None and len(raw) > inline_max_bytes) or any(_unstored_data(a) is not None for a in inbound.attachments):
            return True
    return False


def _blobs_of(inbounds: list[Inbound], inline_max_bytes: int) -> list[tuple[Any, str, bytes]]:
    """Every raw original and attachment not stored yet: (object, attribute for its digest,
    data). A small original that is UTF-8 text is kept as ``raw_text`` instead."""
    pending: list[tuple[Any, str, bytes]] = []
    for inbound in inbounds:
        raw = _unplaced_raw(inbound)
        if raw is not None:
            inbound.raw_text = _as_text(raw) if len(raw) <= inline_max_bytes else None
            if inbound.raw_text is None:
                pending.append((inbound, "raw_sha256", raw))
        for attachment in inbound.attachments:
            data = _unstored_data(attachment)
            if data is not None:
                attachment.size = len(data)
                pending.append((attachment, "sha256", data))
    return pending


def _as_text(raw: bytes) -> str | None:
    """``raw`` as text if it is UTF-8 without control characters other than tab, newline and
    carriage return (a NUL, say, is refused by some consumers' JSON stores): anything else stays a blob."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def _assign(pending: list[tuple[Any, str, bytes]], digests: list[str]) -> None:
    for (target, attribute, _), digest in zip(pending, digests):
        setattr(target, attribute, digest)
