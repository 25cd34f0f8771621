"""Live updates: each gateway process reads the registry queue with its own consumer
group and pushes what arrives to the browsers connected to it (Server-Sent Events).

The group (``inbox-<host>-<pid>`` by default) sees every event once per process, so
every operator sees every complaint whichever process registered it. Events from before
the process started are acknowledged without being shown (the page shows them already).
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from gateway.registry import Registry
from gateway.registry.base import EVENT_KINDS

log = logging.getLogger("complaint_gateway.inbox.live")

ACTION_EVENTS = ("claim", "reply", "close", "reopen", "note")


@dataclass(slots=True)
class Update:
    """One thing a browser may want to know: a message arrived, a registration changed, or
    its number did not reach the customer."""

    kind: str  # "message" | "state" | "undelivered"
    event_id: str
    complaint: dict[str, Any] | None = None
    message_kind: str = "new"
    registration_number: str | None = None
    state: str | None = None
    assigned_to: str | None = None
    undelivered: bool = False


@dataclass(eq=False, slots=True)
class Subscriber:
    """One connected browser: a bounded queue; ``overflowed`` when it fell behind."""

    queue: asyncio.Queue[Update | None]
    overflowed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class LiveHub:
    """Reads the queue in the background and fans updates out to subscribers."""

    def __init__(self, registry: Registry, group: str, *, batch: int, poll_interval: float,
                 buffer: int, max_subscribers: int) -> None:
        self.registry = registry
        self.group = group
        self.consumer = group
        self.batch = batch
        self.poll_interval = poll_interval
        self.buffer = buffer
        self.max_subscribers = max_subscribers
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.failures = 0
        self._stopping = False

    # -- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="inbox-live")

    async def stop(self) -> None:
        for subscriber in list(self.subscribers):
            self._offer(subscriber, None)
        if self._task is not None:
            # the flag ends the loop even where a client library turns the cancellation
            # into an error of its own (a read cut short reported as a connection error)
            self._stopping = True
            self._task.cancel()
            await asyncio.wait([self._task])  # its end, whatever it ended with; stop() itself stays cancellable
            self._task = None
        try:  # a per-process group is not needed after the process: do not leave it behind
            await self.registry.delete_group(self.group)
        except Exception as exc:
            log.warning("live updates: deleting the group failed", extra={"error": repr(exc)})

    # -- subscribers ------------------------------------------------------------------
    def subscribe(self) -> Subscriber | None:
        """A new subscriber, or None when ``max_subscribers`` are connected already."""
        if self.max_subscribers and len(self.subscribers) >= self.max_subscribers:
            return None
        subscriber = Subscriber(asyncio.Queue(self.buffer))
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def _offer(self, subscriber: Subscriber, update: Update | None) -> None:
        try:
            subscriber.queue.put_nowait(update)
        except asyncio.QueueFull:  # a browser that cannot keep up reconnects and reloads its list
            subscriber.overflowed = True

    # -- reading ----------------------------------------------------------------------
    async def _run(self) -> None:
        await self._catch_up()
        self.ready.set()
        blocking = self.registry.backend in ("redis", "redis_cluster")
        while not self._stopping:
            try:
                events = await self.registry.read_events(self.group, self.consumer, self.batch,
                                                         block_ms=int(self.poll_interval * 1000) if blocking else 0)
                for event in events:
                    update = await self._update(event)
                    if update is not None:
                        for subscriber in list(self.subscribers):
                            self._offer(subscriber, update)
                if events:
                    await self.registry.ack_events(self.group, [e.id for e in events])
                self.failures = 0
                if not events and not blocking:
                    await asyncio.sleep(self.poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the registry may be down for a while: keep trying, with backoff
                if self._stopping:
                    return
                self.failures += 1
                log.warning("live updates: reading the queue failed", extra={"error": repr(exc), "failures": self.failures})
                await asyncio.sleep(min(30.0, self.poll_interval * 2 ** min(self.failures, 6)))

    async def _catch_up(self) -> None:
        """Start the process's own group at the end of the queue: the page shows the backlog."""
        try:
            await self.registry.create_group(self.group, at_end=True)
        except Exception as exc:
            log.warning("live updates: creating the group failed", extra={"error": repr(exc)})

    async def _update(self, event: Any) -> Update | None:
        payload = event.payload or {}
        if event.event in EVENT_KINDS and isinstance(payload.get("complaint"), dict):
            state = None
            if event.event != "new" and event.registration_number:
                state = await self.registry.registration_state(event.registration_number)
            return Update("message", event.id, complaint=payload["complaint"], message_kind=event.event,
                          registration_number=event.registration_number,
                          state=(state or {}).get("state", "open"), assigned_to=(state or {}).get("assigned_to"),
                          undelivered=bool((state or {}).get("acknowledgement_failed")))
        if event.event in ACTION_EVENTS:
            record = payload.get("action") or {}
            return Update("state", event.id, registration_number=event.registration_number,
                          state=record.get("state"), assigned_to=record.get("assigned_to"))
        if event.event == "acknowledgement_failed":
            return Update("undelivered", event.id, registration_number=event.registration_number)
        return None


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One Server-Sent Event; the data is one line of JSON, so no line can break the frame."""
    lines = []
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode("utf-8")
