"""GroupCommit: what is handed in while a flush runs is flushed together in the next one, each caller gets its
own result, a failed flush fails exactly its callers, and a caller cancelled after handing in is still written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from thred_bridge.service.batching import GroupCommit

pytestmark = pytest.mark.anyio


class Flusher:
    def __init__(self, *, fail_on: int | None = None, delay: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.delay = delay

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"database blinked at {self.fail_on}")
        return [item * 10 for item in items]


async def test_callers_arriving_during_a_flush_share_the_next_one() -> None:
    flusher = Flusher()
    commit = GroupCommit(flusher)
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0.001)  # its flush is running
    results = await asyncio.gather(first, *(commit.submit(n) for n in range(1, 50)))
    assert results == [n * 10 for n in range(50)]
    assert flusher.batches == [[0], list(range(1, 50))], "the first alone, then all that came while it ran"
    assert commit.flushes == 2


async def test_an_idle_caller_waits_for_no_batch() -> None:
    flusher = Flusher(delay=0)
    commit = GroupCommit(flusher)
    for n in range(3):
        assert await commit.submit(n) == n * 10
    assert flusher.batches == [[0], [1], [2]]


async def test_batches_are_capped() -> None:
    flusher = Flusher()
    commit = GroupCommit(flusher, max_items=8)
    await asyncio.gather(*(commit.submit(n) for n in range(30)))
    assert max(len(batch) for batch in flusher.batches) == 8


async def test_a_failed_flush_fails_its_callers_only() -> None:
    flusher = Flusher(fail_on=1)
    commit = GroupCommit(flusher)
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0)
    doomed = [asyncio.create_task(commit.submit(n)) for n in (1, 2)]  # flushed together, after the first
    await first
    for task in doomed:
        with pytest.raises(RuntimeError, match="blinked at 1"):
            await task
    assert await commit.submit(3) == 30, "the next flush runs as usual"


async def test_a_caller_cancelled_after_handing_in_is_still_written() -> None:
    flusher = Flusher(delay=0.05)
    commit = GroupCommit(flusher)
    task = asyncio.create_task(commit.submit(7))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await commit.settled()
    assert flusher.batches == [[7]]
