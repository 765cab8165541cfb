"""Thred and Stripe failing: transient answers are retried with backoff, permanent ones leave the event
failed with Thred's message, visible in status, and replay books it once the cause is gone."""

from __future__ import annotations

import pytest

from thred_bridge import testing

pytestmark = pytest.mark.anyio


async def test_thred_503_and_429_are_retried_until_booked(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        await h.fault("/invoices/payments/", 503, times=2)
        await h.fault("/customers/", 429, times=1, retry_after=1)
        charge = h.world.add_charge(1999, "gbp")
        await h.deliver(h.world.event("charge.succeeded", charge))
        status = await h.drain(timeout=40)
        books = await h.books()
    assert (status.synced, status.failed) == (1, 0)
    (payment,) = books["payments"]
    assert payment["total_amount_cents"] == 1999


async def test_stripe_outage_is_retried(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        h.world.fail_next("/v1/charges/", 500, times=1)
        h.world.fail_next("/v1/balance_transactions/", 429, times=1, retry_after=1)
        charge = h.world.add_charge(700, "usd")
        await h.deliver(h.world.event("charge.succeeded", charge))
        status = await h.drain(timeout=40)
        assert len((await h.books())["payments"]) == 1
    assert status.failed == 0


async def test_thred_4xx_fails_the_event_with_its_message_then_replay_books_it(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        await h.fault("/invoices/", 400, times=1)
        charge = h.world.add_charge(1200, "eur")
        event = h.world.event("charge.succeeded", charge)
        await h.deliver(event)
        status = await h.drain()
        assert (status.failed, status.synced) == (1, 0)
        ((event_id, event_type, error),) = status.failures
        assert (event_id, event_type) == (event["id"], "charge.succeeded")
        assert error.startswith("Thred 400")
        assert (await h.books()).get("payments", []) == []

        assert await h.bridge.connections.replay(h.connection.id, event_id=None, failed_only=True) == 1
        status = await h.drain()
        books = await h.books()
    assert (status.failed, status.synced) == (0, 1)
    assert len(books["payments"]) == 1
    assert len(books["invoices"]) == 1


async def test_a_charge_stripe_does_not_have_fails_with_stripes_reason(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        charge = h.world.add_charge(1200, "eur")
        ghost = {**charge, "id": "ch_doesnotexist"}
        await h.deliver(h.world.event("charge.succeeded", ghost))
        status = await h.drain()
    ((_, _, error),) = status.failures
    assert "ch_doesnotexist" in error
    assert testing.STRIPE_KEY not in error
