"""SQLite's in-process writer lock: one holder at a time, urgent waiters first, cancelled waiters skipped."""

from __future__ import annotations

import asyncio

import pytest

from thred_bridge.store.writer_lock import WriterLock


def test_urgent_waiters_go_before_ordinary_ones_who_keep_their_order() -> None:
    order: list[str] = []

    async def main() -> None:
        lock = WriterLock()
        gate = asyncio.Event()

        async def holder(name: str, *, urgent: bool = False) -> None:
            async with lock.hold(urgent=urgent):
                order.append(name)
                if name == "first":
                    await gate.wait()

        first = asyncio.create_task(holder("first"))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(holder(n)) for n in ("claim", "retry")]
        await asyncio.sleep(0)
        waiting.append(asyncio.create_task(holder("webhook", urgent=True)))
        await asyncio.sleep(0)
        assert lock.locked
        gate.set()
        await asyncio.gather(first, *waiting)
        assert not lock.locked

    asyncio.run(main())
    assert order == ["first", "webhook", "claim", "retry"]


def test_a_waiter_cancelled_in_the_queue_is_skipped_and_the_lock_stays_usable() -> None:
    async def main() -> list[str]:
        lock = WriterLock()
        got: list[str] = []
        release = asyncio.Event()

        async def hold(name: str) -> None:
            async with lock.hold():
                got.append(name)
                if name == "a":
                    await release.wait()

        a = asyncio.create_task(hold("a"))
        await asyncio.sleep(0)
        b = asyncio.create_task(hold("b"))
        c = asyncio.create_task(hold("c"))
        await asyncio.sleep(0)
        b.cancel()
        release.set()
        await asyncio.gather(a, c)
        with pytest.raises(asyncio.CancelledError):
            await b
        assert not lock.locked
        async with lock.hold(urgent=True):
            got.append("d")
        return got

    assert asyncio.run(main()) == ["a", "c", "d"]


def test_a_waiter_cancelled_as_it_is_handed_the_lock_passes_it_on() -> None:
    async def main() -> list[str]:
        lock = WriterLock()
        got: list[str] = []

        async def hold(name: str) -> None:
            async with lock.hold():
                got.append(name)

        async with lock.hold():
            b = asyncio.create_task(hold("b"))
            c = asyncio.create_task(hold("c"))
            await asyncio.sleep(0)
        b.cancel()  # b's future is already done (handed the lock) but b has not run yet
        await asyncio.gather(b, c, return_exceptions=True)
        assert not lock.locked
        return got

    assert asyncio.run(main()) == ["c"]
