"""Mollie webhooks → the bridge over HTTP → the Thred sandbox over HTTP, with the simulated Mollie API
behind the fetches: classic pings (repeated, duplicated, lost) and signed next-gen events book exactly what
the payment moved."""

from __future__ import annotations

import asyncio

import pytest

from thred_bridge import testing
from thred_bridge.simulators.mollie_api import MollieWorld

pytestmark = pytest.mark.anyio


async def test_one_payment_open_paid_refunded_charged_back_through_classic_pings(database_url: str) -> None:
    async with testing.mollie_bridge(database_url) as h:
        w = h.world
        made = w.create_payment(5000, email="ada@example.org", name="Ada Lovelace", description="Order #1")
        pid = made["id"]
        assert (await h.ping(pid)).status_code == 200  # open: nothing to book yet
        await h.drain()
        assert (await h.books()).get("payments", []) == []
        w.pay(pid)
        for _ in range(3):  # Mollie calls again; the calls are duplicated
            assert (await h.ping(pid)).status_code == 200
        first = w.refund(pid, 1000, status="pending")  # its call is lost
        second = w.refund(pid, 500, status="pending")
        await h.ping(pid)
        await h.drain()
        w.set_refund_status(first["id"], "refunded")
        w.set_refund_status(second["id"], "failed")  # a failed refund is undone
        await h.ping(pid)
        await h.ping(pid)
        chargeback = w.chargeback(pid, 3500, reason=("MD06", "Refund request by end customer"))
        answers = await asyncio.gather(*(h.ping(pid) for _ in range(4)))
        assert all(a.status_code == 200 for a in answers)
        status = await h.drain()
        books = await h.books()
    assert status.failed == 0, status.failures
    assert status.received == 1 + 3 + 1 + 2 + 4  # every call is stored: none is deduplicated away
    (customer,) = books["customers"]
    assert customer["email"] == "ada@example.org"
    assert customer["external_id"].startswith("mollie_billing_")
    (invoice,) = books["invoices"]
    assert (invoice["external_id"], invoice["currency"]) == (f"mollie_{pid}", "EUR")
    assert invoice["total_amount_cents"] == 5000
    (payment,) = books["payments"]
    assert (payment["external_id"], payment["total_amount_cents"]) == (f"mollie_{pid}", 5000)
    assert payment["payment_processor"] == "mollie"
    assert payment["payment_method"] == "ideal"
    refunds = {r["external_id"]: r["refunded_amount_cents"] for r in books["refund_payments"]}
    assert refunds == {f"mollie_{first['id']}": 1000, f"mollie_{chargeback['id']}": 3500}


async def test_a_change_right_after_a_processed_call_is_not_lost(database_url: str) -> None:
    """Two calls about one payment within the same second, the first already processed when the second
    arrives: a time-bucketed dedupe would drop the second, and with it the refund."""
    async with testing.mollie_bridge(database_url) as h:
        made = h.world.create_payment(2000)
        h.world.pay(made["id"])
        await h.ping(made["id"])
        await h.drain()
        refund = h.world.refund(made["id"], 700, status="refunded")
        await h.ping(made["id"])
        await h.drain()
        books = await h.books()
    assert [r["external_id"] for r in books["refund_payments"]] == [f"mollie_{refund['id']}"]


async def test_queued_calls_for_one_payment_are_coalesced_into_one_fetch(database_url: str) -> None:
    async with testing.mollie_bridge(database_url, worker=False) as h:
        made = h.world.create_payment(1200)
        h.world.pay(made["id"])
        h.world.refund(made["id"], 200, status="refunded")
        for _ in range(6):
            await h.ping(made["id"])
        stop = asyncio.Event()
        task = asyncio.create_task(h.bridge.worker(poll=0.1).run(stop))
        try:
            status = await h.drain()
        finally:
            stop.set()
            await task
        books = await h.books()
    assert (status.received, status.synced, status.failed) == (6, 6, 0)
    fetches = [r for r in h.world.requests if r.path == f"/v2/payments/{made['id']}"]
    assert len(fetches) == 1
    assert len(books["payments"]) == 1
    assert len(books["refund_payments"]) == 1


async def test_signed_next_gen_events_book_and_a_bad_signature_stores_nothing(database_url: str) -> None:
    async with testing.mollie_bridge(database_url) as h:
        made = h.world.create_payment(4200, customer_id="cst_8wmqcHMN4U")
        paid = h.world.pay(made["id"])
        event = h.world.event("payment.paid", paid)
        forged = await h.deliver(event, secret="not-the-secret")
        assert forged.status_code == 400
        assert "signature" in forged.json()["error"]
        await h.drain()
        assert (await h.status()).received == 0
        assert (await h.books()).get("payments", []) == []
        assert h.world.requests == []
        answers = [await h.deliver(event) for _ in range(2)]  # redelivered: one event
        assert [a.status_code for a in answers] == [200, 200]
        assert [a.json()["stored"] for a in answers] == [1, 0]
        refund = h.world.refund(made["id"], 1200, status="refunded")
        await h.deliver(h.world.event("refund.refunded", refund))
        status = await h.drain()
        books = await h.books()
    assert (status.received, status.synced, status.failed) == (2, 2, 0)
    (payment,) = books["payments"]
    assert payment["total_amount_cents"] == 4200
    (customer,) = books["customers"]
    assert customer["external_id"] == "mollie_cst_8wmqcHMN4U"
    assert [r["refunded_amount_cents"] for r in books["refund_payments"]] == [1200]


async def test_malformed_classic_bodies_are_refused_and_unknown_ids_accepted(database_url: str) -> None:
    async with testing.mollie_bridge(database_url) as h:
        for body in (b"id=tr_", b"id=xx_12345678", b"id=tr_abc%20def", b"", b"foo=bar", b'{"id": "tr_12345678"}'):
            answer = await h.post(testing.Delivery(body, {"Content-Type": "application/x-www-form-urlencoded"}))
            assert answer.status_code == 400, body
        unknown = await h.ping("tr_unknown1234")
        assert unknown.status_code == 200  # Mollie's contract: 200 even for an id we cannot find
        status = await h.drain()
    assert status.received == 1
    assert status.failed == 1  # the fetch says 404: visible in status, not booked
    assert "No payment exists" in status.failures[0][2]


async def test_foreign_currency_payment_is_booked_at_its_settlement_amount(database_url: str) -> None:
    world = MollieWorld(seed=3)
    async with testing.mollie_bridge(database_url, world=world) as h:
        made = world.create_payment(5000, "USD", settlement_minor=4608, method="creditcard")
        world.pay(made["id"])
        await h.ping(made["id"])
        await h.drain()
        (payment,) = (await h.books())["payments"]
    assert (payment["total_amount_cents"], payment["currency"]) == (4608, "EUR")
    assert payment["metadata"]["presentment_amount"] == "50.00"
    assert payment["metadata"]["presentment_currency"] == "USD"


async def test_a_reversed_chargeback_brings_the_money_back(database_url: str) -> None:
    async with testing.mollie_bridge(database_url) as h:
        made = h.world.create_payment(8000, method="directdebit")
        h.world.pay(made["id"])
        chargeback = h.world.chargeback(made["id"], reason=("AC01", "Account identifier incorrect"))
        await h.ping(made["id"])
        await h.drain()
        h.world.reverse_chargeback(chargeback["id"])
        await h.ping(made["id"])
        status = await h.drain()
        books = await h.books()
    assert status.failed == 0, status.failures
    payments = {p["external_id"]: p["total_amount_cents"] for p in books["payments"]}
    assert payments == {f"mollie_{made['id']}": 8000, f"mollie_{chargeback['id']}_reinstated": 8000}
    refunds = {r["external_id"]: r["refunded_amount_cents"] for r in books["refund_payments"]}
    assert refunds == {f"mollie_{chargeback['id']}": 8000}


async def test_an_authorized_payment_is_booked_when_captured_for_the_captured_amount(database_url: str) -> None:
    async with testing.mollie_bridge(database_url) as h:
        made = h.world.create_payment(5000, method="creditcard", capture_mode="manual")
        h.world.authorize(made["id"])
        await h.ping(made["id"])
        await h.drain()
        assert (await h.books()).get("payments", []) == []
        h.world.capture(made["id"], 3000)
        await h.ping(made["id"])
        await h.drain()
        (payment,) = (await h.books())["payments"]
    assert payment["total_amount_cents"] == 3000
    assert payment["metadata"]["authorized_amount"] == "50.00"


async def test_during_a_secret_rotation_either_signature_header_is_accepted(database_url: str) -> None:
    async with testing.mollie_bridge(database_url) as h:
        made = h.world.create_payment(900)
        event = h.world.event("payment.paid", h.world.pay(made["id"]))
        good = testing.mollie_event_delivery(event, h.webhook_secret)
        old = testing.mollie_event_delivery(event, "the-old-secret")
        headers = [
            ("Content-Type", "application/json"),
            ("X-Mollie-Signature", old.headers["X-Mollie-Signature"]),
            ("X-Mollie-Signature", good.headers["X-Mollie-Signature"]),
        ]
        answer = await h.http.post(h.webhook_url, content=good.body, headers=headers)
        assert answer.status_code == 200
        await h.drain()
        assert [p["total_amount_cents"] for p in (await h.books())["payments"]] == [900]
