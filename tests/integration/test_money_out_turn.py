"""The store's half of money out beyond what was paid (decision 0007), on SQLite and Postgres: refunds of one
invoice take turns in the order they were queued, each reads what the ones before left refundable, and the
payout that settles one booked short finds its excess."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from thred_bridge.domain.records import Record, Ref
from thred_bridge.store.sql import SqlStore
from thred_bridge.store.tables import records

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
INVOICE = Ref("invoice", "mollie_tr_1")


def _refund(ext: str, cents: int) -> list[Record]:
    refund = Record(
        "refund", ext, {"external_id": ext, "invoice_id": None, "amount_cents": cents},
        parents={"invoice_id": INVOICE, "~payment": Ref("payment", "mollie_tr_1")},
    )  # fmt: skip
    payment = Record("refund_payment", ext, {"external_id": ext, "amount_cents": cents}, parent_path=Ref("refund", ext))
    return [refund, payment]


async def _queue(store: SqlStore) -> dict[str, int]:
    planned = [
        Record("invoice", "mollie_tr_1", {"external_id": "mollie_tr_1", "total_amount_cents": 5_000}),
        Record(
            "payment", "mollie_tr_1",
            {"external_id": "mollie_tr_1", "total_amount_cents": 5_000, "allocations": [{"invoice_id": None}]},
            parents={"allocations.0.invoice_id": INVOICE},
        ),
        *_refund("mollie_re_1", 1_000),
        *_refund("mollie_chb_1", 5_000),
        Record(
            "payout", "mollie_stl_1",
            {"external_id": "mollie_stl_1", "refund_payment_ids": [None, None]},
            parents={"refund_payment_ids.0": Ref("refund_payment", "mollie_re_1"),
                     "refund_payment_ids.1": Ref("refund_payment", "mollie_chb_1")},
            updatable=True,
        ),
    ]  # fmt: skip
    async with store.transaction() as tx:
        await tx.add_connection(
            {"id": "conn_m", "processor": "mollie", "business_id": "b-1", "account": None, "label": None,
             "credentials": "x", "webhook_secrets": "x", "created_at": NOW}
        )  # fmt: skip
        await tx.add_records("conn_m", planned, None, NOW)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(records.c.id, records.c.kind, records.c.external_id))).all()
        await conn.rollback()
    return {f"{kind}:{ext}": record_id for record_id, kind, ext in rows}


async def _send(store: SqlStore, record_id: int, *, excess: int | None = None) -> None:
    async with store.transaction() as tx:
        await tx.record_sent(record_id, f"thred-{record_id}", NOW, excess_cents=excess)


async def test_refunds_of_one_invoice_take_turns_in_queue_order(store: SqlStore) -> None:
    ids = await _queue(store)
    await _send(store, ids["invoice:mollie_tr_1"])
    async with store.transaction() as tx:
        assert await tx.money_out_turn("conn_m", ids["refund:mollie_re_1"], "w0", NOW) == (True, None), (
            "no payment booked on the invoice: not known here, Thred decides"
        )
        await tx.end_money_out_turn("conn_m", ids["refund:mollie_re_1"], "w0")
    await _send(store, ids["payment:mollie_tr_1"])
    refund, chargeback = ids["refund:mollie_re_1"], ids["refund:mollie_chb_1"]
    async with store.transaction() as tx:
        assert await tx.money_out_turn("conn_m", chargeback, "w2", NOW) == (False, None), "the earlier one first"
        assert await tx.money_out_turn("conn_m", refund, "w1", NOW) == (True, 5_000)
    async with store.transaction() as tx:
        assert await tx.money_out_turn("conn_m", refund, "w3", NOW) == (False, None), "one turn at a time"
    await _send(store, refund)
    async with store.transaction() as tx:
        await tx.end_money_out_turn("conn_m", refund, "w1")
    async with store.transaction() as tx:
        assert await tx.money_out_turn("conn_m", chargeback, "w2", NOW) == (True, 4_000), "what the refund left"
    await _send(store, chargeback, excess=1_000)
    async with store.transaction() as tx:
        await tx.end_money_out_turn("conn_m", chargeback, "w2")
        claimed = {r.id: r for r in await tx.claim_records("w", NOW, 10, LEASE)}
    assert set(claimed) == {ids["refund_payment:mollie_re_1"], ids["refund_payment:mollie_chb_1"]}
    settles = claimed[ids["refund_payment:mollie_chb_1"]]
    assert settles.excess_cents == 1_000, "its refund payment is booked short by as much"
    assert claimed[ids["refund_payment:mollie_re_1"]].excess_cents == 0
    for record_id in claimed:
        await _send(store, record_id)
    async with store.transaction() as tx:
        (payout,) = await tx.claim_records("w", NOW, 10, LEASE)
        assert await tx.excess_settled("conn_m", payout.id) == [("mollie_chb_1", 1_000, "mollie_tr_1")]


async def test_a_turn_not_given_back_lapses(store: SqlStore) -> None:
    ids = await _queue(store)
    for key in ("invoice:mollie_tr_1", "payment:mollie_tr_1"):
        await _send(store, ids[key])
    refund = ids["refund:mollie_re_1"]
    async with store.transaction() as tx:
        assert (await tx.money_out_turn("conn_m", refund, "crashed", NOW))[0]
    async with store.transaction() as tx:
        assert not (await tx.money_out_turn("conn_m", refund, "w1", NOW + timedelta(seconds=29)))[0]
    async with store.transaction() as tx:
        assert await tx.money_out_turn("conn_m", refund, "w1", NOW + timedelta(seconds=31)) == (True, 5_000)


async def test_a_dead_process_gives_its_turn_back_at_once_and_a_beat_never_renews_one(store: SqlStore) -> None:
    """The turn is held by the process: when it is declared dead its turn goes with its claims (a crash costs
    no 30 s), and its beats, which renew its claims, leave the turn to lapse if it was never given back."""
    ids = await _queue(store)
    for key in ("invoice:mollie_tr_1", "payment:mollie_tr_1"):
        await _send(store, ids[key])
    refund = ids["refund:mollie_re_1"]
    async with store.transaction() as tx:
        await tx.register_process("proc-a", None, "host-a", 1, "worker", NOW)
        assert (await tx.money_out_turn("conn_m", refund, "proc-a", NOW))[0]
        await tx.renew_claims("proc-a", NOW, NOW + timedelta(hours=1))
    async with store.transaction() as tx:
        assert not (await tx.money_out_turn("conn_m", refund, "proc-b", NOW + timedelta(seconds=1)))[0]
        assert (await tx.money_out_turn("conn_m", refund, "proc-b", NOW + timedelta(seconds=31)))[0], (
            "not renewed by the beat: it lapsed"
        )
        await tx.end_money_out_turn("conn_m", refund, "proc-b")
        assert (await tx.money_out_turn("conn_m", refund, "proc-a", NOW))[0]
        assert await tx.take_over("proc-a", NOW, ended="dead") is not None
    async with store.transaction() as tx:
        assert await tx.money_out_turn("conn_m", refund, "proc-b", NOW) == (True, 5_000), "given back with its claims"
