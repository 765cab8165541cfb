"""The worker: two loops (process events, dispatch records), each running up to ``concurrency`` items
at once as asyncio tasks. Idle loops sleep until woken (in-process ingest) or the poll interval passes
(deliveries stored by other processes). Beside them, when given, a scheduled poll (``Scheduled``: e.g.
Mollie's settlements) runs every ``every`` seconds, the first one an interval after the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from thred_bridge.service.dispatch import Dispatching
from thred_bridge.service.process import Processing

T = TypeVar("T")
log = structlog.get_logger("thred_bridge.worker")


class Signal:
    """An asyncio.Event that can be set from the ingest path; ``wait`` returns early when set."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()


class _Loop(Generic[T]):
    def __init__(
        self,
        name: str,
        claim: Callable[[int], Awaitable[Sequence[T]]],
        handle: Callable[[T], Awaitable[str]],
        concurrency: int,
        wakeup: Signal,
        after: Callable[[str], None],
        poll: float,
    ) -> None:
        self.name = name
        self._claim = claim
        self._handle = handle
        self._concurrency = concurrency
        self._wakeup = wakeup
        self._after = after
        self._poll = poll
        self._inflight: set[asyncio.Task[str]] = set()
        self.handled = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            free = self._concurrency - len(self._inflight)
            items: Sequence[T] = []
            if free > 0:
                try:
                    items = await self._claim(free)
                except Exception:  # the database blinked: say so, wait, go on
                    log.exception("worker.claim_failed", loop=self.name)
                    await asyncio.sleep(self._poll)
            for item in items:
                task = asyncio.create_task(self._one(item))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if items and len(items) == free:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            elif not items:
                await self._idle(stop)
        await self.drain()

    async def _idle(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.create_task(self._wakeup.wait(self._poll)), asyncio.create_task(stop.wait())]
        await asyncio.wait([*waiters, *self._inflight], return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    async def _one(self, item: T) -> str:
        try:
            outcome = await self._handle(item)
        except Exception:  # e.g. the store failed after the work: the item's lease runs out and it is retried
            log.exception("worker.item_crashed", loop=self.name)
            outcome = "crashed"
        self.handled += 1
        self._after(outcome)
        return outcome

    async def drain(self) -> None:
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Scheduled:
    """Something to run every ``every`` seconds (> 0), each wait stretched by up to ``jitter`` of it, so that
    several workers started together do not all ask at once."""

    name: str
    every: float
    run: Callable[[], Awaitable[object]]
    jitter: float = 0.1

    async def loop(self, stop: asyncio.Event) -> None:
        while True:
            delay = self.every * (1 + self.jitter * random.random())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            try:
                await self.run()
            except Exception:  # the database blinked: say so, try again at the next tick
                log.exception("worker.scheduled_failed", task=self.name)


class Worker:
    """Runs the process and dispatch loops (and the scheduled polls) until ``stop`` is set, then finishes
    what it holds."""

    def __init__(
        self,
        processing: Processing,
        dispatching: Dispatching,
        *,
        concurrency: int,
        poll: float = 0.5,
        events_ready: Signal | None = None,
        records_ready: Signal | None = None,
        on_processed: Callable[[str], None] = lambda _outcome: None,
        scheduled: Sequence[Scheduled] = (),
    ) -> None:
        self._on_processed = on_processed
        self.scheduled = [s for s in scheduled if s.every > 0]
        self.events_ready = events_ready or Signal()
        self.records_ready = records_ready or Signal()
        self.process_loop = _Loop(
            "process", processing.claim, processing.handle, concurrency, self.events_ready,
            self._processed, poll,
        )  # fmt: skip
        self.dispatch_loop = _Loop(
            "dispatch", dispatching.claim, dispatching.handle, concurrency, self.records_ready,
            lambda _outcome: None, poll,
        )  # fmt: skip

    def _processed(self, outcome: str) -> None:
        self._on_processed(outcome)
        if outcome == "done":
            self.records_ready.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker.started")
        async with asyncio.TaskGroup() as group:
            group.create_task(self.process_loop.run(stop))
            group.create_task(self.dispatch_loop.run(stop))
            for task in self.scheduled:
                group.create_task(task.loop(stop))
        log.info("worker.stopped")
