"""Money out beyond what was paid (decision 0007): a payment partly refunded and then charged back in full.
Thred refunds at most what was paid, so the last money out is booked for what is left refundable and the rest
goes on the payout that settles it as additional refunds, named in its memo: the event succeeds and the payout
ties out to the cent, on SQLite and Postgres, through the webhook routes and the simulators."""

from __future__ import annotations

from typing import Any

import pytest

from thred_bridge import testing
from thred_bridge.simulators.adyen_reports import SettlementReport
from thred_bridge.simulators.mollie_api import minor_of

pytestmark = pytest.mark.anyio


def _refunded(books: dict[str, Any]) -> dict[str, int]:
    return {r["external_id"]: r["refunded_amount_cents"] for r in books["refund_payments"]}


async def test_mollie_a_full_chargeback_after_a_partial_refund_ties_out(database_url: str) -> None:
    async with testing.mollie_bridge(database_url) as h:
        made = h.world.create_payment(5_000, "EUR", email="ada@example.org")
        h.world.pay(made["id"])
        refund = h.world.refund(made["id"], 1_000, status="refunded")
        chargeback = h.world.chargeback(made["id"])  # all 5,000 of it, though 1,000 went back already
        await h.ping(made["id"])
        await h.drain()
        settlement = h.world.settle()
        await h.ping(settlement["id"])
        status = await h.drain()
        books = await h.books()
    assert (status.failed, status.records_failed) == (0, 0), status.failures
    assert minor_of(chargeback["amount"]) == 5_000
    assert _refunded(books) == {f"mollie_{refund['id']}": 1_000, f"mollie_{chargeback['id']}": 4_000}
    (payout,) = books["payouts"]
    assert payout["amount_variance_cents"] == 0, payout.get("memo")
    assert payout["paid_out_amount_cents"] == minor_of(settlement["amount"])
    assert payout["additional_refunds_amount_cents"] == 1_000
    assert f"mollie_{chargeback['id']} 10.00 EUR (payment mollie_{made['id']})" in payout["memo"]
    (booked,) = [r for r in books["refunds"] if r["external_id"] == f"mollie_{chargeback['id']}"]
    assert "booked 4000 of 5000" in booked["memo"]


@pytest.mark.parametrize("first", ["refund", "dispute"])
async def test_stripe_a_lost_dispute_after_a_partial_refund_ties_out_in_either_order(
    database_url: str, first: str
) -> None:
    """Which of the two is cut short follows the order they reach the bridge; what is booked does not: the
    invoice refunds what was paid, the payout carries the rest, and it ties out."""
    async with testing.bridge(database_url) as h:
        w = h.world
        other = w.add_charge(20_000, "eur", fee=200)
        paid = w.add_charge(5_000, "eur", fee=50)
        refund = w.refund(paid["id"], 1_000)
        dispute = w.dispute(paid["id"])  # the whole 5,000, though 1,000 went back already
        payout = w.payout(currency="eur")
        money_out = {
            "refund": [w.event("refund.created", refund)],
            "dispute": [w.event("charge.dispute.funds_withdrawn", w.get(dispute["id"]) or {})],
        }
        events = [
            w.event("charge.succeeded", other),
            w.event("charge.succeeded", paid),
            *money_out[first],
            *money_out["dispute" if first == "refund" else "refund"],
            w.event("payout.paid", payout),
        ]
        for event in events:
            assert (await h.deliver(event)).status_code == 200
            await h.drain()
        status = await h.drain()
        books = await h.books()
    assert (status.failed, status.records_failed) == (0, 0), status.failures
    (thred_payout,) = books["payouts"]
    assert thred_payout["paid_out_amount_cents"] == payout["amount"]
    assert thred_payout["amount_variance_cents"] == 0, thred_payout.get("memo")
    booked = _refunded(books)
    ours = {f"stripe_{refund['id']}", f"stripe_{dispute['id']}"}
    assert set(booked) <= ours
    assert sum(booked.values()) == 5_000, "the invoice refunds what was paid, no more"
    assert sum(booked.values()) + thred_payout["additional_refunds_amount_cents"] == 6_000
    cut = f"stripe_{dispute['id']}" if first == "refund" else f"stripe_{refund['id']}"
    assert f"{cut} 10.00 EUR (payment stripe_{paid['id']})" in thred_payout["memo"]


async def test_adyen_a_full_chargeback_after_a_partial_refund_ties_out(database_url: str) -> None:
    """The webhooks first (capture, refund, then a chargeback of all of it), then the settlement report."""
    psp, refund, dispute = "8815000000000001", "8835000000000001", "8845000000000001"
    report = SettlementReport(batch=4)
    report.settled(psp, 5_000, 40, reference="order-1")
    report.settled("8815000000000002", 20_000, 90)
    report.refunded(psp, refund, 1_000)
    report.chargeback(psp, dispute, 5_000, fee=750)
    async with testing.adyen_bridge(database_url) as h:
        for item in (
            h.item("CAPTURE", "8825000000000001", value=5_000, original_reference=psp),
            h.item("REFUND", refund, value=1_000, original_reference=psp),
            h.item("CHARGEBACK", dispute, value=5_000, original_reference=psp, reason="Fraud"),
        ):
            assert (await h.deliver(item)).content == b"[accepted]"
            await h.drain()
        await h.report_available("settlement_detail_report_batch_4.csv", report.csv("new"))
        status = await h.drain()
        books = await h.books()
    assert (status.failed, status.records_failed) == (0, 0), status.failures
    assert _refunded(books) == {f"adyen_{refund}": 1_000, f"adyen_{dispute}": 4_000}
    (payout,) = books["payouts"]
    assert payout["paid_out_amount_cents"] == 5_000 - 40 + 20_000 - 90 - 1_000 - 5_000 - 750
    assert payout["amount_variance_cents"] == 0, payout.get("memo")
    assert payout["additional_refunds_amount_cents"] == 1_000
    assert f"adyen_{dispute} 10.00 EUR (payment adyen_{psp})" in payout["memo"]


async def test_stripe_a_refund_that_fails_after_a_lost_dispute_still_ties_out(database_url: str) -> None:
    """Refund 1,000, lose a dispute of all 5,000 (booked for the 4,000 left, 1,000 carried), then the refund
    fails: its refund payment is deleted and its money comes back in the same payout. The invoice keeps the
    dispute as booked (a sent refund is not booked again), the carried 1,000 stays on the payout, and the
    payout still ties out to the cent."""
    async with testing.bridge(database_url) as h:
        w = h.world
        other = w.add_charge(20_000, "eur", fee=200)
        paid = w.add_charge(5_000, "eur", fee=50)
        refund = w.refund(paid["id"], 1_000)
        dispute = w.dispute(paid["id"])
        for event in (
            w.event("charge.succeeded", other),
            w.event("charge.succeeded", paid),
            w.event("refund.created", refund),
            w.event("charge.dispute.funds_withdrawn", w.get(dispute["id"]) or {}),
        ):
            assert (await h.deliver(event)).status_code == 200
            await h.drain()
        failed = w.fail_refund(refund["id"])
        assert (await h.deliver(w.event("refund.failed", failed))).status_code == 200
        await h.drain()
        payout = w.payout(currency="eur")
        assert (await h.deliver(w.event("payout.paid", payout))).status_code == 200
        status = await h.drain()
        books = await h.books()
    assert (status.failed, status.records_failed) == (0, 0), status.failures
    assert payout["amount"] == 20_000 - 200 + 5_000 - 50 - 5_000 - 1_500  # the failed refund nets to 0
    assert _refunded(books) == {f"stripe_{dispute['id']}": 4_000}
    (thred_payout,) = books["payouts"]
    assert thred_payout["paid_out_amount_cents"] == payout["amount"]
    assert thred_payout["amount_variance_cents"] == 0, thred_payout.get("memo")
    # the carried 1,000, and the failed refund's 1,000 out (its refund payment is gone), put back by its failure
    assert thred_payout["metadata"]["excess_refunds_cents"] == "1000"
    assert thred_payout["additional_refunds_amount_cents"] == 1_000 + 1_000
    assert thred_payout["metadata"]["credits_cents"] == "1000"
