"""The sink every adapter delivers to: store, normalise, register.

Order matters for the promise "nothing acknowledged is lost": the raw original and the
attachments are written to the blob store first; a message the normaliser cannot handle
goes to the dead-letter store with its reason; only then is the door told "success". If
even that fails, ``TemporaryFailure`` tells the adapter to answer "try again".
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway.adapters import Submitted, TemporaryFailure
from gateway.blobs import BlobStore
from gateway.inbound import Inbound, Receipt
from gateway.metrics import Metrics
from gateway.registry import Registry
from normalizer.pipeline import NormalizationError, Normalizer

log = logging.getLogger("complaint_gateway.intake")


class Intake:
    def __init__(self, registry: Registry, blobs: BlobStore, normalizer: Normalizer, metrics: Metrics) -> None:
        self.registry = registry
        self.blobs = blobs
        self.normalizer = normalizer
        self.metrics = metrics

    async def submit(self, inbound: Inbound) -> Submitted:
        started = time.perf_counter()
        channel = inbound.channel
        self.metrics.received.labels(channel).inc()
        try:
            await self._store_blobs(inbound)
        except OSError as exc:
            self.metrics.failed.labels(channel, "temporary").inc()
            log.error("blob store failed", extra={"channel": channel, "error": repr(exc)})
            raise TemporaryFailure("the message could not be stored") from exc

        try:
            complaint = await asyncio.to_thread(self.normalizer.normalize, inbound) if _heavy(inbound) \
                else self.normalizer.normalize(inbound)
        except Exception as exc:  # any normaliser failure keeps the message as a dead letter
            reason = str(exc) if isinstance(exc, NormalizationError) else f"{type(exc).__name__}: {exc}"
            return await self._dead_letter(inbound, reason)

        try:
            receipt = await self.registry.submit(complaint)
        except Exception as exc:
            self.metrics.failed.labels(channel, "temporary").inc()
            log.error("registry submit failed", extra={"channel": channel, "error": repr(exc)})
            raise TemporaryFailure("the registry is not available") from exc

        self.metrics.submit_seconds.labels(channel).observe(time.perf_counter() - started)
        if receipt.status == "duplicate":
            self.metrics.duplicates.labels(channel).inc()
        else:
            self.metrics.registered.labels(channel, receipt.status).inc()
        log.info("message registered", extra={
            "channel": channel, "status": receipt.status, "registration_number": receipt.registration_number,
            "customer_id": receipt.customer_id, "complaint_id": receipt.complaint_id})
        return Submitted(receipt, complaint)

    async def _store_blobs(self, inbound: Inbound) -> None:
        if inbound.raw is not None and inbound.raw_sha256 is None:
            inbound.raw_sha256 = await self.blobs.put(inbound.raw)
        for attachment in inbound.attachments:
            if attachment.data is not None and attachment.sha256 is None:
                attachment.size = len(attachment.data)
                attachment.sha256 = await self.blobs.put(attachment.data)

    async def _dead_letter(self, inbound: Inbound, reason: str) -> Submitted:
        channel = inbound.channel
        try:
            dead_letter_id = await self.registry.add_dead_letter(inbound.to_record(), reason)
        except Exception as exc:
            self.metrics.failed.labels(channel, "temporary").inc()
            log.error("dead-letter store failed", extra={"channel": channel, "error": repr(exc)})
            raise TemporaryFailure("the message could not be kept") from exc
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


