"""Batcher: calls that arrive while one is under way are made together by the next, each
caller getting its own result or its own error."""
from __future__ import annotations

import asyncio

import pytest

from gateway.batching import Batcher


async def test_items_arriving_together_and_meanwhile_make_batches_each_caller_its_own_result() -> None:
    calls: list[list[int]] = []

    async def double(items: list[int]) -> list[int | Exception]:
        calls.append(items)
        await asyncio.sleep(0.01)
        return [ValueError(f"odd {i}") if i % 2 else i * 2 for i in items]

    batcher: Batcher[int, int] = Batcher(double, max_batch=3)
    first = [asyncio.ensure_future(batcher(i)) for i in (2, 4, 6, 8)]  # three, then one
    await asyncio.sleep(0.005)
    meanwhile = [asyncio.ensure_future(batcher(i)) for i in (10, 11)]
    assert await asyncio.gather(*first) == [4, 8, 12, 16]
    results = await asyncio.gather(*meanwhile, return_exceptions=True)
    assert results[0] == 20 and isinstance(results[1], ValueError) and str(results[1]) == "odd 11"
    assert calls == [[2, 4, 6], [8, 10, 11]]
    assert await batcher(12) == 24  # alone: a batch of one, at once
    assert calls[-1] == [12]


async def test_a_call_that_fails_as_a_whole_fails_each_item_and_a_cancelled_caller_is_skipped() -> None:
    async def down(items: list[str]) -> list[str | Exception]:
        await asyncio.sleep(0.01)
        raise ConnectionError("platform down")

    batcher: Batcher[str, str] = Batcher(down, max_batch=10)
    waiting = [asyncio.ensure_future(batcher(name)) for name in ("a", "b", "c")]
    await asyncio.sleep(0.001)
    waiting[1].cancel()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], ConnectionError) and isinstance(results[2], ConnectionError)
    assert isinstance(results[1], asyncio.CancelledError)
    with pytest.raises(ConnectionError, match="platform down"):
        await batcher("d")  # the batcher goes on after a failed call
