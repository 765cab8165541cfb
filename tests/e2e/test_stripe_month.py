"""A merchant's month through webhooks: 200+ charges in three currencies (one zero-decimal), partial and
multiple refunds, a dispute lost and one won, five payouts of which one fails and is paid out again —
delivered shuffled, with duplicates and with events missing. Thred ends with exactly the expected books,
and every payout ties out to the cent (variance 0)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from thred_bridge import testing
from thred_bridge.processors.stripe.currency import from_stripe
from thred_bridge.simulators.stripe_api import StripeWorld

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def build_month(world: StripeWorld, rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The month's activity in the simulated Stripe; returns its events and what Thred must end with."""
    events: list[dict[str, Any]] = []
    expected: dict[str, Any] = {"payments": {}, "refund_payments": {}, "payouts": {}}
    customers = [world.add_customer(name=f"Customer {n}", email=f"c{n}@example.org") for n in range(12)]

    def charge(currency: str, amount: int) -> dict[str, Any]:
        who = rng.choice([None, *customers])
        made = world.add_charge(amount, currency, customer=who)
        bt = world.balance_transaction_of(made)
        expected["payments"][f"stripe_{made['id']}"] = from_stripe(bt["amount"], bt["currency"]).minor
        events.append(world.event("charge.succeeded", made))
        if rng.random() < 0.3:
            events.append(world.event("payment_intent.succeeded", world.payment_intent_of(made)))
        return made

    def refund(made: dict[str, Any], amount: int) -> None:
        re = world.refund(made["id"], amount)
        expected["refund_payments"][f"stripe_{re['id']}"] = amount
        events.append(world.event("refund.created", re))
        events.append(world.event("charge.refunded", world.get(made["id"]) or made))

    def payout(currency: str) -> dict[str, Any]:
        po = world.payout(currency=currency)
        expected["payouts"][f"stripe_{po['id']}"] = po
        events.append(world.event("payout.paid", po))
        return po

    eur = [charge("eur", rng.randrange(500, 50_000)) for _ in range(90)]
    usd = [charge("usd", rng.randrange(500, 50_000)) for _ in range(60)]
    for _ in range(55):
        charge("jpy", rng.randrange(300, 30_000))  # zero-decimal
    for made in rng.sample(eur, 8) + rng.sample(usd, 5):
        refund(made, made["amount"] // 3)  # partial refunds
    twice = eur[0]
    refund(twice, 100)
    refund(twice, 200)  # two refunds of one charge
    lost = world.dispute(usd[1]["id"])
    events.append(world.event("charge.dispute.created", lost))
    events.append(world.event("charge.dispute.funds_withdrawn", lost))
    expected["refund_payments"][f"stripe_{lost['id']}"] = usd[1]["amount"]
    events.append(world.event("charge.dispute.closed", world.lose_dispute(lost["id"])))
    won = world.dispute(eur[5]["id"])
    events.append(world.event("charge.dispute.funds_withdrawn", won))
    expected["refund_payments"][f"stripe_{won['id']}"] = eur[5]["amount"]
    reinstated = world.win_dispute(won["id"])
    events.append(world.event("charge.dispute.funds_reinstated", reinstated))
    expected["payments"][f"stripe_{won['id']}_reinstated"] = eur[5]["amount"]

    payout("usd")
    payout("jpy")
    failing = payout("eur")
    events.append(world.event("payout.failed", world.fail_payout(failing["id"])))
    expected["payouts"][f"stripe_{failing['id']}"] = world.get(failing["id"])
    more = [charge("eur", rng.randrange(500, 50_000)) for _ in range(10)]
    refund(more[0], 250)
    payout("eur")  # pays out the failed payout's money again, with the new charges
    more_usd = [charge("usd", rng.randrange(500, 5_000)) for _ in range(3)]
    assert more_usd
    payout("usd")
    return events, expected


async def test_a_month_of_stripe_lands_exactly_and_every_payout_ties_out(database_url: str) -> None:
    rng = random.Random(2026_11)
    async with testing.bridge(database_url, settings={"BRIDGE_WORKER_CONCURRENCY": 8}) as h:
        events, expected = build_month(h.world, rng)
        kept = [e for e in events if not (e["type"] == "charge.succeeded" and rng.random() < 0.1)]  # lost webhooks
        stream = kept + rng.sample(kept, len(kept) // 5)  # redeliveries
        rng.shuffle(stream)
        for start in range(0, len(stream), 8):
            answers = await asyncio.gather(*(h.deliver(e) for e in stream[start : start + 8]))
            assert all(a.status_code == 200 for a in answers)
        status = await h.drain(timeout=240)
        books = await h.books()
    assert status.failed == 0, status.failures
    payments = {p["external_id"]: p["total_amount_cents"] for p in books["payments"]}
    assert payments == expected["payments"]
    refunds = {r["external_id"]: r["refunded_amount_cents"] for r in books["refund_payments"]}
    assert refunds == expected["refund_payments"]
    assert Counter(p["external_id"] for p in books["payments"]).most_common(1)[0][1] == 1
    payouts = {p["external_id"]: p for p in books["payouts"]}
    assert set(payouts) == set(expected["payouts"])
    listed: Counter[str] = Counter()
    for ext, stripe_payout in expected["payouts"].items():
        held = payouts[ext]
        assert held["amount_variance_cents"] == 0, (ext, held.get("memo"))
        if stripe_payout["status"] == "failed":
            assert held["status"] == "failed"
            assert held["paid_out_amount_cents"] == 0
        else:
            assert (
                held["paid_out_amount_cents"] == from_stripe(stripe_payout["amount"], stripe_payout["currency"]).minor
            )
        listed.update(p["external_id"] for p in held["payments"])
    assert max(listed.values()) == 1  # no payment is settled twice
    assert set(listed) == set(expected["payments"])  # every payment is settled by some payout
