"""A plan too large for one transaction (a settlement report, a payout of thousands of payments): a
stream of movements is planned to disk in a thread and written a part at a time, each part only while
the worker still holds the event; writing it again (a replay, a worker killed between parts) changes
nothing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from thred_bridge.crypto import Vault
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, Movement, Party, Payout, PayoutItem
from thred_bridge.domain.queue import ClaimedEvent, Connection, Notice
from thred_bridge.errors import TranslationError
from thred_bridge.processors.base import MovementStream
from thred_bridge.service.connections import Connections, NewConnection
from thred_bridge.service.process import Processing
from thred_bridge.store.sql import SqlStore
from thred_bridge.store.tables import record_parents, records

pytestmark = pytest.mark.anyio
AT = datetime(2026, 3, 14, tzinfo=UTC)
CHARGES = 40


def _charge(n: int) -> Charge:
    amount = Money(1000 + n, "EUR")
    return Charge("adyen", f"psp_{n}", amount, Money(10, "EUR"), AT, Party("walkin"), f"order {n}", "visa", f"o{n}")


def _chunks(closed: list[bool], fail_at: int | None) -> Iterator[Sequence[Movement]]:
    charges = [_charge(n) for n in range(CHARGES)]
    for start in range(0, CHARGES, 7):
        if fail_at is not None and start >= fail_at:
            raise TranslationError("the report broke off")
        yield charges[start : start + 7]
    items = tuple(PayoutItem("charge", c.object_id, c.amount, c.fee) for c in charges)
    total = Money(sum(c.amount.minor - c.fee.minor for c in charges), "EUR")
    yield [Payout("adyen", "M_batch_1", total, "paid", AT, items, itemised=True)]


class StreamingProcessor:
    """Returns its movements as a stream (as Adyen does for a settlement report); records each close."""

    name = "adyen"
    media_types = frozenset({"application/json"})

    def __init__(self, fail_at: int | None = None) -> None:
        self.closed: list[bool] = []
        self.fail_at = fail_at

    def verify(self, *_delivery: object) -> Sequence[Notice]:
        raise AssertionError("deliveries are stored directly in this test")

    async def movements(self, event: ClaimedEvent, connection: Connection) -> MovementStream:
        assert event.connection_id == connection.id
        return MovementStream(_chunks(self.closed, self.fail_at), lambda: self.closed.append(True))

    async def aclose(self) -> None:
        return None


def utc_now() -> datetime:
    return datetime.now(UTC)


async def _setup(store: SqlStore) -> tuple[Connections, Connection]:
    connections = Connections(store, Vault(Fernet.generate_key().decode()), utc_now)
    added = await connections.add(NewConnection("adyen", "b-1", {"capture": "delayed"}, ["00" * 32], account="M"))
    async with store.transaction() as tx:
        await tx.add_events(added.id, "adyen", [Notice("rep_1", "REPORT_AVAILABLE", "rep_1", b"{}")], utc_now())
    return connections, added


async def _counts(store: SqlStore) -> tuple[int, int]:
    async with store.engine.connect() as conn:
        n_records = await conn.scalar(select(func.count()).select_from(records))
        n_links = await conn.scalar(select(func.count()).select_from(record_parents))
        await conn.rollback()
    return int(n_records or 0), int(n_links or 0)


def _worker(store: SqlStore, connections: Connections, processor: StreamingProcessor, owner: str) -> Processing:
    return Processing(
        store, connections, {"adyen": processor}, utc_now, owner=owner, max_attempts=5,
        lease=timedelta(seconds=30), records_per_transaction=9,
    )  # fmt: skip


async def test_a_stream_is_planned_and_written_in_parts_then_the_event_is_done(store: SqlStore) -> None:
    connections, added = await _setup(store)
    processor = StreamingProcessor()
    worker = _worker(store, connections, processor, "w1")
    (event,) = await worker.claim(1)
    assert await worker.handle(event) == "done"
    assert processor.closed == [True]
    # 1 walk-in customer + an invoice and a payment per charge + the payout; links: an invoice has its
    # customer, a payment its customer and invoice, the payout its payments
    assert await _counts(store) == (1 + 2 * CHARGES + 1, 4 * CHARGES)
    async with store.transaction() as tx:
        assert (await tx.event_counts(added.id))["done"] == 1
        assert await tx.replay(added.id, utc_now(), event_id="rep_1", failed_only=False) == 1
    (again,) = await worker.claim(1)
    assert await worker.handle(again) == "done"  # planned and written again: nothing changes
    assert await _counts(store) == (1 + 2 * CHARGES + 1, 4 * CHARGES)
    async with store.engine.connect() as conn:
        statuses = set((await conn.execute(select(records.c.status))).scalars())
        await conn.rollback()
    assert statuses == {"pending"}


async def test_a_worker_that_lost_the_event_writes_nothing(store: SqlStore) -> None:
    connections, _ = await _setup(store)
    processor = StreamingProcessor()
    slow, fast = _worker(store, connections, processor, "slow"), _worker(store, connections, processor, "fast")
    (event,) = await slow.claim(1)
    async with store.transaction() as tx:  # its lease ran out and another worker took the event
        assert await tx.renew_event(event.id, "slow", utc_now() - timedelta(seconds=1))
    assert [e.id for e in await fast.claim(1)] == [event.id]
    assert await slow.handle(event) == "lost"
    assert await _counts(store) == (0, 0)  # the first part checks the lease before writing


async def test_a_stream_that_breaks_off_fails_the_event_and_is_closed(store: SqlStore) -> None:
    connections, added = await _setup(store)
    processor = StreamingProcessor(fail_at=14)
    worker = _worker(store, connections, processor, "w1")
    (event,) = await worker.claim(1)
    assert await worker.handle(event) == "failed"
    assert processor.closed == [True]
    assert await _counts(store) == (0, 0)  # planning failed before anything was written
    async with store.transaction() as tx:
        assert "the report broke off" in (await tx.failures(added.id))[0][2]
