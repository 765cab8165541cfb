"""StripeApi's refund, dispute and payout fetches and its paged lists, against the simulated Stripe
API on a real uvicorn server: every page, Stripe's list envelope, and errors on any page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.stripe_support import ACCOUNT, KEY, Stripe, serve_stripe
from thred_bridge.domain.movements import DisputeCredit
from thred_bridge.errors import ProcessorError, ProcessorUnavailableError
from thred_bridge.processors.stripe.translate_payouts import to_payout
from thred_bridge.processors.stripe.translate_refunds import to_dispute_movements, to_refund

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stripe_server() -> AsyncIterator[Stripe]:
    async with serve_stripe() as served:
        yield served


async def _all(items: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item async for item in items]


async def test_refund_dispute_and_payout_fetches(stripe_server: Stripe) -> None:
    world, api = stripe_server.world, stripe_server.api
    charge = world.add_charge(10000, "usd", settlement_currency="eur", exchange_rate="0.9", fee=300)
    made = world.refund(charge["id"], 4000)
    refund = await api.refund(made["id"])
    assert refund == made
    bt = await api.balance_transaction(refund["balance_transaction"])
    assert (bt["amount"], bt["currency"], bt["type"], bt["reporting_category"]) == (-3600, "eur", "refund", "refund")
    assert to_refund(refund, bt, account=None).amount.format() == "36.00 EUR"
    assert (await api.charge(charge["id"]))["amount_refunded"] == 4000

    dispute = world.dispute(charge["id"])
    fetched = await api.dispute(dispute["id"])
    (withdrawal,) = fetched["balance_transactions"]
    assert (withdrawal["amount"], withdrawal["fee"], withdrawal["net"]) == (-9000, 1500, -10500)
    world.win_dispute(dispute["id"])
    debit, credit = to_dispute_movements(await api.dispute(dispute["id"]), account=None)
    assert isinstance(credit, DisputeCredit)
    assert (debit.amount.minor, credit.amount.minor, credit.fee_returned.minor) == (9000, 9000, 1500)

    payout = world.payout(currency="eur")
    assert payout["amount"] == 9000 - 300 - 3600 - 10500 + 10500
    assert await api.payout(payout["id"]) == payout


async def test_missing_objects_are_permanent_404s(stripe_server: Stripe) -> None:
    api = stripe_server.api
    for fetch, noun in ((api.refund, "refund"), (api.dispute, "dispute"), (api.payout, "payout")):
        with pytest.raises(ProcessorError, match=f"Stripe has no {noun} x_1") as caught:
            await fetch("x_1")
        assert caught.value.status == 404
        assert not isinstance(caught.value, ProcessorUnavailableError)
    with pytest.raises(ProcessorError, match="empty id"):
        await api.refund(" ")
    with pytest.raises(ProcessorError, match="empty id"):
        api.list_balance_transactions(payout="")


def _many(stripe: Stripe, n: int, *, account: str | None = None) -> dict[str, Any]:
    for i in range(n):
        stripe.world.add_charge(1000 + i, "eur", fee=10, account=account)
    return stripe.world.payout(currency="eur", account=account)


async def test_a_payout_of_250_transactions_is_read_page_by_page(stripe_server: Stripe) -> None:
    payout = _many(stripe_server, 250)
    bts = await _all(stripe_server.api.list_balance_transactions(payout=payout["id"]))
    assert len(bts) == 251  # and the payout's own transaction
    assert len({bt["id"] for bt in bts}) == 251
    pages = [r for r in stripe_server.world.requests if r.path == "/v1/balance_transactions"]
    assert [r.status for r in pages] == [200, 200, 200]
    assert all(isinstance(bt["source"], dict) for bt in bts)  # expand[]=data.source
    assert sum(bt["net"] for bt in bts) == 0
    result = to_payout(await stripe_server.api.payout(payout["id"]), bts, account=None)
    assert len(result.items) == 250
    assert result.item_net == result.amount


@pytest.mark.parametrize(("status", "retry_after"), [(429, 3), (500, None)])
async def test_a_failed_later_page_is_transient(stripe_server: Stripe, status: int, retry_after: int | None) -> None:
    payout = _many(stripe_server, 120)
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        async for bt in stripe_server.api.list_balance_transactions(payout=payout["id"]):
            seen.append(bt)
            if len(seen) == 100:  # the first page is read; the next request fails
                stripe_server.world.fail_next("/v1/balance_transactions", status, retry_after=retry_after)

    with pytest.raises(ProcessorUnavailableError) as caught:
        await read()
    assert len(seen) == 100
    assert caught.value.status == status
    assert caught.value.retry_after == (float(retry_after) if retry_after else None)
    assert f"balance transactions of payout {payout['id']}" in caught.value.message
    assert len(await _all(stripe_server.api.list_balance_transactions(payout=payout["id"]))) == 121


async def test_lists_of_a_connected_account(stripe_server: Stripe) -> None:
    payout = _many(stripe_server, 3, account=ACCOUNT)
    bts = await _all(stripe_server.api.list_balance_transactions(payout=payout["id"], account=ACCOUNT))
    assert len(bts) == 4
    assert {r.account for r in stripe_server.world.requests} == {ACCOUNT}
    with pytest.raises(ProcessorError) as caught:
        await _all(stripe_server.api.list_balance_transactions(payout=payout["id"]))
    assert caught.value.status == 404


async def test_a_manual_payout_cannot_be_listed(stripe_server: Stripe) -> None:
    stripe_server.world.add_charge(1000, "eur")
    payout = stripe_server.world.payout(currency="eur", automatic=False)
    with pytest.raises(ProcessorError, match="only be filtered on automatic") as caught:
        await _all(stripe_server.api.list_balance_transactions(payout=payout["id"]))
    assert caught.value.status == 400


async def test_an_unreconciled_payout_lists_nothing_until_reconciled(stripe_server: Stripe) -> None:
    stripe_server.world.add_charge(1000, "eur")
    payout = stripe_server.world.payout(currency="eur", reconciled=False)
    assert payout["reconciliation_status"] == "in_progress"
    assert await _all(stripe_server.api.list_balance_transactions(payout=payout["id"])) == []
    stripe_server.world.reconcile_payout(payout["id"])
    assert len(await _all(stripe_server.api.list_balance_transactions(payout=payout["id"]))) == 2


async def test_refunds_of_a_charge_every_page(stripe_server: Stripe) -> None:
    world = stripe_server.world
    charge = world.add_charge(50000, "usd")
    other = world.add_charge(50000, "usd")
    made = [world.refund(charge["id"], 100) for _ in range(105)]
    world.refund(other["id"], 100)
    refunds = await _all(stripe_server.api.list_refunds_for_charge(charge["id"]))
    assert sorted(r["id"] for r in refunds) == sorted(r["id"] for r in made)
    assert all(r["balance_transaction"]["amount"] == -100 for r in refunds)  # expanded
    assert [r.path for r in world.requests] == ["/v1/refunds", "/v1/refunds"]
    world.fail_next("/v1/refunds", 503)
    with pytest.raises(ProcessorUnavailableError, match="refunds of charge"):
        await _all(stripe_server.api.list_refunds_for_charge(charge["id"]))


async def test_simulated_list_envelope_paging_and_limits(stripe_server: Stripe) -> None:
    world = stripe_server.world
    charge = world.add_charge(1000, "usd")
    first, second, third = (world.refund(charge["id"], 100) for _ in range(3))
    async with httpx.AsyncClient(base_url=stripe_server.base_url, headers=AUTH) as http:
        page = (await http.get(f"/v1/charges/{charge['id']}/refunds", params={"limit": 2})).json()
        assert page["object"] == "list"
        assert page["url"] == f"/v1/charges/{charge['id']}/refunds"
        assert [r["id"] for r in page["data"]] == [third["id"], second["id"]]  # newest first
        assert page["has_more"] is True
        rest = await http.get(
            "/v1/refunds", params={"charge": charge["id"], "limit": 2, "starting_after": second["id"]}
        )
        assert [r["id"] for r in rest.json()["data"]] == [first["id"]]
        assert rest.json()["has_more"] is False
        assert rest.json()["url"] == "/v1/refunds"
        assert isinstance(rest.json()["data"][0]["balance_transaction"], str)
        expanded = await http.get("/v1/refunds", params=[("charge", charge["id"]), ("expand[0]", "data.charge")])
        assert expanded.json()["data"][0]["charge"]["id"] == charge["id"]
        for limit in ("0", "101", "ten"):
            refused = await http.get("/v1/balance_transactions", params={"limit": limit})
            assert refused.status_code == 400
            assert refused.json()["error"]["param"] == "limit"
        everything = (await http.get("/v1/balance_transactions", params={"limit": 100})).json()
        assert len(everything["data"]) == 4
        gone = await http.get("/v1/balance_transactions", params={"payout": "po_nope"})
        assert gone.status_code == 404
        assert gone.json()["error"]["message"] == "No such payout: 'po_nope'"
        bad_cursor = await http.get("/v1/refunds", params={"starting_after": "re_nope"})
        assert bad_cursor.status_code == 404
        no_charge = await http.get("/v1/charges/ch_nope/refunds")
        assert no_charge.json()["error"]["message"] == "No such charge: 'ch_nope'"
        assert (await http.get("/v1/balance_transactions")).status_code == 200
        assert (await http.get("/v1/balance_transactions", headers={"Authorization": ""})).status_code == 401


async def test_failed_refund_and_failed_payout(stripe_server: Stripe) -> None:
    world, api = stripe_server.world, stripe_server.api
    charge = world.add_charge(5000, "eur", fee=100)
    refund = world.refund(charge["id"], 1000)
    first = world.payout(currency="eur")
    assert first["amount"] == 5000 - 100 - 1000
    failed = world.fail_refund(refund["id"])
    assert (failed["status"], failed["failure_reason"]) == ("failed", "expired_or_canceled_card")
    back = await api.balance_transaction(failed["failure_balance_transaction"])
    assert (back["type"], back["reporting_category"], back["amount"]) == ("refund_failure", "refund_failure", 1000)
    assert (await api.charge(charge["id"]))["amount_refunded"] == 0
    world.fail_payout(first["id"])
    assert (await api.payout(first["id"]))["status"] == "failed"
    again = world.payout(currency="eur")
    assert again["amount"] == 3900 + 1000
    bts = await _all(api.list_balance_transactions(payout=again["id"]))
    assert sorted(bt["type"] for bt in bts) == ["payout", "payout_failure", "refund_failure"]
    failure = next(bt for bt in bts if bt["type"] == "payout_failure")
    assert failure["source"]["id"] == first["id"]  # the failed payout, expanded
    result = to_payout(again, bts, account=None)
    assert [i.kind for i in result.items] == ["adjustment", "adjustment"]
    assert result.item_net == result.amount
    still = await _all(api.list_balance_transactions(payout=first["id"]))
    assert len(still) == 3  # a failed payout keeps listing what it swept


async def test_capture_books_the_captured_amount(stripe_server: Stripe) -> None:
    world, api = stripe_server.world, stripe_server.api
    charge = world.add_charge(8000, "usd", captured=False)
    fetched = await api.charge(charge["id"])
    assert (fetched["captured"], fetched["amount_captured"], fetched["balance_transaction"]) == (False, 0, None)
    world.capture(charge["id"], 6000)
    fetched = await api.charge(charge["id"])
    bt = await api.balance_transaction(fetched["balance_transaction"])
    assert (fetched["captured"], fetched["amount_captured"], bt["amount"], bt["fee"]) == (True, 6000, 6000, 204)
    assert (await api.payment_intent(fetched["payment_intent"]))["amount_received"] == 6000
