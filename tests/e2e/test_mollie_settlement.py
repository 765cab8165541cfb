"""A Mollie settlement of ~150 payments, with refunds and a chargeback, → one itemised Thred payout whose
items add up to what reached the bank (variance 0), whether or not the payments' own calls arrived."""

from __future__ import annotations

import asyncio
import random

import pytest

from thred_bridge import testing
from thred_bridge.simulators.mollie_api import MollieWorld, minor_of, ticking_clock

pytestmark = pytest.mark.anyio


def build_month(world: MollieWorld, rng: random.Random) -> dict[str, dict[str, int]]:
    """150 paid payments (a few open or failed ones besides), refunds and a chargeback, then one settlement."""
    expected: dict[str, dict[str, int]] = {"payments": {}, "refund_payments": {}}
    paid = []
    for n in range(160):
        made = world.create_payment(
            rng.randrange(500, 40_000),
            method=rng.choice(["ideal", "creditcard", "bancontact"]),
            email=f"c{n % 17}@example.org" if n % 3 else None,
        )
        if n >= 150:
            if n % 2:
                world.fail(made["id"], "expired")
            continue  # open or expired: never booked
        world.pay(made["id"])
        paid.append(made)
        expected["payments"][f"mollie_{made['id']}"] = minor_of(made["amount"])
    for made in rng.sample(paid, 12):
        refund = world.refund(made["id"], minor_of(made["amount"]) // 4, status="refunded")
        expected["refund_payments"][f"mollie_{refund['id']}"] = minor_of(refund["amount"])
    disputed = paid[7]
    chargeback = world.chargeback(disputed["id"])
    expected["refund_payments"][f"mollie_{chargeback['id']}"] = minor_of(chargeback["amount"])
    return expected


async def test_a_settlement_of_150_payments_becomes_one_payout_with_variance_0(database_url: str) -> None:
    rng = random.Random(2026_11_25)
    world = MollieWorld(seed=11, clock=ticking_clock(1_777_000_000, 60))
    async with testing.mollie_bridge(database_url, world=world, settings={"BRIDGE_WORKER_CONCURRENCY": 8}) as h:
        expected = build_month(world, rng)
        pings = [p["id"] for p in world.listed("payment")]
        kept = [p for p in pings if rng.random() > 0.3]  # some calls are lost
        stream = kept + rng.sample(kept, len(kept) // 4)  # some are repeated
        rng.shuffle(stream)
        for start in range(0, len(stream), 16):
            answers = await asyncio.gather(*(h.ping(p) for p in stream[start : start + 16]))
            assert all(a.status_code == 200 for a in answers)
        settlement = world.settle()
        await h.deliver(world.event("payout.completed", {**settlement, "settlementId": settlement["id"]}))
        await h.ping(settlement["id"])  # and a classic call naming it: one payout all the same
        status = await h.drain(timeout=240)
        books = await h.books()
    assert status.failed == 0, status.failures
    payments = {p["external_id"]: p["total_amount_cents"] for p in books["payments"]}
    assert payments == expected["payments"]
    refunds = {r["external_id"]: r["refunded_amount_cents"] for r in books["refund_payments"]}
    assert refunds == expected["refund_payments"]
    (payout,) = books["payouts"]
    assert payout["external_id"] == f"mollie_{settlement['id']}"
    assert payout["paid_out_amount_cents"] == minor_of(settlement["amount"])
    assert payout["amount_variance_cents"] == 0, payout.get("memo")
    assert payout["reference_number"] == settlement["reference"]
    assert {p["external_id"] for p in payout["payments"]} == set(expected["payments"])


async def test_without_an_organization_token_payouts_are_off_and_status_says_why(database_url: str) -> None:
    async with testing.mollie_bridge(database_url, organization_token=False) as h:
        made = h.world.create_payment(1500)
        h.world.pay(made["id"])
        settlement = h.world.settle()
        await h.ping(made["id"])
        await h.ping(settlement["id"])
        status = await h.drain()
        books = await h.books()
    assert (status.received, status.synced, status.failed) == (2, 2, 0)
    assert [p["total_amount_cents"] for p in books["payments"]] == [1500]
    assert books.get("payouts", []) == []
    (note,) = status.notes
    assert "payouts are off" in note
    assert "organization access token" in note
    assert not [r for r in h.world.requests if "settlements" in r.path]  # never asked with the profile key
