"""Calls that arrive while one is under way are made together by the next.

A door whose platform counts calls (VK allows a community 20 a second) or whose registry
call costs a round trip (a shared rate limit) answers many waiting requests with one call:
``await batcher(item)`` hands ``item`` over and returns its own result, or raises its own
error. Nobody waits for a batch to fill: an item arriving alone is a batch of one, and the
items handed over while that call is under way make the next batch.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """``call`` takes a batch (at most ``max_batch`` items, in the order they arrived) and
    returns one result per item: an ``Exception`` instance is that item's error. A call that
    raises gives its error to every item of its batch. ``spawn`` starts the background task
    that makes the calls (an adapter's ``spawn``, so that shutdown awaits it; by default
    the running loop's ``create_task``)."""

    def __init__(self, call: Callable[[list[T]], Awaitable[list[R | Exception]]], max_batch: int,
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] | None = None) -> None:
        self.call = call
        self.max_batch = max(1, max_batch)
        self._spawn = spawn
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._calling: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        return await self.submit(item)

    def submit(self, item: T) -> asyncio.Future[R]:
        """Hand ``item`` over; the future of its result (to share or to shield)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if self._calling is None:  # starts on the loop's next turn: items handed over in this turn join
            self._calling = (self._spawn or loop.create_task)(self._call_waiting())
        return future

    async def _call_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                results: list[R | Exception]
                try:
                    results = await self.call([item for item, _ in batch])
                except Exception as exc:  # the call as a whole failed: each item is told
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results):
                    if future.done():  # its caller was cancelled meanwhile
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._calling = None
