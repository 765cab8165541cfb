"""Inbox → movements → records → outbox. One event at a time per processor object.

Fetching and translating happen outside any transaction; the outbox rows and "event done" commit
together, so a worker killed at any point leaves either nothing or everything of that step.

A plan larger than ``RECORDS_PER_TRANSACTION`` (a payout of thousands of payments, a settlement report) is
written in several transactions, the last of which marks the event done: one transaction of 100,000
records would hold SQLite's only write lock for seconds, and webhooks could not be stored meanwhile.
That is safe because writing a record is idempotent (its external id; the first plan kept): a worker
killed between them leaves some records queued and the event unfinished, its lease runs out, and the
event planned again writes the same records, the ones already there untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from itertools import islice

import structlog

from thred_bridge.domain.movements import Movement
from thred_bridge.domain.queue import ClaimedEvent, Connection
from thred_bridge.domain.records import Record, records_for
from thred_bridge.domain.retry import next_due
from thred_bridge.errors import TRANSIENT, BridgeError, UnknownConnectionError, describe, retry_after_of
from thred_bridge.processors.base import MovementStream, Processor
from thred_bridge.service.connections import Connections
from thred_bridge.service.planned import PlannedRecords, plan_stream
from thred_bridge.service.ports import Clock, Store

log = structlog.get_logger("thred_bridge.process")

RECORDS_PER_TRANSACTION = 2_000
PLAN_IN_THREAD_ABOVE = 1_000


class Processing:
    """Claims due events and turns each into outbox records."""

    def __init__(
        self,
        store: Store,
        connections: Connections,
        processors: Mapping[str, Processor],
        clock: Clock,
        *,
        owner: str,
        max_attempts: int,
        lease: timedelta,
        records_per_transaction: int = RECORDS_PER_TRANSACTION,
        on_fetch: Callable[[str, str, float], None] = lambda _processor, _outcome, _seconds: None,
    ) -> None:
        """``on_fetch(processor, outcome, seconds)`` hears how each read of a processor's API went: ``ok``,
        ``transient`` (to be retried) or ``refused``."""
        self._store = store
        self._connections = connections
        self._processors = processors
        self._clock = clock
        self.owner = owner
        self._max_attempts = max_attempts
        self._lease = lease
        self._records_per_transaction = records_per_transaction
        self._on_fetch = on_fetch

    async def claim(self, limit: int) -> list[ClaimedEvent]:
        async with self._store.transaction() as tx:
            return await tx.claim_events(self.owner, self._clock(), limit, self._lease)

    async def handle(self, event: ClaimedEvent) -> str:
        """Process one claimed event; returns its outcome (done, retry, failed, lost). The lease is renewed
        while it runs, so an event that takes longer than one lease (a payout of many thousand charges) is
        not claimed again by another worker meanwhile; a worker that dies stops renewing, and its lease
        runs out as before."""
        async with self._renewing(event):
            return await self._handle(event)

    async def give_back(self, event: ClaimedEvent, error: str) -> None:
        """After a crash outside the event's own error handling (the store failed as it finished): back in the
        queue with backoff, so a live process that renews its claims does not hold it for ever."""
        due = next_due(event.attempts, self._clock(), random.random(), None)
        async with self._store.transaction() as tx:
            await tx.retry_event(event.id, self.owner, due, error)

    @contextlib.asynccontextmanager
    async def _renewing(self, event: ClaimedEvent) -> AsyncIterator[None]:
        done = asyncio.Event()
        renewer = asyncio.create_task(self._renew(event, done))
        try:
            yield
        finally:
            done.set()
            await renewer

    async def _renew(self, event: ClaimedEvent, done: asyncio.Event) -> None:
        every = self._lease.total_seconds() / 3
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), every)
            if done.is_set():
                return
            try:
                async with self._store.transaction() as tx:
                    held = await tx.renew_event(event.id, self.owner, self._clock() + self._lease)
            except Exception as exc:  # the database blinked: the next round tries again
                log.warning("event.renew_failed", event_id=event.event_id, error=describe(exc))
                continue
            if not held:
                log.warning("event.lease_lost", event_id=event.event_id)
                return

    async def _handle(self, event: ClaimedEvent) -> str:
        bound = log.bind(event_id=event.event_id, type=event.event_type, connection=event.connection_id)
        try:
            connection = await self._connections.get(event.connection_id, include_removed=True)
            if not connection.active:
                raise UnknownConnectionError(f"connection {connection.id} was removed")
            if event.account and event.account != connection.account:
                routed = await self._connections.for_account(event.processor, event.account)
                if routed is None:
                    return await self._unroute(event)
                connection = routed
            planned = await _plan(await self._movements(event, connection))
        except TRANSIENT as exc:
            if event.attempts >= self._max_attempts:
                return await self._fail(event, f"gave up after {event.attempts} attempts: {describe(exc)}")
            due = next_due(event.attempts, self._clock(), random.random(), retry_after_of(exc))
            bound.info("event.retry", error=describe(exc), due=due.isoformat())
            async with self._store.transaction() as tx:
                kept = await tx.retry_event(event.id, self.owner, due, describe(exc))
            return "retry" if kept else "lost"
        except BridgeError as exc:
            return await self._fail(event, describe(exc))
        except Exception as exc:
            bound.exception("event.crashed")
            return await self._fail(event, f"internal error ({type(exc).__name__}): {exc}")
        try:
            kept = await self._finish(event, planned, connection.id)
        finally:
            if isinstance(planned, PlannedRecords):
                planned.close()
        bound.info("event.done", records=len(planned)) if kept else bound.warning("event.lease_lost")
        return "done" if kept else "lost"

    async def _movements(self, event: ClaimedEvent, connection: Connection) -> Sequence[Movement] | MovementStream:
        started = time.perf_counter()
        outcome = "refused"
        try:
            moved = await self._processors[event.processor].movements(event, connection)
            outcome = "ok"
            return moved
        except TRANSIENT:
            outcome = "transient"
            raise
        finally:
            self._on_fetch(event.processor, outcome, time.perf_counter() - started)

    async def _finish(self, event: ClaimedEvent, planned: Iterable[Record], connection_id: str) -> bool:
        """Queue the records and mark the event done; a large plan in several transactions (module doc),
        each first checking (and renewing) the lease, so a worker that lost it stops writing."""
        size = self._records_per_transaction
        records = iter(planned)

        async def take(n: int) -> list[Record]:
            if isinstance(planned, PlannedRecords):  # file reads and JSON decoding: off the event loop
                return await asyncio.to_thread(_take, records, n)
            return _take(records, n)

        part = await take(size)
        while following := await take(1):  # one more record: this part is not the last
            async with self._store.transaction() as tx:
                if not await tx.renew_event(event.id, self.owner, self._clock() + self._lease):
                    return False
                await tx.add_records(connection_id, part, event.id, self._clock())
            part = following + await take(size - 1)
        async with self._store.transaction() as tx:
            return await tx.finish_event(event.id, self.owner, self._clock(), part, connection_id)

    async def _unroute(self, event: ClaimedEvent) -> str:
        error = (
            f"no connection maps {event.processor} account {event.account}: "
            f"add one with `thred-bridge connections add {event.processor} --account {event.account} …`"
        )
        log.info("event.unrouted", event_id=event.event_id, account=event.account)
        async with self._store.transaction() as tx:
            kept = await tx.unroute_event(event.id, self.owner, error)
        return "unrouted" if kept else "lost"

    async def _fail(self, event: ClaimedEvent, error: str) -> str:
        log.warning("event.failed", event_id=event.event_id, error=error)
        async with self._store.transaction() as tx:
            kept = await tx.fail_event(event.id, self.owner, error)
        return "failed" if kept else "lost"


async def _plan(moved: Sequence[Movement] | MovementStream) -> Sequence[Record] | PlannedRecords:
    """The records the movements need. Planning is CPU work (~50 µs a movement), so a large plan runs in a
    thread, leaving the event loop to webhooks and the dispatch; a stream is planned to disk."""
    if isinstance(moved, MovementStream):
        return await asyncio.to_thread(plan_stream, moved)
    if len(moved) > PLAN_IN_THREAD_ABOVE:
        return await asyncio.to_thread(records_for, moved)
    return records_for(moved)


def _take(records: Iterator[Record], n: int) -> list[Record]:
    return list(islice(records, n))
