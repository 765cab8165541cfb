"""Signed Stripe refund, dispute and payout webhooks → the bridge → the Thred sandbox: the books tie out."""

from __future__ import annotations

import pytest

from thred_bridge import testing

pytestmark = pytest.mark.anyio


async def test_refund_dispute_fee_and_payout_tie_out_in_any_order(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        w = h.world
        ada = w.add_customer(name="Ada Lovelace", email="ada@example.org")
        paid = w.add_charge(10000, "eur", fee=100, customer=ada, description="Order 1")
        disputed = w.add_charge(5000, "eur", fee=50)
        refund = w.refund(paid["id"], 2500)
        dispute = w.dispute(disputed["id"])
        w.win_dispute(dispute["id"])
        w.add_fee(300, "eur", "Radar")
        payout = w.payout(currency="eur")
        events = [
            w.event("payout.paid", payout),  # first: it brings every charge, refund and dispute with it
            w.event("refund.created", refund),
            w.event("charge.dispute.funds_reinstated", w.get(dispute["id"]) or {}),
            w.event("charge.succeeded", paid),
            w.event("charge.refunded", w.get(paid["id"]) or {}),
        ]
        for event in events:
            assert (await h.deliver(event)).status_code == 200
        status = await h.drain()
        books = await h.books()
    assert (status.received, status.synced, status.failed) == (5, 5, 0)
    (thred_payout,) = books["payouts"]
    assert thred_payout["external_id"] == f"stripe_{payout['id']}"
    assert thred_payout["paid_out_amount_cents"] == payout["amount"] == 9900 + 4950 - 2500 - 300
    assert thred_payout["amount_variance_cents"] == 0
    assert thred_payout["reference_number"] == payout["trace_id"]["value"]
    payments = {p["external_id"]: p["total_amount_cents"] for p in books["payments"]}
    assert payments == {
        f"stripe_{paid['id']}": 10000,
        f"stripe_{disputed['id']}": 5000,
        f"stripe_{dispute['id']}_reinstated": 5000,
    }
    refunds = {r["external_id"]: r["amount_cents"] for r in books["refunds"]}
    assert refunds == {f"stripe_{refund['id']}": 2500, f"stripe_{dispute['id']}": 5000}
    assert len(books["refund_payments"]) == 2
