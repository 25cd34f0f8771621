"""The adapter contract: how a door plugs into the gateway.

An adapter knows one protocol. It authenticates the sender, parses the wire format into an
``Inbound``, hands it to ``deliver()`` and answers the protocol. ``deliver()`` stores and
registers the message through the gateway's sink and returns the ``Receipt``; the
customer is then acknowledged in their door by ``acknowledge()``.

Push adapters (webhooks, forms) contribute aiohttp routes; pull adapters (IMAP, long
poll) implement ``pull()`` and the base class runs it in a loop with exponential backoff
and jitter. Adapters are found by name through the entry-point group
``complaint_gateway.channels``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from aiohttp import web

from gateway.acknowledgements import RetryPolicy
from gateway.http import SharedRateLimiter, TakeTokens
from gateway.inbound import Inbound, Receipt
from gateway.logs import mask_secrets_in_urls

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.metrics import Metrics
    from normalizer.schema import Complaint


class TemporaryFailure(Exception):
    """The message could not be made durable; the door must answer "try again"."""


@dataclass(slots=True)
class Submitted:
    """What the sink returns: the receipt, and the complaint as registered (if any)."""

    receipt: Receipt
    complaint: Complaint | None


class Sink(Protocol):
    async def submit(self, inbound: Inbound) -> Submitted: ...


class StateStore(Protocol):
    """Durable per-channel state kept by the registry backend: cursors, maps and locks."""

    async def get_cursor(self, name: str) -> str | None: ...

    async def set_cursor(self, name: str, value: str) -> None: ...

    async def get_entries(self, name: str) -> dict[str, str]: ...

    async def set_entry(self, name: str, key: str, value: str | None) -> None: ...

    async def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool: ...

    async def release_lock(self, name: str, owner: str) -> None: ...


class AcknowledgementTexts(Protocol):
    def render(self, complaint: Complaint, receipt: Receipt, *, door: str, public: bool = False,
               language: str | None = None) -> str: ...


async def _no_complaint(complaint_id: str) -> Complaint | None:
    return None


async def _not_recorded(registration_number: str, details: dict[str, Any]) -> None:
    return None


async def _no_shared_buckets(names: list[str], per_second: float, burst: float) -> list[bool]:
    raise RuntimeError("no registry to keep shared rate limits in")


@dataclass(slots=True)
class AdapterContext:
    """Everything an adapter instance may use. Adapters never touch the database."""

    instance: str
    settings: dict[str, Any]
    sink: Sink
    state: StateStore
    metrics: Metrics
    config: GatewayConfig
    texts: AcknowledgementTexts
    #: Finds registration numbers in text (subjects, replies): ``number_pattern.findall(s)``.
    number_pattern: re.Pattern[str] = field(default_factory=lambda: re.compile(r"(?!x)x"))
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("complaint_gateway.channel"))
    #: How a failed acknowledgement is sent again (``acknowledgements.retry``).
    acknowledgement_retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: This process's number in the multi-process mode: the key its held acknowledgements are kept under.
    worker: int = 0
    #: A registered complaint by id, to send again an acknowledgement held over a restart.
    load_complaint: Callable[[str], Awaitable[Complaint | None]] = _no_complaint
    #: Records on a registration that its acknowledgement was given up on (the registry's
    #: ``acknowledgement_failed`` action: the operators see it, the queue gets its event).
    record_acknowledgement_failure: Callable[[str, dict[str, Any]], Awaitable[None]] = _not_recorded
    #: A token from each of several buckets every process shares (the registry's ``take_tokens``).
    take_tokens: TakeTokens = _no_shared_buckets

    def rate_limiter(self, name: str, per_minute: float, burst: int | None = None,
                     scope: str = "process") -> SharedRateLimiter:
        """A rate limit for this door's handlers (``await limit.allow(key)``), counted in
        this process (``scope: process``) or in the registry, for every process together
        (``scope: registry``)."""
        take = self.take_tokens if scope == "registry" else None
        return SharedRateLimiter(per_minute, burst, take, f"rate:{self.instance}:{name}")


class Adapter:
    """Base of every channel adapter. Subclass ``PushAdapter`` or ``PullAdapter``."""

    #: The name used in config.yaml ``adapter:`` and in the entry point.
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1.0"
    description: ClassVar[str] = ""
    #: What the door can do: "push", "pull", "acknowledge", "reply", "attachments", ...
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: JSON Schema of the adapter's settings (its section under ``channels:``).
    settings_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    @classmethod
    def check_settings(cls, settings: dict[str, Any], where: str) -> None:
        """Checks the JSON Schema cannot make (a regular expression that compiles, say), run
        by ``check-config`` and at start after the schema; raise ``ConfigError`` naming
        ``where`` (``channels.<instance>``) and the key."""

    def __init__(self, context: AdapterContext) -> None:
        self.context = context
        self.instance = context.instance
        self.settings = context.settings
        self.log = context.logger.getChild(self.instance)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Set when the gateway stops: acknowledgements waiting to be sent again give up.
        self._draining = asyncio.Event()
        #: Set while the door's platform fails (its last acknowledgement failed with an error
        #: worth a second try): new acknowledgements are then held before their first send.
        self._platform_failing = False

    # -- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Called once when the gateway starts (open connections, start servers)."""

    async def stop(self) -> None:
        """Called once at shutdown; the base awaits acknowledgements still being sent."""
        await self.drain()

    def runs_in_every_worker(self) -> bool:
        """In the multi-process mode (``http.workers`` > 1) every worker serves HTTP; an
        adapter that polls a door or listens on its own socket runs in the first worker
        only. Webhook adapters run everywhere."""
        return True

    # -- intake -----------------------------------------------------------------------
    async def deliver(self, inbound: Inbound, *, acknowledge: bool = True) -> Submitted:
        """Store and register ``inbound``; acknowledge the customer in the background
        (``acknowledge=False``: the door answers in its own protocol's response instead).

        Raises ``TemporaryFailure`` when the message could not be made durable: the
        adapter must then answer its protocol's "try again" (SMTP 451, HTTP 503).
        """
        submitted = await self.context.sink.submit(inbound)
        if acknowledge and submitted.complaint is not None and self.should_acknowledge(submitted):
            self.spawn(self._acknowledge_safely(submitted.receipt, submitted.complaint))
        return submitted

    def should_acknowledge(self, submitted: Submitted, *, in_response: bool = False) -> bool:
        """Whether the customer is told (``in_response``: in the door's own response to this
        delivery, which a redelivery is answered in too)."""
        complaint = submitted.complaint
        receipt = submitted.receipt
        return (
            (receipt.answers_in_response if in_response else receipt.answers_customer)
            and complaint is not None
            and not complaint.auto_submitted
            and "acknowledge" in self.capabilities
            and bool(self.settings.get("acknowledge", True))
        )

    async def acknowledge(self, receipt: Receipt, complaint: Complaint) -> None:
        """Tell the customer their registration number in this door. Doors that answer
        inside their own protocol response (web form, TwiML) need not override it."""

    async def send_reply(self, complaint: Complaint, text: str) -> None:
        """An operator's answer to the customer through this door."""
        raise NotImplementedError(f"adapter {self.name!r} cannot send replies")

    def acknowledgement_retry_delay(self, error: Exception, backoff: float) -> float | None:
        """How long to wait before sending a failed acknowledgement again: ``backoff`` (from
        ``acknowledgements.retry``) by default; None when sending it again cannot help (the
        customer blocked the bot, the request itself is wrong), or longer when the platform
        asked for a longer wait. Doors override it for their platform's errors."""
        return backoff

    async def _acknowledge_safely(self, receipt: Receipt, complaint: Complaint, failures: int = 0, held: bool = False) -> None:
        """``acknowledge()``, sent again after a failure as ``acknowledgements.retry`` says;
        a failure never undoes the registration. While it waits to be sent again it is held
        in the registry (``failures`` so far: one held over a restart goes on counting), and
        while the door's platform fails it is held before its first send too, so that a
        process stopped in the middle of that send loses nothing (``held``: it is already)."""
        policy, metrics = self.context.acknowledgement_retry, self.context.metrics

        def count(result: str) -> None:  # the cached child: "sent" is counted for every message
            metrics.child(metrics.acknowledged, self.instance, result).inc()

        if not held and self._platform_failing:
            held = await self._hold(receipt, failures)
        while True:
            try:
                await self.acknowledge(receipt, complaint)
            except Exception as exc:
                failures += 1
                wait = self.acknowledgement_retry_delay(exc, policy.delay(failures))
                if wait is not None:  # worth a second try: the platform, not this customer
                    self._platform_failing = True
                if failures >= policy.attempts:
                    wait = None
                number, error = receipt.registration_number, repr(exc)
                if wait is None:
                    count("failed")
                    self.log.warning("acknowledgement failed", extra={"registration_number": number, "error": error,
                                                                      "attempts": failures})
                    await self._record_failure(number, exc, failures)
                    break
                count("retried")
                self.log.info("acknowledgement failed; retrying", extra={"registration_number": number, "error": error,
                                                                          "attempts": failures, "retry_in": round(wait, 2)})
                held = await self._hold(receipt, failures) or held
                if not await self._wait_unless_draining(wait):
                    count("abandoned")
                    self.log.warning("acknowledgement abandoned: the gateway is stopping; it is sent again at the next start"
                                     if held else "acknowledgement abandoned: the gateway is stopping",
                                     extra={"registration_number": number, "attempts": failures})
                    return
            else:
                self._platform_failing = False
                count("sent")
                break
        if held:
            await self._hold(receipt, None)

    async def _record_failure(self, number: str | None, error: Exception, attempts: int) -> None:
        """The registration shows that the customer did not get its number, and why (the
        error's text, secrets in URLs masked), so that an operator can answer by other means."""
        if not number:
            return
        reason = mask_secrets_in_urls(str(error) or type(error).__name__)[:self.context.acknowledgement_retry.max_error_chars]
        try:
            await self.context.record_acknowledgement_failure(number, {
                "channel": self.instance, "attempts": attempts, "error": reason})
        except Exception as exc:  # the failure stays in the log and the metric
            self.log.warning("acknowledgement failure not recorded", extra={"registration_number": number, "error": repr(exc)})

    @property
    def _held_name(self) -> str:
        return f"acknowledgements:{self.instance}"

    async def _hold(self, receipt: Receipt, failures: int | None) -> bool:
        """Keep an acknowledgement waiting to be sent again in the registry (``failures``
        so far), or let it go (None). False when the registry could not keep it: it is
        then sent again by this process only."""
        value = None if failures is None else json.dumps(
            {"status": receipt.status, "number": receipt.registration_number, "customer": receipt.customer_id,
             "failures": failures, "worker": self.context.worker}, separators=(",", ":"))
        try:
            await self.context.state.set_entry(self._held_name, str(receipt.complaint_id), value)
            return True
        except Exception as exc:  # the acknowledgement goes on in memory
            self.log.warning("acknowledgement not held in the registry", extra={
                "registration_number": receipt.registration_number, "error": repr(exc)})
            return False

    async def resume_acknowledgements(self) -> None:
        """At start: send again the acknowledgements this process held when it stopped; the
        first process also those of process numbers no longer configured (``http.workers``)."""
        if "acknowledge" not in self.capabilities:
            return  # a door that never acknowledges holds nothing
        try:
            held = await self.context.state.get_entries(self._held_name)
        except Exception as exc:
            self.log.warning("held acknowledgements not read", extra={"error": repr(exc)})
            return
        worker, workers = self.context.worker, int(self.context.config.http.get("workers", 1))
        for complaint_id, value in held.items():
            try:
                entry = json.loads(value)
                holder = int(entry.get("worker", 0))
                receipt = Receipt(entry["status"], entry["number"], entry["customer"], complaint_id)
                failures = int(entry["failures"])
            except (ValueError, TypeError, KeyError, AttributeError) as exc:  # no process wrote this: not to be sent
                if worker == 0:
                    await self._give_up_unreadable(complaint_id, exc)
                continue
            if holder != worker and not (worker == 0 and holder >= workers):
                continue  # another running process's: it sends them itself
            try:
                complaint = await self.context.load_complaint(complaint_id)
            except Exception as exc:  # the registry: tried again at the next start
                self.log.warning("held acknowledgement not read", extra={"complaint_id": complaint_id, "error": repr(exc)})
                continue
            if complaint is None:  # purged since
                await self._hold(receipt, None)
                continue
            self.log.info("held acknowledgement sent again", extra={"registration_number": receipt.registration_number})
            self.spawn(self._acknowledge_safely(receipt, complaint, failures=failures, held=True))

    async def _give_up_unreadable(self, complaint_id: str, error: Exception) -> None:
        """A held acknowledgement that cannot be read (damaged in the registry) is not sent: it
        is let go, and recorded on its complaint's registration (if there is one) as given up
        on, so that an operator answers the customer by other means."""
        try:
            complaint = await self.context.load_complaint(complaint_id)
        except Exception as exc:  # the registry: tried again at the next start
            self.log.warning("held acknowledgement not read", extra={"complaint_id": complaint_id, "error": repr(exc)})
            return
        metrics = self.context.metrics
        metrics.child(metrics.acknowledged, self.instance, "failed").inc()
        self.log.error("held acknowledgement unreadable: given up", extra={"complaint_id": complaint_id, "error": repr(error)})
        if complaint is not None:
            await self._record_failure(complaint.registration_number,
                                       ValueError(f"the held acknowledgement could not be read: {error}"), 0)
        try:
            await self.context.state.set_entry(self._held_name, complaint_id, None)
        except Exception as exc:  # read again (and recorded again) at the next start
            self.log.warning("held acknowledgement not let go", extra={"complaint_id": complaint_id, "error": repr(exc)})

    async def _wait_unless_draining(self, seconds: float) -> bool:
        """Wait ``seconds``; False at once when the gateway starts stopping."""
        try:
            await asyncio.wait_for(self._draining.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    # -- background work --------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; it is awaited (not lost) at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """At shutdown: let acknowledgements being sent finish; those waiting to be sent
        again give up (logged and counted as ``abandoned``)."""
        self._draining.set()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- command line -----------------------------------------------------------------
    @classmethod
    def add_cli_commands(cls, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        """Adapters may add ``complaint-gateway <command>`` sub-commands."""


class PushAdapter(Adapter):
    """An adapter the door calls: webhooks, forms. It contributes HTTP routes."""

    def routes(self) -> list[web.AbstractRouteDef]:
        raise NotImplementedError


class PullAdapter(Adapter):
    """An adapter that fetches from the door: IMAP, long poll.

    Implement ``pull()``: one cycle of fetching and delivering; it returns when the cycle
    is done, or raises when the connection failed. Advance the door's cursor only after
    ``deliver()`` returned. The base class calls ``pull()`` again after
    ``poll_interval_seconds`` (0 for long poll and IDLE), and after a failure waits
    with exponential backoff and full jitter before it reconnects.
    """

    #: JSON Schema properties of the settings this base class reads; a pull adapter puts
    #: ``**PullAdapter.LOOP_SETTINGS`` into its own ``settings_schema`` properties.
    LOOP_SETTINGS: ClassVar[dict[str, Any]] = {
        "poll_interval_seconds": {"type": "number", "minimum": 0},
        "backoff_initial_seconds": {"type": "number", "minimum": 0},
        "backoff_max_seconds": {"type": "number", "minimum": 0},
    }

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self.failures = 0
        self.poll_interval = float(self.settings.get("poll_interval_seconds", 0))
        self.backoff_initial = float(self.settings.get("backoff_initial_seconds", 1.0))
        self.backoff_max = float(self.settings.get("backoff_max_seconds", 300.0))

    async def pull(self) -> None:
        raise NotImplementedError

    def runs_in_every_worker(self) -> bool:
        return False

    async def close(self) -> None:
        """Close the connection to the door (called after a failure and at shutdown)."""

    def backoff_delay(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**(failures-1))]."""
        ceiling = min(self.backoff_max, self.backoff_initial * (2 ** max(0, failures - 1)))
        return random.uniform(0, ceiling)

    async def start(self) -> None:
        self._stopping = False
        self._runner = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._runner is not None:
            # the flag ends the loop even where a door's client library turns the
            # cancellation into an error of its own (it would look like a failed pull)
            self._stopping = True
            self._runner.cancel()
            await asyncio.wait([self._runner])
        await self.drain()  # acknowledgements still being sent may need the connection
        await self.close()

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self.pull()
                self.failures = 0
                delay = self.poll_interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                self.failures += 1
                self.context.metrics.pull_failures.labels(self.instance).inc()
                delay = self.backoff_delay(self.failures)
                self.log.warning("pull failed; reconnecting", extra={"error": repr(exc), "retry_in": round(delay, 2), "failures": self.failures})
                await _quietly(self.close())
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:  # closing a broken connection may fail too; we reconnect anyway
        pass
