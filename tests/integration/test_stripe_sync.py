"""StripeProcessor.movements per event type, against the simulated Stripe API on a real uvicorn server:
what it fetches (the current objects, each once) and the movements it returns."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.stripe_support import ACCOUNT, KEY, Stripe, serve_stripe
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, DisputeCredit, DisputeDebit, Movement, Payout, Refund
from thred_bridge.domain.queue import ClaimedEvent, Connection
from thred_bridge.domain.records import records_for
from thred_bridge.errors import NotReadyError, TranslationError
from thred_bridge.processors.stripe.sync import StripeProcessor

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Bridge:
    stripe: Stripe
    processor: StripeProcessor

    async def movements(self, type_: str, obj: dict[str, Any], *, account: str | None = None) -> list[Movement]:
        event = self.stripe.world.event(type_, obj, account=account)
        claimed = ClaimedEvent(1, "conn_1", "stripe", event["id"], type_, "key", account, json.dumps(event).encode(), 1)
        connection = Connection(
            "conn_1", "stripe", "biz_1", None, None, {"api_key": KEY}, ["whsec_1"], datetime.now(UTC)
        )
        return list(await self.processor.movements(claimed, connection))

    def paths(self) -> list[str]:
        return [r.path for r in self.stripe.world.requests]


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    async with serve_stripe() as stripe:
        processor = StripeProcessor(stripe.base_url)
        try:
            yield Bridge(stripe, processor)
        finally:
            await processor.aclose()


def kinds(moved: list[Movement]) -> list[tuple[str, str]]:
    return [(type(m).__name__, m.object_id) for m in moved]


async def test_authorised_charge_books_nothing_until_captured(bridge: Bridge) -> None:
    world = bridge.stripe.world
    charge = world.add_charge(8000, "usd", captured=False)
    assert await bridge.movements("charge.succeeded", charge) == []
    captured = world.capture(charge["id"], 5000, fee=175)
    (moved,) = await bridge.movements("charge.captured", captured)
    assert isinstance(moved, Charge)
    assert (moved.amount, moved.fee) == (Money(5000, "USD"), Money(175, "USD"))


async def test_charge_refunded_books_every_refund_with_the_charge(bridge: Bridge) -> None:
    world = bridge.stripe.world
    charge = world.add_charge(9000, "eur", fee=150, customer={"name": "Ada"})
    first, second = world.refund(charge["id"], 1000), world.refund(charge["id"], 2000, fee=5)
    moved = await bridge.movements("charge.refunded", world.get(charge["id"]) or {})
    assert kinds(moved) == [("Charge", charge["id"]), ("Refund", second["id"]), ("Refund", first["id"])]
    refunds = [m for m in moved if isinstance(m, Refund)]
    assert [(r.amount.minor, r.fee.minor, r.status) for r in refunds] == [
        (2000, 5, "succeeded"),
        (1000, 0, "succeeded"),
    ]
    assert bridge.paths().count("/v1/refunds") == 1
    assert not any(
        p.startswith("/v1/balance_transactions/txn")
        and p != f"/v1/balance_transactions/{charge['balance_transaction']}"
        for p in bridge.paths()
    )
    records = records_for(moved)
    assert [r.kind for r in records].count("refund_payment") == 2


@pytest.mark.parametrize("type_", ["refund.created", "refund.updated", "charge.refund.updated"])
async def test_a_refund_event_books_the_refund_and_its_charge(bridge: Bridge, type_: str) -> None:
    world = bridge.stripe.world
    charge = world.add_charge(10000, "usd", settlement_currency="eur", exchange_rate="0.9", fee=300)
    refund = world.refund(charge["id"])
    moved = await bridge.movements(type_, refund)
    assert kinds(moved) == [("Refund", refund["id"]), ("Charge", charge["id"])]
    assert moved[0].amount == Money(9000, "EUR")


async def test_refund_without_balance_transaction_waits(bridge: Bridge) -> None:
    world = bridge.stripe.world
    charge = world.add_charge(1000, "usd")
    refund = world.refund(charge["id"], status="pending", pending_balance_transaction=True)
    with pytest.raises(NotReadyError, match="no balance transaction yet"):
        await bridge.movements("refund.created", refund)
    world.settle(refund["id"])
    moved = await bridge.movements("refund.created", refund)
    assert isinstance(moved[0], Refund)
    assert moved[0].status == "pending"


async def test_failed_refund_is_undone(bridge: Bridge) -> None:
    world = bridge.stripe.world
    charge = world.add_charge(1000, "usd")
    refund = world.refund(charge["id"], 400)
    failed = world.fail_refund(refund["id"])
    moved = await bridge.movements("refund.failed", refund)  # the body is stale: the fetch says failed
    assert isinstance(moved[0], Refund)
    assert (moved[0].status, moved[0].amount) == ("failed", Money(400, "USD"))
    assert failed["status"] == "failed"
    deletes = [r for r in records_for(moved) if r.op == "delete"]
    assert [r.external_id for r in deletes] == [f"stripe_{refund['id']}_void"]


async def test_dispute_withdrawn_then_won(bridge: Bridge) -> None:
    world = bridge.stripe.world
    charge = world.add_charge(5000, "usd", fee=175)
    dispute = world.dispute(charge["id"])
    moved = await bridge.movements("charge.dispute.funds_withdrawn", dispute)
    assert kinds(moved) == [("Charge", charge["id"]), ("DisputeDebit", dispute["id"])]
    world.win_dispute(dispute["id"])
    moved = await bridge.movements("charge.dispute.closed", dispute)
    debit, credit = moved[1:]
    assert isinstance(debit, DisputeDebit)
    assert isinstance(credit, DisputeCredit)
    assert (credit.amount, credit.fee_returned) == (Money(5000, "USD"), Money(1500, "USD"))
    assert any(r.external_id == f"stripe_{dispute['id']}_reinstated" for r in records_for(moved))


async def test_dispute_without_money_moved_books_nothing(bridge: Bridge) -> None:
    world = bridge.stripe.world
    charge = world.add_charge(5000, "usd")
    inquiry = world.dispute(charge["id"], funds_withdrawn=False)
    assert await bridge.movements("charge.dispute.created", inquiry) == []


async def test_payout_books_itself_and_everything_it_paid(bridge: Bridge) -> None:
    world = bridge.stripe.world
    ada = world.add_customer(name="Ada", email="ada@example.org")
    charges = [world.add_charge(10000 + i, "eur", fee=100, customer=ada) for i in range(3)]
    walk_in = world.add_charge(7000, "eur", fee=90)
    refund = world.refund(charges[0]["id"], 2500)
    dispute = world.dispute(charges[1]["id"])
    world.win_dispute(dispute["id"])
    fee = world.add_fee(300, "eur", "Radar")
    payout = world.payout(currency="eur")
    world.requests.clear()
    moved = await bridge.movements("payout.paid", payout)
    (result,) = [m for m in moved if isinstance(m, Payout)]
    assert result.item_net == result.amount
    assert sorted(i.kind for i in result.items) == [
        "charge", "charge", "charge", "charge", "dispute_credit", "dispute_debit", "fee", "refund",
    ]  # fmt: skip
    assert next(i for i in result.items if i.kind == "fee").object_id == fee["id"]
    assert sorted(kinds(moved)) == sorted(
        [("Payout", payout["id"]), ("Refund", refund["id"]), ("DisputeDebit", dispute["id"])]
        + [("DisputeCredit", dispute["id"])]
        + [("Charge", c["id"]) for c in [*charges, walk_in]]
    )
    # The list expanded every source: no charge, refund or dispute is fetched again; Ada once.
    assert bridge.paths() == [f"/v1/payouts/{payout['id']}", "/v1/balance_transactions", f"/v1/customers/{ada['id']}"]
    assert len(records_for(moved)) > len(moved)


async def test_a_refund_in_a_payout_fetches_its_charge_from_an_earlier_payout(bridge: Bridge) -> None:
    world = bridge.stripe.world
    charge = world.add_charge(10000, "eur", fee=100)
    world.payout(currency="eur")
    world.add_charge(5000, "eur", fee=50)
    refund = world.refund(charge["id"], 1000)
    second = world.payout(currency="eur")
    moved = await bridge.movements("payout.reconciliation_completed", second)
    assert ("Refund", refund["id"]) in kinds(moved)
    assert ("Charge", charge["id"]) in kinds(moved)
    assert f"/v1/charges/{charge['id']}" in bridge.paths()


async def test_failed_payout_and_the_one_that_repays_it(bridge: Bridge) -> None:
    world = bridge.stripe.world
    world.add_charge(10000, "eur", fee=100)
    first = world.payout(currency="eur")
    world.fail_payout(first["id"])
    moved = await bridge.movements("payout.failed", first)
    (failed,) = [m for m in moved if isinstance(m, Payout)]
    assert (failed.status, failed.metadata["failure_code"]) == ("failed", "account_closed")
    world.add_charge(2000, "eur", fee=40)
    again = world.payout(currency="eur")
    moved = await bridge.movements("payout.paid", again)
    (repaid,) = [m for m in moved if isinstance(m, Payout)]
    # The payout_failure lump is replaced by what the failed payout carried: its charge is settled here.
    assert sorted((i.kind, i.amount.minor, i.fee.minor) for i in repaid.items) == [
        ("charge", 2000, 40),
        ("charge", 10000, 100),
    ]
    assert repaid.amount == repaid.item_net == Money(9900 + 1960, "EUR")
    assert sum(isinstance(m, Charge) for m in moved) == 2


async def test_a_refund_that_failed_is_no_refund_in_the_payout(bridge: Bridge) -> None:
    world = bridge.stripe.world
    charge = world.add_charge(10000, "eur", fee=100)
    refund = world.refund(charge["id"], 3000)
    world.fail_refund(refund["id"])
    payout = world.payout(currency="eur")
    moved = await bridge.movements("payout.paid", payout)
    assert kinds(moved) == [("Payout", payout["id"]), ("Charge", charge["id"])]  # the refund is left to its events
    (result,) = [m for m in moved if isinstance(m, Payout)]
    assert sorted((i.kind, i.amount.minor) for i in result.items) == [
        ("adjustment", -3000),
        ("adjustment", 3000),
        ("charge", 10000),
    ]
    assert result.amount == result.item_net == Money(9900, "EUR")


async def test_a_payout_of_many_pages(bridge: Bridge) -> None:
    world = bridge.stripe.world
    for i in range(230):
        world.add_charge(1000 + i, "jpy", fee=36)
    payout = world.payout(currency="jpy")
    moved = await bridge.movements("payout.paid", payout)
    assert len(moved) == 231
    assert bridge.paths().count("/v1/balance_transactions") == 3


async def test_manual_payout_is_not_itemised(bridge: Bridge) -> None:
    world = bridge.stripe.world
    world.add_charge(1000, "eur")
    payout = world.payout(currency="eur", automatic=False)
    (result,) = await bridge.movements("payout.paid", payout)
    assert isinstance(result, Payout)
    assert (result.itemised, result.items) == (False, ())
    assert "/v1/balance_transactions" not in bridge.paths()


async def test_unreconciled_payout_waits(bridge: Bridge) -> None:
    world = bridge.stripe.world
    world.add_charge(1000, "eur")
    payout = world.payout(currency="eur", status="in_transit", reconciled=False)
    with pytest.raises(NotReadyError, match="in_progress"):
        await bridge.movements("payout.updated", payout)
    world.reconcile_payout(payout["id"])
    assert len(await bridge.movements("payout.reconciliation_completed", payout)) == 2


async def test_connected_account_on_every_fetch(bridge: Bridge) -> None:
    world = bridge.stripe.world
    customer = world.add_customer(name="Grace", account=ACCOUNT)
    charge = world.add_charge(3000, "gbp", customer=customer, account=ACCOUNT)
    refund = world.refund(charge["id"], 500, account=ACCOUNT)
    dispute = world.dispute(charge["id"], account=ACCOUNT)
    payout = world.payout(currency="gbp", account=ACCOUNT)
    world.requests.clear()
    await bridge.movements("charge.refunded", world.get(charge["id"], account=ACCOUNT) or {}, account=ACCOUNT)
    await bridge.movements("refund.updated", refund, account=ACCOUNT)
    await bridge.movements("charge.dispute.funds_withdrawn", dispute, account=ACCOUNT)
    moved = await bridge.movements("payout.paid", payout, account=ACCOUNT)
    assert all(m.account == ACCOUNT for m in moved)
    assert world.requests
    assert {r.account for r in world.requests} == {ACCOUNT}


async def test_an_event_with_the_wrong_object_is_refused(bridge: Bridge) -> None:
    charge = bridge.stripe.world.add_charge(1000, "usd")
    with pytest.raises(TranslationError, match="does not carry a payout"):
        await bridge.movements("payout.paid", charge)
