"""Signed Stripe webhooks → the bridge over HTTP → the Thred sandbox over HTTP: exact records and amounts."""

from __future__ import annotations

import pytest

from thred_bridge import testing

pytestmark = pytest.mark.anyio


async def test_a_charge_becomes_customer_invoice_and_payment(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        customer = h.world.add_customer(name="Ada Lovelace", email="ada@example.org")
        charge = h.world.add_charge(2500, "eur", customer=customer, fee=60, tax=10, description="Order #1")
        answer = await h.deliver(h.world.event("charge.succeeded", charge))
        assert answer.status_code == 200
        assert answer.json() == {"received": 1, "stored": 1}
        status = await h.drain()
        books = await h.books()
    assert (status.received, status.synced, status.failed) == (1, 1, 0)
    (cust,) = books["customers"]
    assert cust["external_id"] == f"stripe_{customer['id']}"
    assert cust["individual_name"] == "Ada Lovelace"
    assert cust["email"] == "ada@example.org"
    (invoice,) = books["invoices"]
    assert invoice["external_id"] == f"stripe_{charge['id']}"
    assert invoice["customer"]["id"] == cust["id"]
    assert invoice["currency"] == "EUR"
    assert invoice["total_amount_cents"] == 2500
    (payment,) = books["payments"]
    assert payment["external_id"] == f"stripe_{charge['id']}"
    assert payment["customer_id"] == cust["id"]
    assert payment["total_amount_cents"] == 2500
    assert payment["processing_fee_cents"] == 60
    assert payment["payment_processor"] == "stripe"
    assert payment["payment_method"] == "card"
    assert payment["currency"] == "EUR"
    assert payment["metadata"]["fee_details"] == "stripe_fee=50;tax=10"


async def test_both_event_kinds_and_redeliveries_book_one_payment(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        charge = h.world.add_charge(4800, "jpy", billing_email="taro@example.jp")
        succeeded = h.world.event("charge.succeeded", charge)
        intent = h.world.event("payment_intent.succeeded", h.world.payment_intent_of(charge))
        for event in (intent, succeeded, succeeded, intent):
            assert (await h.deliver(event)).status_code == 200
        status = await h.drain()
        books = await h.books()
    assert (status.received, status.failed) == (2, 0)
    (payment,) = books["payments"]
    assert (payment["total_amount_cents"], payment["currency"]) == (4800, "JPY")  # zero-decimal: 4,800 yen
    (customer,) = books["customers"]
    assert customer["email"] == "taro@example.jp"
    assert customer["external_id"].startswith("stripe_billing_")


async def test_fx_charge_is_booked_in_the_settlement_currency(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        charge = h.world.add_charge(5000, "usd", settlement_currency="eur", exchange_rate="0.9215", fee=95)
        await h.deliver(h.world.event("charge.succeeded", charge))
        await h.drain()
        (payment,) = (await h.books())["payments"]
    assert (payment["total_amount_cents"], payment["currency"], payment["processing_fee_cents"]) == (4608, "EUR", 95)
    assert payment["metadata"]["presentment_amount"] == "50.00"
    assert payment["metadata"]["presentment_currency"] == "USD"
    assert payment["metadata"]["exchange_rate"] == "0.9215"


async def test_walk_in_customer_is_shared_and_isk_is_converted(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        first = h.world.add_charge(250000, "isk")  # Stripe writes ISK with two decimals: 2,500 ISK
        second = h.world.add_charge(1000, "eur")
        for charge in (first, second):
            await h.deliver(h.world.event("charge.succeeded", charge))
        await h.drain()
        books = await h.books()
    (walk_in,) = books["customers"]
    assert walk_in["external_id"] == "stripe_walkin"
    amounts = sorted((p["currency"], p["total_amount_cents"]) for p in books["payments"])
    assert amounts == [("EUR", 1000), ("ISK", 2500)]


async def test_unhandled_event_type_is_stored_as_ignored(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        customer = h.world.add_customer(name="Grace")
        answer = await h.deliver(h.world.event("customer.created", customer))
        status = await h.drain()
        books = await h.books()
    assert answer.status_code == 200
    assert (status.received, status.ignored, status.waiting) == (1, 1, 0)
    assert books.get("customers", []) == []


async def test_fee_not_known_yet_waits_then_books(database_url: str) -> None:
    async with testing.bridge(database_url, settings={"BRIDGE_MAX_ATTEMPTS": 10}) as h:
        charge = h.world.add_charge(1000, "eur", pending_balance_transaction=True)
        await h.deliver(h.world.event("charge.succeeded", charge))
        for _ in range(100):
            status = await h.status()
            if status.waiting and "no balance transaction yet" in str(await _last_error(h)):
                break
            await h._nudge()
        h.world.settle(charge["id"])
        await h.drain()
        (payment,) = (await h.books())["payments"]
    assert payment["total_amount_cents"] == 1000


async def _last_error(h: testing.Harness) -> str | None:
    from sqlalchemy import select

    from thred_bridge.store.tables import events

    async with h.bridge.store.transaction() as tx:
        return await tx.conn.scalar(select(events.c.last_error).order_by(events.c.id.desc()).limit(1))
