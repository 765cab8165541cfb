"""Mollie fees per payment: with an organization token that may read balances, each payment is booked in
Thred with the fee Mollie deducted from it (its balance transaction's ``deductions``) and the settlement's
payout carries the rest of the costs, so that it ties out to the cent; without balance access the
settlement's costs go on the payout, as before, and ``status`` says why."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest

from thred_bridge import testing
from thred_bridge.domain.money import Money
from thred_bridge.processors.mollie.api import MollieApi
from thred_bridge.processors.mollie.balance_ledger import BalanceLedger
from thred_bridge.processors.mollie.fields import time_of
from thred_bridge.serving import serve_in_background
from thred_bridge.simulators.mollie_api import MollieWorld, create_app, minor_of, ticking_clock

pytestmark = pytest.mark.anyio


def settlement_costs(settlement: dict[str, Any]) -> int:
    """The settlement's costs as it reports them (4 decimals per line), in cents, rounded once."""
    total = sum(
        (Decimal(cost["amountGross"]["value"]) for months in settlement["periods"].values()
         for period in months.values() for cost in period["costs"]),
        Decimal(0),
    )  # fmt: skip
    return int((total * 100).to_integral_value(rounding=ROUND_HALF_EVEN))


def build(world: MollieWorld, rng: random.Random) -> dict[str, str]:
    """Payments of every kind the balance sees (iDEAL, card, Bancontact, an FX card payment, a manual
    capture, PayPal that Mollie does not settle), refunds and a chargeback. Payment id → method."""
    made: dict[str, str] = {}
    for n in range(30):
        method = rng.choice(["ideal", "creditcard", "bancontact"])
        payment = world.create_payment(rng.randrange(300, 25_000), method=method, email=f"c{n % 7}@example.org")
        world.pay(payment["id"])
        made[payment["id"]] = method
    fx = world.create_payment(4338, "USD", method="creditcard", settlement_minor=3507)
    world.pay(fx["id"])
    made[fx["id"]] = "creditcard"
    held = world.create_payment(9000, method="creditcard", capture_mode="manual")
    world.authorize(held["id"])
    world.capture(held["id"])
    made[held["id"]] = "creditcard"
    paypal = world.create_payment(2500, method="paypal")
    world.pay(paypal["id"])
    made[paypal["id"]] = "paypal"
    paid = [p for p, m in made.items() if m != "paypal"]
    for payment_id in rng.sample(paid, 5):
        world.refund(payment_id, 200, status="refunded")
    world.chargeback(paid[3])
    return made


async def test_each_payment_carries_its_deduction_and_the_payout_ties_out(database_url: str) -> None:
    rng = random.Random(2026_12_07)
    world = MollieWorld(seed=31, clock=ticking_clock(1_777_000_000, 60))
    async with testing.mollie_bridge(database_url, world=world, settings={"BRIDGE_WORKER_CONCURRENCY": 8}) as h:
        made = build(world, rng)
        pinged = [p for p in made if rng.random() > 0.25]  # the rest is booked from the settlement
        for start in range(0, len(pinged), 8):
            answers = await asyncio.gather(*(h.ping(p) for p in pinged[start : start + 8]))
            assert all(a.status_code == 200 for a in answers)
        await h.drain(timeout=120)
        settlement = world.settle()
        await h.ping(settlement["id"])
        status = await h.drain(timeout=120)
        books = await h.books()
    assert status.failed == 0, status.failures
    assert not status.notes
    fees = {p["external_id"]: p["processing_fee_cents"] for p in books["payments"]}
    expected = {f"mollie_{p}": world.deducted(p) for p in made}
    assert fees == expected
    assert expected[next(f"mollie_{p}" for p, m in made.items() if m == "paypal")] == 0  # not in the balance
    assert sum(1 for fee in expected.values() if fee > 0) == len(made) - 1
    (payout,) = books["payouts"]
    assert payout["paid_out_amount_cents"] == minor_of(settlement["amount"])
    assert payout["amount_variance_cents"] == 0, payout.get("memo")
    costs = settlement_costs(settlement)
    assert payout["fee_cents"] == costs
    settled = {f"mollie_{p['id']}" for p in world.settled_in(settlement["id"], "payment")}
    per_payment = sum(fees[p] for p in settled)
    metadata = payout["metadata"]
    assert metadata["fee_source"] == "balance transactions"
    assert int(metadata["payment_fees_cents"]) == per_payment
    assert int(metadata["payment_fees_cents"]) + int(metadata["costs_remainder_cents"]) == costs
    assert int(metadata["costs_cents"]) == costs


async def test_without_balance_access_payments_have_fee_0_and_the_costs_go_on_the_payout(database_url: str) -> None:
    rng = random.Random(7)
    world = MollieWorld(seed=32, clock=ticking_clock(1_777_000_000, 60))
    async with testing.mollie_bridge(
        database_url, world=world, balance_access=False, settings={"BRIDGE_WORKER_CONCURRENCY": 4}
    ) as h:
        made = build(world, rng)
        for payment_id in list(made)[:12]:
            assert (await h.ping(payment_id)).status_code == 200
        await h.drain(timeout=120)
        settlement = world.settle()
        await h.ping(settlement["id"])
        status = await h.drain(timeout=120)
        books = await h.books()
    assert status.failed == 0, status.failures
    (note,) = status.notes
    assert "fees per payment are off" in note
    assert "balances.read" in note
    assert {p["processing_fee_cents"] for p in books["payments"]} == {0}
    settled = {p["id"] for p in world.settled_in(settlement["id"], "payment")}
    assert {p["external_id"] for p in books["payments"]} == {f"mollie_{p}" for p in settled | set(list(made)[:12])}
    (payout,) = books["payouts"]
    assert payout["amount_variance_cents"] == 0, payout.get("memo")
    assert payout["fee_cents"] == settlement_costs(settlement)
    assert "fee_source" not in payout["metadata"]
    refused = [r for r in world.requests if r.path.startswith("/v2/balances")]
    assert refused
    assert {r.status for r in refused} == {403}
    assert len(refused) <= 4  # the refusal is remembered, not asked again for every payment


async def test_the_ledger_reads_the_balance_page_by_page_once() -> None:
    key, token = "test_" + "k" * 30, "access_" + "t" * 30
    world = MollieWorld(seed=33, clock=ticking_clock(1_777_000_000, 60))

    def pay(minor: int, method: str) -> tuple[str, datetime]:
        made = world.create_payment(minor, method=method)
        paid = world.pay(made["id"])
        return made["id"], time_of(paid["paidAt"], "paidAt")

    def fee(payment_id: str) -> Money:
        return Money(world.deducted(payment_id), "EUR")

    paid = [pay(1000 + 37 * n, "creditcard") for n in range(23)]
    async with serve_in_background(create_app(world, api_key=key, organization_token=token)) as url:
        api = MollieApi(key, organization_token=token, base_url=url)
        ledger = BalanceLedger(api, "primary", page_size=5)
        newest, oldest = paid[-1], paid[0]
        assert await ledger.fee_for(*newest) == fee(newest[0])
        assert ledger.pages_read == 1
        assert await ledger.fee_for(*oldest) == fee(oldest[0])
        assert ledger.pages_read == 1 + 5  # the top again, then down to the oldest: 23 transactions, 5 a page
        for payment_id, at in paid:  # everything is held now: no more requests
            assert await ledger.fee_for(payment_id, at) == fee(payment_id)
        assert ledger.pages_read == 6
        later = pay(5000, "ideal")
        assert await ledger.fee_for(*later) == fee(later[0])
        assert ledger.pages_read == 7  # only the top of the list, down to what it held
        assert await ledger.fee_for("tr_neverpaid", later[1]) is None
        assert ledger.covers(later[1])  # read to the end of the list: a payment with no transaction (yet)
        pages = [r for r in world.requests if r.path == "/v2/balances/primary/transactions"]
        assert {r.status for r in pages} == {200}
        assert all("limit=5" in r.query for r in pages)
        assert sum("from=" in r.query for r in pages) == 4
        api.close()
