"""The worker: two loops (process events, dispatch records), running up to ``concurrency`` events and
``dispatch_concurrency`` records at once as asyncio tasks. Idle loops sleep until woken (in-process ingest, or a
Postgres NOTIFY heard by the process's presence) or the poll interval passes. Beside them, when given, a
scheduled poll (``Scheduled``: e.g. Mollie's settlements) runs every ``every`` seconds, the first one an interval
after the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from thred_bridge.service.dispatch import Dispatching
from thred_bridge.service.liveness import Presence, ProcessLostError
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
        give_back: Callable[[T, str], Awaitable[None]],
    ) -> None:
        self.name = name
        self._claim = claim
        self._handle = handle
        self._concurrency = concurrency
        self._wakeup = wakeup
        self._after = after
        self._poll = poll
        self._give_back = give_back
        self._inflight: set[asyncio.Task[str]] = set()
        # Claims are made a batch at a time: once full, the loop claims again when a quarter of its slots are
        # free, not on every completion (a claim per item cost a transaction per item).
        self._batch = max(1, concurrency // 4)
        self._room = asyncio.Event()
        self.handled = 0

    async def run(self, stop: asyncio.Event, *, grace: float) -> None:
        """Claim and handle until ``stop``; then give in-flight items ``grace`` seconds and cancel the rest
        (their claims go back with the process's registration, or when their lease runs out).

        A claim that fills every free slot may have left more behind: the loop claims again as soon as a batch of
        slots is free. One that fills fewer took all that was ready: the loop waits to be woken (new items, a
        record whose children it did not take along, a NOTIFY) or for the poll interval (items due later)."""
        while not stop.is_set():
            free = self._concurrency - len(self._inflight)
            items: Sequence[T] = []
            if free > 0:
                try:
                    items = await self._claim(free)
                except Exception:  # the database blinked: say so, wait, go on
                    log.exception("worker.claim_failed", loop=self.name)
                    await asyncio.sleep(self._poll)
                    continue
            for item in items:
                task = asyncio.create_task(self._one(item))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if free > 0 and len(items) == free:
                await self._until_room(stop)
            else:
                await self._idle(stop)
        await self.drain(grace)

    def _done(self, task: asyncio.Task[str]) -> None:
        self._inflight.discard(task)
        if self._concurrency - len(self._inflight) >= self._batch:
            self._room.set()

    async def _until_room(self, stop: asyncio.Event) -> None:
        self._room.clear()
        if self._concurrency - len(self._inflight) >= self._batch:
            return
        waiters = [asyncio.create_task(self._room.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    async def _idle(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.create_task(self._wakeup.wait(self._poll)), asyncio.create_task(stop.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    async def _one(self, item: T) -> str:
        try:
            outcome = await self._handle(item)
        except ProcessLostError:  # declared dead while it held the item: another process has it now
            outcome = "lost"
        except Exception as exc:  # e.g. the store failed after the work (a deadlock, a dropped connection)
            log.exception("worker.item_crashed", loop=self.name)
            outcome = "crashed"
            try:  # this process renews what it holds: what crashed must be given back, or it is held for ever
                await self._give_back(item, f"internal error ({type(exc).__name__}): {exc}")
            except Exception:  # the store is away: the claim comes back with this process's registration
                log.exception("worker.give_back_failed", loop=self.name)
        self.handled += 1
        self._after(outcome)
        return outcome

    async def drain(self, grace: float) -> None:
        if not self._inflight:
            return
        _done, pending = await asyncio.wait(self._inflight, timeout=grace)
        if pending:
            log.warning("worker.shutdown_cancelled", loop=self.name, items=len(pending), grace=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


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
    """Runs the process and dispatch loops (and the scheduled polls) until ``stop`` is set, then finishes what
    it holds within ``grace`` seconds and gives back the rest.

    With a :class:`Presence`, the loops run under this process's registration: ``make`` builds them for the
    current registration (its owner id and generation). When the process is declared dead (it froze past its
    heartbeat), the loops stop, what they hold is dropped unsent (others took it over), and they are built again
    under the new registration."""

    def __init__(
        self,
        make: Callable[[], tuple[Processing, Dispatching]],
        *,
        concurrency: int,
        dispatch_concurrency: int | None = None,
        poll: float = 0.5,
        events_ready: Signal | None = None,
        records_ready: Signal | None = None,
        on_processed: Callable[[str], None] = lambda _outcome: None,
        scheduled: Sequence[Scheduled] = (),
        presence: Presence | None = None,
        grace: float = 20.0,
    ) -> None:
        self._make = make
        self._concurrency = concurrency
        self._dispatch_concurrency = dispatch_concurrency or concurrency
        self._poll = poll
        self._on_processed = on_processed
        self._presence = presence
        self._grace = grace
        self.scheduled = [s for s in scheduled if s.every > 0]
        self.events_ready = events_ready or Signal()
        self.records_ready = records_ready or Signal()

    def _processed(self, outcome: str) -> None:
        self._on_processed(outcome)
        if outcome == "done":
            self.records_ready.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker.started")
        if self._presence is None:
            await self._run_loops(stop, stop)
        else:
            async with self._presence.attached() as presence:
                while not stop.is_set():
                    lost = presence.lost
                    generation = presence.generation
                    await self._run_loops(stop, lost)
                    if lost.is_set():
                        await presence.next_generation(generation, stop)
        log.info("worker.stopped")

    async def _run_loops(self, stop: asyncio.Event, lost: asyncio.Event) -> None:
        processing, dispatching = self._make()
        halt = asyncio.Event()
        loops: list[_Loop[Any]] = [
            _Loop("process", processing.claim, processing.handle, self._concurrency, self.events_ready,
                  self._processed, self._poll, processing.give_back),
            _Loop("dispatch", dispatching.claim, dispatching.handle, self._dispatch_concurrency, self.records_ready,
                  lambda _outcome: None, self._poll, dispatching.give_back),
        ]  # fmt: skip

        async def watch() -> None:
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            halt.set()

        async with asyncio.TaskGroup() as group:
            group.create_task(watch())
            for loop in loops:
                group.create_task(loop.run(halt, grace=self._grace))
            for task in self.scheduled:
                group.create_task(task.loop(halt))
        await dispatching.settled()  # a record whose send finished is marked sent before the loops are rebuilt
