"""The store's queues on SQLite and Postgres: dedupe, claims, leases, parents, failure and replay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import make_url

from thred_bridge.domain.queue import Notice
from thred_bridge.domain.records import Record, Ref
from thred_bridge.store import schema
from thred_bridge.store.outbox_sql import CLAIM_WINDOW, STREAM_PARENTS_ABOVE
from thred_bridge.store.sql import ANALYZE_AFTER, SqlStore
from thred_bridge.store.tables import record_parents, records

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def notice(event_id: str, key: str = "ch_1", *, handled: bool = True) -> Notice:
    return Notice(event_id, "charge.succeeded", key, b'{"id": "%s"}' % event_id.encode(), handled=handled)


async def add(store: SqlStore, *notices: Notice, conn: str = "conn_a") -> int:
    async with store.transaction() as tx:
        if await tx.connection_row(conn) is None:
            row = {"id": conn, "processor": "stripe", "business_id": "b-1", "account": None, "label": None}
            await tx.add_connection({**row, "credentials": "x", "webhook_secrets": "x", "created_at": NOW})
        return await tx.add_events(conn, "stripe", notices, NOW)


def chain(charge: str) -> list[Record]:
    customer = Record("customer", "stripe_cus_1", {"external_id": "stripe_cus_1"})
    invoice = Record(
        "invoice", f"stripe_{charge}", {"external_id": f"stripe_{charge}", "customer_id": None},
        parents={"customer_id": Ref("customer", "stripe_cus_1")},
    )  # fmt: skip
    payment = Record(
        "payment",
        f"stripe_{charge}",
        {"customer_id": None, "allocations": [{"invoice_id": None, "amount_cents": 100}]},
        parents={
            "customer_id": Ref("customer", "stripe_cus_1"),
            "allocations.0.invoice_id": Ref("invoice", f"stripe_{charge}"),
        },
        idempotency_key=f"stripe_{charge}",
    )
    return [customer, invoice, payment]


async def test_duplicate_event_is_a_no_op(store: SqlStore) -> None:
    assert await add(store, notice("evt_1")) == 1
    assert await add(store, notice("evt_1")) == 0
    assert await add(store, notice("evt_1"), conn="conn_b") == 1  # another connection's namespace
    assert await add(store, notice("evt_2", handled=False)) == 1
    async with store.transaction() as tx:
        counts = await tx.event_counts("conn_a")
    assert counts["pending"] == 1
    assert counts["ignored"] == 1


async def test_one_object_is_never_claimed_twice(store: SqlStore) -> None:
    await add(store, notice("evt_1", "ch_1"), notice("evt_2", "ch_1"), notice("evt_3", "ch_2"))
    async with store.transaction() as tx:
        first = await tx.claim_events("w1", NOW, 10, LEASE)
    assert sorted(e.event_id for e in first) == ["evt_1", "evt_3"]
    async with store.transaction() as tx:
        assert await tx.claim_events("w2", NOW, 10, LEASE) == []  # evt_2 waits for ch_1's lease
        assert await tx.finish_event(first[0].id, "w1", NOW, [], "conn_a")
    async with store.transaction() as tx:
        second = await tx.claim_events("w2", NOW, 10, LEASE)
    assert [e.event_id for e in second] == ["evt_2"]
    assert second[0].attempts == 1


async def test_concurrent_workers_never_share_an_object(database_url: str) -> None:
    stores = [SqlStore(schema.async_engine(database_url)) for _ in range(3)]
    try:
        await add(stores[0], *(notice(f"evt_{i}", f"ch_{i % 5}") for i in range(60)))
        holding: dict[str, str] = {}
        done: list[str] = []

        async def work(index: int) -> None:
            owner = f"w{index}"
            for _ in range(200):
                async with stores[index].transaction() as tx:
                    claimed = await tx.claim_events(owner, NOW, 3, LEASE)
                if not claimed and len(done) == 60:
                    return
                for event in claimed:
                    assert event.object_key not in holding, "two workers hold one object"
                    holding[event.object_key] = owner
                await asyncio.sleep(0)
                for event in claimed:
                    del holding[event.object_key]
                    async with stores[index].transaction() as tx:
                        assert await tx.finish_event(event.id, owner, NOW, [], "conn_a")
                    done.append(event.event_id)

        await asyncio.gather(*(work(i) for i in range(3)))
        assert sorted(done) == sorted(f"evt_{i}" for i in range(60))
    finally:
        for s in stores:
            await s.aclose()


async def test_expired_lease_moves_to_another_worker(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    async with store.transaction() as tx:
        (event,) = await tx.claim_events("dead", NOW, 1, LEASE)
    later = NOW + LEASE + timedelta(seconds=1)
    async with store.transaction() as tx:
        (again,) = await tx.claim_events("alive", later, 1, LEASE)
    assert again.id == event.id
    assert again.attempts == 2
    async with store.transaction() as tx:
        assert not await tx.finish_event(event.id, "dead", later, [], "conn_a")  # the dead owner lost it
        assert await tx.finish_event(again.id, "alive", later, chain("ch_1"), "conn_a")


async def test_a_renewed_lease_is_not_taken(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    async with store.transaction() as tx:
        (event,) = await tx.claim_events("busy", NOW, 1, LEASE)
    later = NOW + LEASE + timedelta(seconds=1)
    async with store.transaction() as tx:
        assert await tx.renew_event(event.id, "busy", later + LEASE)  # still working on it
        assert not await tx.renew_event(event.id, "someone-else", later + LEASE)
    async with store.transaction() as tx:
        assert await tx.claim_events("other", later, 1, LEASE) == []
    much_later = later + 2 * LEASE
    async with store.transaction() as tx:
        (again,) = await tx.claim_events("other", much_later, 1, LEASE)  # it stopped renewing: dead
        assert again.id == event.id
        assert not await tx.renew_event(event.id, "busy", much_later + LEASE)
        assert not await tx.finish_event(event.id, "busy", much_later, [], "conn_a")


async def test_many_records_at_once_keep_first_plans_and_latest_payout(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    charges = [f"ch_{i}" for i in range(1200)]  # more than one multi-row statement's worth
    planned = [r for charge in charges for r in chain(charge)]
    payout = Record(
        "payout", "stripe_po_1", {"paid_out_amount_cents": 1},
        parents={f"payment_ids.{i}": Ref("payment", f"stripe_{c}") for i, c in enumerate(charges)},
        updatable=True,
    )  # fmt: skip
    newer = Record("payout", "stripe_po_1", {"paid_out_amount_cents": 2}, parents=payout.parents, updatable=True)
    async with store.transaction() as tx:
        await tx.add_records("conn_a", [*planned, payout, newer], None, NOW)
        await tx.add_records("conn_a", [*planned, newer], None, NOW)  # again: nothing changes
        counts = await tx.record_counts("conn_a")
        bodies = (await tx.conn.execute(select(records.c.body).where(records.c.kind == "payout"))).scalars().all()
        links = await tx.conn.scalar(select(func.count()).select_from(record_parents))
    assert counts["pending"] == 1 + 2 * 1200 + 1  # one shared customer, an invoice and a payment each, the payout
    assert [orjson.loads(b) for b in bodies] == [{"paid_out_amount_cents": 2}]
    assert links == 1200 + 1200 * 2 + 1200  # invoice → customer; payment → customer, invoice; payout → payments
    async with store.transaction() as tx:
        (customer,) = await tx.claim_records("w", NOW, 10, LEASE)
        assert customer.kind == "customer"
        invoices = await tx.claim_records("w", NOW + timedelta(seconds=1), 5000, LEASE, ids=None)
        assert invoices == []  # nothing is ready until the customer is sent
        children = await tx.record_sent(customer.id, "cus-thred", NOW)
    assert len(children) == 2 * 1200  # every invoice and payment names the customer


async def test_a_payout_of_thousands_of_payments_is_claimed_with_every_id(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    payments = [Record("payment", f"stripe_ch_{i}", {"amount_cents": 1}) for i in range(1500)]  # read in pages
    payout = Record(
        "payout", "stripe_po_1", {"payment_ids": [None] * 1500},
        parents={f"payment_ids.{i}": Ref("payment", p.external_id) for i, p in enumerate(payments)},
        updatable=True,
    )  # fmt: skip
    async with store.transaction() as tx:
        await tx.add_records("conn_a", [*payments, payout], None, NOW)
        await tx.conn.execute(
            update(records)
            .where(records.c.kind == "payment")
            .values(status="sent", thred_id="t-" + records.c.external_id)
        )
        (claimed,) = await tx.claim_records("w", NOW, 10, LEASE)
    assert claimed.kind == "payout"
    assert len(claimed.resolved) == 1500
    assert claimed.resolved["payment_ids.1499"] == "t-stripe_ch_1499"
    assert len(orjson.dumps({k: [r.kind, r.external_id] for k, r in payout.parents.items()})) > STREAM_PARENTS_ABOVE


async def test_a_parent_at_two_paths_fills_both_and_its_url_parent_is_apart(store: SqlStore) -> None:
    """Links are kept per path: one parent named twice fills both, and a record waiting on it twice is found
    once; the parent in the URL is the claim's parent_id, not a path of the body."""
    await add(store, notice("evt_1"))
    invoice = Record("invoice", "stripe_in_1", {"n": 1})
    refund = Record(
        "refund", "stripe_re_1", {"invoice_id": None, "metadata": {"invoice": None}},
        parents={"invoice_id": Ref("invoice", "stripe_in_1"), "metadata.invoice": Ref("invoice", "stripe_in_1")},
    )  # fmt: skip
    refund_payment = Record(
        "refund_payment", "stripe_re_1", {"amount_cents": 1}, parent_path=Ref("refund", "stripe_re_1")
    )
    async with store.transaction() as tx:
        await tx.add_records("conn_a", [invoice, refund, refund_payment], None, NOW)
        (first,) = await tx.claim_records("w", NOW, 10, LEASE)
        waiting = await tx.record_sent(first.id, "t-in", NOW)
        (claimed,) = await tx.claim_records("w", NOW, 10, LEASE, ids=waiting)
        assert (len(waiting), claimed.kind) == (1, "refund")
        assert claimed.resolved == {"invoice_id": "t-in", "metadata.invoice": "t-in"}
        assert claimed.parent_id is None
        waiting = await tx.record_sent(claimed.id, "t-re", NOW)
        (last,) = await tx.claim_records("w", NOW, 10, LEASE, ids=waiting)
    assert (last.kind, last.resolved, last.parent_id) == ("refund_payment", {}, "t-re")


async def test_a_payout_that_settles_other_payments_for_the_same_body_is_sent_again(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    body = {"payment_ids": [None], "paid_out_amount_cents": 1}
    first = Record("payout", "stripe_po_1", body, parents={"payment_ids.0": Ref("payment", "a")}, updatable=True)
    other = Record("payout", "stripe_po_1", body, parents={"payment_ids.0": Ref("payment", "b")}, updatable=True)
    async with store.transaction() as tx:
        await tx.add_records("conn_a", [first], None, NOW)
        await tx.conn.execute(update(records).values(status="sent", thred_id="t-po"))
        await tx.add_records("conn_a", [other], None, NOW)
        status = await tx.conn.scalar(select(records.c.status))
        linked = (await tx.conn.execute(select(record_parents.c.external_id))).scalars().all()
    assert (status, linked) == ("pending", ["b"])


async def test_a_claim_reaches_ready_records_behind_many_waiting_ones(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    waiting = [
        Record(
            "invoice", f"stripe_ch_{i}", {"customer_id": None}, parents={"customer_id": Ref("customer", "stripe_cus_x")}
        )
        for i in range(3 * CLAIM_WINDOW)
    ]  # their customer is not even queued: they wait, and they are due first
    ready = [Record("customer", f"stripe_cus_{i}", {"external_id": f"stripe_cus_{i}"}) for i in range(5)]
    async with store.transaction() as tx:
        await tx.add_records("conn_a", waiting, None, NOW)
        await tx.add_records("conn_a", ready, None, NOW + timedelta(seconds=1))
        claimed = await tx.claim_records("w", NOW + timedelta(seconds=2), 10, LEASE)
    assert sorted(r.external_id for r in claimed) == sorted(r.external_id for r in ready)


async def test_a_large_plan_leaves_the_outbox_analysed(store: SqlStore) -> None:
    """Postgres plans claims from statistics: a transaction that queued many records refreshes them (without,
    a claim's pick was a hash anti-join over every parent link); SQLite has nothing to do."""
    await add(store, notice("evt_1"))
    planned = [
        Record(
            "invoice", f"stripe_ch_{i}", {"customer_id": None}, parents={"customer_id": Ref("customer", "stripe_cus_1")}
        )
        for i in range(ANALYZE_AFTER)
    ]
    async with store.transaction() as tx:
        await tx.add_records("conn_a", planned, None, NOW)
        assert tx.queued == ANALYZE_AFTER
    if store.dialect != "postgresql":
        return
    async with store.engine.connect() as conn:
        analysed: Sequence[Any] = (
            await conn.exec_driver_sql(
                "SELECT relname, reltuples FROM pg_class WHERE relname IN ('records', 'record_parents')"
            )
        ).all()
        await conn.rollback()
    assert {row[0]: row[1] >= ANALYZE_AFTER for row in analysed} == {"records": True, "record_parents": True}


@pytest.mark.postgres
async def test_a_record_leased_between_window_and_pick_is_not_claimed_again(empty_postgres_url: str) -> None:
    """A claim reads its window without locks, then picks and locks. Another claim that leased one of the
    window's records and committed in between must win: the pick tests the lease again (Postgres re-tests it
    on the row's newest version). Without that, 15-20 of 99,800 records were sent twice on Postgres."""
    store = SqlStore(schema.async_engine(empty_postgres_url))
    competing = psycopg.connect(make_url(empty_postgres_url).set(drivername="postgresql").render_as_string(False))
    leased: list[str] = []

    def lease_it_first(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FOR UPDATE SKIP LOCKED" in statement and not leased:  # the pick, after the window was read
            competing.execute("UPDATE records SET locked_until = %s, attempts = attempts + 1", (NOW + LEASE,))
            competing.commit()
            leased.append("by another worker")

    try:
        await add(store, notice("evt_1"))
        async with store.transaction() as tx:
            await tx.add_records("conn_a", [Record("customer", "stripe_cus_1", {"n": 1})], None, NOW)
        event.listen(store.engine.sync_engine, "before_cursor_execute", lease_it_first)
        async with store.transaction() as tx:
            claimed = await tx.claim_records("w", NOW, 10, LEASE)
        assert leased == ["by another worker"]
        assert claimed == []
    finally:
        competing.close()
        await store.aclose()


async def test_records_wait_for_their_parents(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    async with store.transaction() as tx:
        (event,) = await tx.claim_events("w", NOW, 1, LEASE)
        # the invoice and payment arrive before the customer record exists: they must wait
        await tx.finish_event(event.id, "w", NOW, list(reversed(chain("ch_1")))[:2], "conn_a")
        assert await tx.claim_records("w", NOW, 10, LEASE) == []
        await tx.add_records("conn_a", chain("ch_1"), event.id, NOW)  # the same records again: kept once
        (customer,) = await tx.claim_records("w", NOW, 10, LEASE)
    assert customer.kind == "customer"
    assert customer.resolved == {}
    async with store.transaction() as tx:
        children = await tx.record_sent(customer.id, "t-cust", NOW)
        ready = await tx.claim_records("w", NOW, 10, LEASE, ids=children)
    assert [r.kind for r in ready] == ["invoice"]  # the payment still waits for the invoice
    assert ready[0].resolved == {"customer_id": "t-cust"}
    async with store.transaction() as tx:
        children = await tx.record_sent(ready[0].id, "t-inv", NOW)
        (payment,) = await tx.claim_records("w", NOW, 10, LEASE, ids=children)
    assert payment.resolved == {"customer_id": "t-cust", "allocations.0.invoice_id": "t-inv"}
    assert payment.idempotency_key == "stripe_ch_1"
    async with store.transaction() as tx:
        mapping = await tx.mapping("conn_a")
    assert [(m.kind, m.status) for m in mapping] == [("payment", "pending"), ("invoice", "sent"), ("customer", "sent")]


async def test_failed_record_fails_its_event_and_replay_requeues_both(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    async with store.transaction() as tx:
        (event,) = await tx.claim_events("w", NOW, 1, LEASE)
        await tx.finish_event(event.id, "w", NOW, chain("ch_1")[:1], "conn_a")
        (record,) = await tx.claim_records("w", NOW, 1, LEASE)
        await tx.fail_record(record.id, "Thred 400 validation_error: bad email")
    async with store.transaction() as tx:
        assert await tx.failures("conn_a") == [("evt_1", "charge.succeeded", "Thred 400 validation_error: bad email")]
        assert await tx.record_counts("conn_a") == {"failed": 1}
        assert await tx.replay("conn_a", NOW, event_id=None, failed_only=True) == 1
        assert await tx.record_counts("conn_a") == {"pending": 1}
        (again,) = await tx.claim_events("w", NOW, 1, LEASE)
    assert again.event_id == "evt_1"


async def test_retry_waits_until_due(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    async with store.transaction() as tx:
        (event,) = await tx.claim_events("w", NOW, 1, LEASE)
        assert await tx.retry_event(event.id, "w", NOW + timedelta(seconds=10), "Stripe 503")
        assert await tx.claim_events("w", NOW + timedelta(seconds=5), 1, LEASE) == []
        assert len(await tx.claim_events("w", NOW + timedelta(seconds=11), 1, LEASE)) == 1
        assert await tx.oldest_waiting("conn_a") == NOW


async def test_schema_check_names_the_fix(tmp_path: object) -> None:
    from pathlib import Path

    from thred_bridge.errors import SchemaOutdatedError

    url = f"sqlite:///{Path(str(tmp_path)) / 'old.db'}"
    with pytest.raises(SchemaOutdatedError, match="run `thred-bridge migrate`"):
        schema.require_current(url)
    assert schema.migrate(url) == (None, schema.head_revision())
    schema.require_current(url)


async def test_a_delete_waits_for_its_target_unless_it_was_never_queued(store: SqlStore) -> None:
    await add(store, notice("evt_1"))
    void = Record(
        "refund_payment", "stripe_re_1_void", {}, parents={"id": Ref("refund_payment", "stripe_re_1")},
        parent_path=Ref("refund", "stripe_re_1"), op="delete",
    )  # fmt: skip
    async with store.transaction() as tx:
        await tx.add_records("conn_a", [void], None, NOW)
        (claimed,) = await tx.claim_records("w", NOW, 10, LEASE)  # nothing to delete: ready at once
        assert claimed.op == "delete"
        assert claimed.resolved == {}
        await tx.release_record(claimed.id)
        target = Record("refund_payment", "stripe_re_1", {"amount_cents": 1}, parent_path=Ref("refund", "stripe_re_1"))
        await tx.add_records("conn_a", [target], None, NOW)
        later = NOW + LEASE + timedelta(seconds=1)
        claimed_now = await tx.claim_records("w", later, 10, LEASE)
    # the refund payment waits for its refund; the delete now waits for the refund payment
    assert claimed_now == []
