"""StripeApi (the official SDK) against the simulated Stripe API, served by a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integration.stripe_support import ACCOUNT, KEY, Stripe, serve_stripe
from thred_bridge.errors import ProcessorError, ProcessorUnavailableError
from thred_bridge.processors.stripe.api import StripeApi
from thred_bridge.processors.stripe.translate import balance_transaction_id, to_charge


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stripe_server() -> AsyncIterator[Stripe]:
    async with serve_stripe() as served:
        yield served


@pytest.mark.anyio
async def test_fetch_charge_balance_transaction_customer_and_payment_intent(stripe_server: Stripe) -> None:
    world, api = stripe_server.world, stripe_server.api
    made = world.add_charge(
        50000, "eur", fee=892, tax=167, customer={"name": "Jana Nováková", "email": "jana@example.com"}
    )
    charge = await api.charge(made["id"])
    assert charge == made
    bt = await api.balance_transaction(balance_transaction_id(charge))
    assert (bt["amount"], bt["fee"], bt["net"], bt["source"]) == (50000, 892, 49108, made["id"])
    assert [d["type"] for d in bt["fee_details"]] == ["stripe_fee", "tax"]
    customer = await api.customer(charge["customer"])
    assert customer["name"] == "Jana Nováková"
    pi = await api.payment_intent(charge["payment_intent"])
    assert pi["latest_charge"] == made["id"]
    result = to_charge(charge, bt, customer=customer, account=None)
    assert result.amount.format() == "500.00 EUR"
    assert result.fee.format() == "8.92 EUR"
    assert result.metadata["fee_details"] == "stripe_fee=725;tax=167"
    assert all(type(v) in {dict, list, str, int, float, bool, type(None)} for v in charge.values())


@pytest.mark.anyio
async def test_fx_exchange_rate_survives_the_sdk(stripe_server: Stripe) -> None:
    made = stripe_server.world.add_charge(1000, "usd", settlement_currency="eur", exchange_rate="0.912345")
    bt = await stripe_server.api.balance_transaction(made["balance_transaction"])
    assert (bt["amount"], bt["currency"], bt["exchange_rate"]) == (912, "eur", 0.912345)
    charge = await stripe_server.api.charge(made["id"])
    result = to_charge(charge, bt, customer=None, account=None)
    assert result.metadata["exchange_rate"] == "0.912345"
    assert result.metadata["presentment_amount"] == "10.00"


@pytest.mark.anyio
async def test_stripe_account_scopes_every_fetch(stripe_server: Stripe) -> None:
    world, api = stripe_server.world, stripe_server.api
    made = world.add_charge(2000, "usd", account=ACCOUNT)
    fetched = await api.charge(made["id"], account=ACCOUNT)
    assert fetched["id"] == made["id"]
    assert (await api.balance_transaction(made["balance_transaction"], account=ACCOUNT))["source"] == made["id"]
    assert world.requests[-1].account == ACCOUNT
    with pytest.raises(ProcessorError) as caught:
        await api.charge(made["id"])  # the platform has no such charge
    assert caught.value.status == 404
    assert world.requests[-1].account is None


@pytest.mark.anyio
async def test_unknown_connected_account_is_a_permanent_403(stripe_server: Stripe) -> None:
    with pytest.raises(ProcessorError) as caught:
        await stripe_server.api.charge("ch_1", account="acct_nobody")
    assert caught.value.status == 403
    assert not isinstance(caught.value, ProcessorUnavailableError)
    assert "acct_nobody" in caught.value.message


@pytest.mark.anyio
async def test_missing_object_is_a_permanent_404(stripe_server: Stripe) -> None:
    with pytest.raises(ProcessorError) as caught:
        await stripe_server.api.charge("ch_missing")
    assert caught.value.status == 404
    assert not isinstance(caught.value, ProcessorUnavailableError)
    assert caught.value.message.startswith("Stripe has no charge ch_missing (No such charge: 'ch_missing'")
    with pytest.raises(ProcessorError, match="Stripe has no customer cus_missing"):
        await stripe_server.api.customer("cus_missing")


@pytest.mark.anyio
async def test_an_object_of_another_type_is_not_found(stripe_server: Stripe) -> None:
    made = stripe_server.world.add_charge(2000, "usd")
    with pytest.raises(ProcessorError, match="No such payment_intent"):
        await stripe_server.api.payment_intent(made["id"])


@pytest.mark.anyio
async def test_rate_limit_is_transient_with_retry_after(stripe_server: Stripe) -> None:
    world, api = stripe_server.world, stripe_server.api
    made = world.add_charge(2000, "usd")
    world.fail_next("/v1/charges/", 429, retry_after=7)
    with pytest.raises(ProcessorUnavailableError) as caught:
        await api.charge(made["id"])
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert "rate limit" in caught.value.message
    assert (await api.charge(made["id"]))["id"] == made["id"]  # the SDK did not retry: the fault was used once
    assert [r.status for r in world.requests] == [429, 200]


@pytest.mark.anyio
async def test_server_errors_are_transient(stripe_server: Stripe) -> None:
    world, api = stripe_server.world, stripe_server.api
    made = world.add_charge(2000, "usd")
    world.fail_next("balance_transactions", 500, times=2)
    for _ in range(2):
        with pytest.raises(ProcessorUnavailableError) as caught:
            await api.balance_transaction(made["balance_transaction"])
        assert caught.value.status == 500
        assert caught.value.retry_after is None
    assert (await api.balance_transaction(made["balance_transaction"]))["id"] == made["balance_transaction"]
    world.fail_next("charges", 503)
    with pytest.raises(ProcessorUnavailableError, match="503"):
        await api.charge(made["id"])


@pytest.mark.anyio
async def test_wrong_api_key_is_a_permanent_401_that_never_shows_the_key(stripe_server: Stripe) -> None:
    wrong = "sk_test_51WrongKeyThatMustNeverBeLogged000000wxyz"
    async with StripeApi(wrong, base_url=stripe_server.base_url) as api:
        with pytest.raises(ProcessorError) as caught:
            await api.charge("ch_1")
        assert wrong not in repr(api)
    assert caught.value.status == 401
    assert not isinstance(caught.value, ProcessorUnavailableError)
    assert "secret key" in caught.value.message
    for text in (str(caught.value), repr(caught.value), caught.value.message):
        assert wrong not in text
        assert KEY not in text


@pytest.mark.anyio
async def test_connection_refused_is_transient() -> None:
    async with StripeApi(KEY, base_url="http://127.0.0.1:9", timeout=2) as api:
        with pytest.raises(ProcessorUnavailableError, match="cannot reach Stripe") as caught:
            await api.charge("ch_1")
    assert KEY not in str(caught.value)


@pytest.mark.anyio
async def test_empty_id_is_refused_before_it_becomes_a_list_request(stripe_server: Stripe) -> None:
    with pytest.raises(ProcessorError, match="empty id"):
        await stripe_server.api.charge("")
    assert stripe_server.world.requests == []


@pytest.mark.anyio
async def test_stripe_notice_is_logged_not_warned(stripe_server: Stripe, caplog: pytest.LogCaptureFixture) -> None:
    stripe_server.world.stripe_notice = "This API version is deprecated."
    made = stripe_server.world.add_charge(2000, "usd")
    with caplog.at_level(logging.WARNING, logger="thred_bridge.processors.stripe.api"):
        await stripe_server.api.charge(made["id"])  # filterwarnings=error would turn a warning into a failure
    assert "This API version is deprecated." in caplog.text


@pytest.mark.anyio
async def test_pending_balance_transaction_then_settled(stripe_server: Stripe) -> None:
    world, api = stripe_server.world, stripe_server.api
    made = world.add_charge(2000, "usd", pending_balance_transaction=True)
    charge = await api.charge(made["id"])
    assert charge["balance_transaction"] is None
    world.settle(made["id"])
    charge = await api.charge(made["id"])
    bt = await api.balance_transaction(balance_transaction_id(charge))
    assert bt["amount"] == 2000
    assert bt["fee"] == 88  # 2.9% + 30


def test_repr_hides_the_key() -> None:
    api = StripeApi(KEY, base_url="http://127.0.0.1:1")
    assert KEY not in repr(api)
    asyncio.run(api.aclose())


@pytest.mark.anyio
async def test_simulator_envelopes_basic_auth_and_expand(stripe_server: Stripe) -> None:
    made = stripe_server.world.add_charge(2000, "usd", customer={"name": "Ada"})
    async with httpx.AsyncClient(base_url=stripe_server.base_url) as http:
        missing = await http.get(f"/v1/charges/{made['id']}")
        assert missing.status_code == 401
        assert missing.json()["error"]["type"] == "invalid_request_error"
        wrong = await http.get(f"/v1/charges/{made['id']}", auth=("sk_test_wrongwrongwrong1234", ""))
        assert wrong.json()["error"]["message"] == "Invalid API Key provided: sk_test_****1234"
        expanded = await http.get(
            f"/v1/charges/{made['id']}",
            params=[("expand[]", "customer"), ("expand[]", "balance_transaction")],
            auth=(KEY, ""),
        )
        assert expanded.status_code == 200
        assert expanded.json()["customer"]["name"] == "Ada"
        assert expanded.json()["balance_transaction"]["source"] == made["id"]
        assert expanded.headers["request-id"].startswith("req_")
        unknown = await http.get("/v1/widgets/w_1", headers={"Authorization": f"Bearer {KEY}"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/widgets/w_1)")
        gone = await http.get("/v1/charges/ch_nope", headers={"Authorization": f"Bearer {KEY}"})
        assert gone.json() == {
            "error": {
                "message": "No such charge: 'ch_nope'",
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "id",
                "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
            }
        }
