"""Held records (decision 0008), on SQLite and Postgres: never claimed; a later plan that is not held
replaces the body and sends it with the held record's parents; a held plan changes nothing already there."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import select, update

from thred_bridge.domain.records import Record, Ref
from thred_bridge.store.sql import SqlStore, SqlTx
from thred_bridge.store.tables import record_parents, records

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def payment(customer: str, cents: int, currency: str, *, held: bool) -> Record:
    return Record(
        "payment",
        "adyen_P1",
        {"customer_id": None, "total_amount_cents": cents, "currency": currency},
        parents={"customer_id": Ref("customer", customer)},
        idempotency_key="adyen_P1",
        held=held,
    )


async def _connect(store: SqlStore) -> None:
    row = {"id": "conn_a", "processor": "adyen", "business_id": "b-1", "account": "TestMerchant", "label": None}
    async with store.transaction() as tx:
        await tx.add_connection({**row, "credentials": "x", "webhook_secrets": "x", "created_at": NOW})


async def _rows(store: SqlStore) -> list[tuple[str, str, dict[str, object]]]:
    async with store.transaction() as tx:
        rows = (await tx.conn.execute(select(records.c.kind, records.c.status, records.c.body))).all()
    return [(kind, status, orjson.loads(body)) for kind, status, body in rows]


async def test_a_held_record_is_not_claimed_until_a_plan_that_is_not_held_replaces_it(store: SqlStore) -> None:
    webhook = payment("adyen_shopper_1", 10_000, "EUR", held=True)
    report = payment("adyen_walkin", 8_512, "GBP", held=False)
    customer = Record("customer", "adyen_shopper_1", {"external_id": "adyen_shopper_1"})
    await _connect(store)
    async with store.transaction() as tx:
        await tx.add_records("conn_a", [customer, webhook], 1, NOW)
        (first,) = await tx.claim_records("w", NOW, 10, LEASE)
        assert first.kind == "customer"  # a held record's parents are booked; it is not
        await tx.record_sent(first.id, "t-cus", NOW)
        assert await tx.claim_records("w", NOW + timedelta(hours=1), 10, LEASE) == []
        assert await tx.record_counts("conn_a") == {"held": 1, "sent": 1}
        await tx.add_records("conn_a", [replace(webhook, body={"changed": True})], 2, NOW)  # held again: no change
        assert (await _payment_row(tx)) == ("held", 10_000)
        await tx.add_records("conn_a", [report], 3, NOW)
        (claimed,) = await tx.claim_records("w", NOW, 10, LEASE)
        linked = (await tx.conn.execute(select(record_parents.c.external_id))).scalars().all()
        event_id = await tx.conn.scalar(select(records.c.event_id).where(records.c.kind == "payment"))
    assert (claimed.body["total_amount_cents"], claimed.body["currency"]) == (8_512, "GBP")
    assert linked == ["adyen_shopper_1"]  # the held reading's customer stays
    assert event_id == 3


async def test_a_held_plan_leaves_a_record_already_there_as_it_is(store: SqlStore) -> None:
    await _connect(store)
    async with store.transaction() as tx:
        await tx.add_records("conn_a", [payment("adyen_walkin", 8_512, "GBP", held=False)], 1, NOW)
        await tx.conn.execute(update(records).values(status="sent", thred_id="t-pay"))
        await tx.add_records("conn_a", [payment("adyen_shopper_1", 10_000, "EUR", held=True)], 2, NOW)
    ((kind, status, body),) = await _rows(store)
    assert (kind, status, body["currency"]) == ("payment", "sent", "GBP")


async def _payment_row(tx: SqlTx) -> tuple[str, int]:
    status, body = (
        await tx.conn.execute(select(records.c.status, records.c.body).where(records.c.kind == "payment"))
    ).one()
    return status, orjson.loads(body)["total_amount_cents"]
