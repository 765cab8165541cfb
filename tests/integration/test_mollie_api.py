"""MollieApi (the official mollie-api-python SDK) against the simulated Mollie API, served by a real uvicorn
on loopback; and the simulated Mollie's own HTTP contract (HAL lists, ``from`` paging, errors, auth)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from thred_bridge.errors import ProcessorError, ProcessorUnavailableError
from thred_bridge.processors.mollie.api import MollieApi, NoOrganizationTokenError
from thred_bridge.processors.mollie.translate import payment_movements
from thred_bridge.processors.mollie.translate_settlements import to_payout
from thred_bridge.serving import serve_in_background
from thred_bridge.simulators.mollie_api import MollieWorld, create_app

pytestmark = pytest.mark.anyio

KEY = "test_" + "k" * 30
TOKEN = "access_" + "t" * 30


@dataclass
class Mollie:
    world: MollieWorld
    url: str
    api: MollieApi
    org: MollieApi


@pytest.fixture
async def mollie() -> AsyncIterator[Mollie]:
    world = MollieWorld(seed=7)
    async with serve_in_background(create_app(world, api_key=KEY, organization_token=TOKEN)) as url:
        yield Mollie(world, url, MollieApi(KEY, base_url=url), MollieApi(KEY, organization_token=TOKEN, base_url=url))


async def test_payment_comes_with_its_refunds_and_chargebacks_as_mollie_json(mollie: Mollie) -> None:
    world = mollie.world
    made = world.create_payment(5000, email="ada@example.org", name="Ada Lovelace")
    world.pay(made["id"])
    refund = world.refund(made["id"], 1500, status="refunded")
    chargeback = world.chargeback(made["id"], 3500, reason=("AC01", "Account identifier incorrect"))
    payment = await mollie.api.payment(made["id"])
    assert payment["status"] == "paid"
    assert payment["amount"] == {"currency": "EUR", "value": "50.00"}
    assert payment["amountRefunded"] == {"currency": "EUR", "value": "15.00"}
    assert payment["amountChargedBack"] == {"currency": "EUR", "value": "35.00"}
    assert [r["id"] for r in payment["_embedded"]["refunds"]] == [refund["id"]]
    assert payment["_embedded"]["refunds"][0]["settlementAmount"] == {"currency": "EUR", "value": "-15.00"}
    assert [c["id"] for c in payment["_embedded"]["chargebacks"]] == [chargeback["id"]]
    moved = payment_movements(payment)
    assert [type(m).__name__ for m in moved] == ["Charge", "Refund", "DisputeDebit"]
    assert [m.amount.minor for m in moved] == [5000, 1500, 3500]
    (seen,) = world.requests
    assert seen.path == f"/v2/payments/{made['id']}"
    assert "embed=refunds%2Cchargebacks%2Ccaptures" in seen.query


async def test_errors_map_to_permanent_and_transient(mollie: Mollie) -> None:
    with pytest.raises(ProcessorError) as missing:
        await mollie.api.payment("tr_doesnotexist")
    assert (type(missing.value), missing.value.status) == (ProcessorError, 404)
    assert "No payment exists with token tr_doesnotexist" in missing.value.message

    with pytest.raises(ProcessorError) as refused:
        await MollieApi("test_" + "x" * 30, base_url=mollie.url).payment("tr_doesnotexist")
    assert (type(refused.value), refused.value.status) == (ProcessorError, 401)
    assert "x" * 30 not in refused.value.message

    with pytest.raises(ProcessorError, match="refusing to fetch"):  # the SDK refuses the id before any request
        await mollie.api.payment("re_notapayment")

    made = mollie.world.create_payment(1000)
    mollie.world.fail_next("/v2/payments/", 429, retry_after=7)
    with pytest.raises(ProcessorUnavailableError) as limited:
        await mollie.api.payment(made["id"])
    assert (limited.value.status, limited.value.retry_after) == (429, 7.0)
    mollie.world.fail_next("/v2/payments/", 503)
    with pytest.raises(ProcessorUnavailableError) as down:
        await mollie.api.payment(made["id"])
    assert down.value.status == 503
    assert (await mollie.api.payment(made["id"]))["status"] == "open"


async def test_unreachable_mollie_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = MollieApi(KEY, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ProcessorUnavailableError, match="cannot reach Mollie"):
        await api.payment("tr_abcdefgh")


async def test_settlements_need_the_organization_token(mollie: Mollie) -> None:
    made = mollie.world.create_payment(1000)
    mollie.world.pay(made["id"])
    settlement = mollie.world.settle()
    with pytest.raises(NoOrganizationTokenError, match="organization access token"):
        await mollie.api.settlement(settlement["id"])
    assert mollie.world.requests == []  # refused before any request
    async with httpx.AsyncClient(base_url=mollie.url) as http:
        answer = await http.get(f"/v2/settlements/{settlement['id']}", headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 403
        assert answer.json()["title"] == "Forbidden"
        balances = await http.get("/v2/balances/primary/transactions", headers={"Authorization": f"Bearer {KEY}"})
        assert balances.status_code == 401  # the Balances API takes no profile API key at all
    fetched = await mollie.org.settlement(settlement["id"])
    assert fetched["id"] == settlement["id"]
    by_reference = await mollie.org.settlement(settlement["reference"])
    assert by_reference["id"] == settlement["id"]


async def test_a_settlement_of_600_payments_is_read_page_by_page_and_ties_out(mollie: Mollie) -> None:
    world = mollie.world
    paid = []
    for n in range(600):
        made = world.create_payment(1000 + n * 7, method="creditcard" if n % 3 else "ideal")
        world.pay(made["id"])
        paid.append(made["id"])
    refunds = [world.refund(p, 500, status="refunded")["id"] for p in paid[:20]]
    chargeback = world.chargeback(paid[100])["id"]
    stl = world.settle()
    settlement = await mollie.org.settlement(stl["id"])
    payments = await mollie.org.settlement_items(settlement, "payments")
    assert [p["id"] for p in payments] == list(reversed(paid))  # newest first, every page
    assert [r["id"] for r in await mollie.org.settlement_items(settlement, "refunds")] == list(reversed(refunds))
    assert [c["id"] for c in await mollie.org.settlement_items(settlement, "chargebacks")] == [chargeback]
    assert await mollie.org.settlement_items(settlement, "captures") == []
    pages = [r for r in world.requests if r.path.endswith("/payments")]
    assert len(pages) == 3
    assert "from=" in pages[1].query
    assert "limit=250" in pages[2].query
    refunded = await mollie.org.settlement_items(settlement, "refunds")
    chargebacks = await mollie.org.settlement_items(settlement, "chargebacks")
    payout = to_payout(settlement, payments, refunded, chargebacks)
    assert sum(i.amount.minor for i in payout.items) == payout.amount.minor  # variance 0


async def test_balance_transactions_are_listed_with_deductions(mollie: Mollie) -> None:
    made = mollie.world.create_payment(1000)
    mollie.world.pay(made["id"])
    mollie.world.refund(made["id"], 400)
    transactions = await mollie.org.balance_transactions()
    assert [t["type"] for t in transactions] == ["refund", "payment"]
    payment = transactions[1]
    assert payment["initialAmount"]["value"] == "10.00"
    assert payment["deductions"]["value"] == "-0.35"  # iDEAL's 0.29 plus 21 % VAT, rounded as it comes in
    assert payment["resultAmount"]["value"] == "9.65"
    assert payment["context"] == {"paymentId": made["id"]}


async def test_fake_pages_with_from_and_answers_mollie_errors(mollie: Mollie) -> None:
    world = mollie.world
    made = [world.create_payment(100 + n)["id"] for n in range(5)]
    auth = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=mollie.url, headers=auth) as http:
        first = (await http.get("/v2/payments", params={"limit": 2})).json()
        assert first["count"] == 2
        assert [p["id"] for p in first["_embedded"]["payments"]] == made[::-1][:2]
        assert first["_links"]["previous"] is None
        follow = first["_links"]["next"]["href"]
        assert follow == f"{mollie.url}/v2/payments?from={made[2]}&limit=2"
        second = (await http.get(follow)).json()
        assert [p["id"] for p in second["_embedded"]["payments"]] == [made[2], made[1]]
        last = (await http.get(second["_links"]["next"]["href"])).json()
        assert (last["count"], last["_links"]["next"]) == (1, None)
        missing = await http.get("/v2/payments/tr_missing1")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/hal+json")
        body = missing.json()
        assert set(body) == {"status", "title", "detail", "_links"}
        assert body["_links"]["documentation"]["type"] == "text/html"
        assert (await http.get("/v2/payments", params={"limit": 251})).status_code == 400
        bad = await http.get("/v2/payments/tr_x1", headers={"Authorization": "Bearer test_wrongwrongwrong"})
        assert (bad.status_code, bad.json()["title"]) == (401, "Unauthorized Request")
