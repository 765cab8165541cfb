"""The Thred sandbox over HTTP: tokens, idempotency, ordering errors, money rules, lists, faults, persistence.

Most tests drive the app in process through ``httpx.ASGITransport``; one runs it under a real uvicorn
server on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from thred_bridge.sandbox import Books, create_app

PLATFORM = "/v1/platform"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


class Thred:
    """A client for one business of the sandbox, with helpers that create records in order."""

    def __init__(self, client: httpx.AsyncClient, business_id: str = "biz-1") -> None:
        self.client = client
        self.business_id = business_id
        self.headers: dict[str, str] = {}

    @property
    def base(self) -> str:
        return f"{PLATFORM}/businesses/{self.business_id}"

    async def login(self) -> Thred:
        partner = await self.client.post(f"{PLATFORM}/oauth2/token/", auth=("partner-1", "secret"))
        bearer = {"Authorization": f"Bearer {partner.json()['access_token']}"}
        business = await self.client.post(f"{PLATFORM}/{self.business_id}/oauth2/token/", headers=bearer)
        assert business.status_code == 200, business.text
        self.headers = {"Authorization": f"Bearer {business.json()['access_token']}"}
        return self

    async def post(self, path: str, json: Any = None, **headers: str) -> httpx.Response:
        return await self.client.post(self.base + path, json=json, headers=self.headers | headers)

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(self.base + path, params=params, headers=self.headers)

    async def created(self, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        response = await self.post(path, body, **headers)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def customer(self, external_id: str = "cus_1") -> dict[str, Any]:
        return await self.created("/customers/", {"external_id": external_id, "company_name": "Acme Ltd"})

    async def invoice(self, customer: dict[str, Any], cents: int, external_id: str = "in_1") -> dict[str, Any]:
        line = {"quantity": 1, "unit_price": cents, "description": "Charge"}
        body = {
            "external_id": external_id,
            "customer_id": customer["id"],
            "sent_at": "2025-03-01T10:00:00Z",
            "line_items": [line],
        }
        return await self.created("/invoices/", body)

    async def pay(self, invoice: dict[str, Any], cents: int, external_id: str = "pi_1") -> dict[str, Any]:
        body = {
            "customer_id": invoice["customer"]["id"],
            "total_amount_cents": cents,
            "currency": "EUR",
            "allocations": [{"invoice_id": invoice["id"], "amount_cents": cents}],
            "external_id": external_id,
            "payment_processor": "stripe",
            "processing_fee_cents": 30,
        }
        response = await self.created("/invoices/payments/", body, **{"Idempotency-Key": external_id})
        payment: dict[str, Any] = response["payment"]
        return payment

    async def refund(self, invoice: dict[str, Any], cents: int | None, external_id: str = "re_1") -> dict[str, Any]:
        body: dict[str, Any] = {
            "invoice_id": invoice["id"],
            "method": "STRIPE",
            "external_id": external_id,
            "completed_at": "2025-03-02T10:00:00Z",
        }
        if cents is not None:
            body["amount_cents"] = cents
        return await self.created("/invoices/refunds/", body)

    async def refund_payment(self, refund: dict[str, Any], cents: int, external_id: str = "rp_1") -> httpx.Response:
        body = {"amount_cents": cents, "method": "STRIPE", "external_id": external_id, "processor": "stripe"}
        return await self.post(f"/invoices/refunds/{refund['id']}/payments/", body)

    @staticmethod
    def payout(external_id: str = "po_1", **fields: Any) -> dict[str, Any]:
        return {
            "external_id": external_id,
            "processor": "stripe",
            "currency": "EUR",
            "status": "paid",
            "completed_at": "2025-03-03T00:00:00Z",
            "fee_cents": 0,
            "paid_out_amount_cents": 0,
        } | fields


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sandbox") as http:
        yield http


@pytest.fixture
async def thred(client: httpx.AsyncClient) -> Thred:
    return await Thred(client).login()


# tokens and scopes ------------------------------------------------------------------------------------


async def test_partner_token_accepts_form_json_and_empty_bodies() -> None:
    app = create_app(partners={"partner-1": "secret"}, token_ttl=900)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sandbox") as http:
        url = f"{PLATFORM}/oauth2/token/"
        for kwargs in (
            {"data": {"grant_type": "client_credentials"}},
            {"json": {"client_id": "partner-1", "grant_type": "client_credentials"}},
            {},
        ):
            response = await http.post(url, auth=("partner-1", "secret"), **kwargs)  # type: ignore[arg-type]
            assert response.status_code == 200, response.text
            assert response.json()["token_type"] == "Bearer"
            assert response.json()["expires_in"] == 900
        bad = await http.post(url, auth=("partner-1", "wrong"))
        assert (bad.status_code, bad.json()["error_code"]) == (401, "authentication_required")
        missing = await http.post(url)
        assert (missing.status_code, missing.json()["error_code"]) == (401, "authentication_required")
        grant = await http.post(url, auth=("partner-1", "secret"), data={"grant_type": "password"})
        assert (grant.status_code, grant.json()["error_code"]) == (400, "unsupported_grant_type")


async def test_business_token_and_its_scope(client: httpx.AsyncClient, clock: Clock) -> None:
    partner = (await client.post(f"{PLATFORM}/oauth2/token/", auth=("p", "k"))).json()["access_token"]
    minted = await client.post(f"{PLATFORM}/biz-1/oauth2/token/", headers={"Authorization": f"Bearer {partner}"})
    assert minted.status_code == 200
    body = minted.json()
    assert (body["scope"], body["business_id"], body["expires_in"]) == ("business_access", "biz-1", 3600)

    customers = f"{PLATFORM}/businesses/biz-1/customers/"

    async def status(token: str | None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await client.get(customers, headers=headers)
        return response.status_code, response.json().get("error_code", "")

    assert await status(body["access_token"]) == (200, "")
    assert await status(None) == (401, "authentication_required")
    assert await status("garbage") == (401, "invalid_token")
    assert await status(partner) == (403, "permission_denied")
    other = await client.post(f"{PLATFORM}/biz-2/oauth2/token/", headers={"Authorization": f"Bearer {partner}"})
    assert await status(other.json()["access_token"]) == (403, "permission_denied")
    clock.advance(3600)
    assert await status(body["access_token"]) == (401, "invalid_token")


async def test_unknown_business_is_404_without_auto_create() -> None:
    app = create_app(auto_create_businesses=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sandbox") as http:
        partner = (await http.post(f"{PLATFORM}/oauth2/token/", auth=("p", "k"))).json()["access_token"]
        bearer = {"Authorization": f"Bearer {partner}"}
        missing = await http.post(f"{PLATFORM}/nope/oauth2/token/", headers=bearer)
        assert (missing.status_code, missing.json()["error_code"]) == (404, "business_not_found")
        body = {"external_id": "acme", "legal_name": "Acme BV", "entity_type": "bv", "email": "a@acme.nl"}
        first = await http.post(f"{PLATFORM}/businesses/", json=body, headers=bearer)
        again = await http.post(f"{PLATFORM}/businesses/", json=body | {"legal_name": "Other"}, headers=bearer)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["legal_name"] == "Acme BV"
        assert (first.json()["_meta"], again.json()["_meta"]) == ({"created": True}, {"created": False})
        business_id = first.json()["id"]
        assert (await http.post(f"{PLATFORM}/{business_id}/oauth2/token/", headers=bearer)).status_code == 200
        listed = await http.get(f"{PLATFORM}/businesses/", params={"external_id": "acme"}, headers=bearer)
        assert [b["id"] for b in listed.json()["results"]] == [business_id]


# idempotency and ordering -----------------------------------------------------------------------------


async def test_external_id_repeats_return_the_original_with_200(thred: Thred) -> None:
    customer = await thred.customer()
    again = await thred.post("/customers/", {"external_id": "cus_1", "company_name": "Renamed"})
    assert again.status_code == 200
    assert again.json() == customer

    invoice = await thred.invoice(customer, 1000)
    repeat = await thred.post(
        "/invoices/",
        {
            "external_id": "in_1",
            "customer_id": customer["id"],
            "sent_at": "2025-03-01",
            "line_items": [{"quantity": 9, "unit_price": 9, "description": "x"}],
        },
    )
    assert repeat.status_code == 200
    assert repeat.json()["id"] == invoice["id"]
    assert repeat.json()["total_amount_cents"] == 1000


async def test_invoice_totals_currency_and_customer_lookup(thred: Thred) -> None:
    customer = await thred.customer()
    body = {
        "external_id": "in_9",
        "customer_external_id": "cus_1",
        "sent_at": "2025-03-01",
        "currency": "GBP",
        "additional_discount": 100,
        "line_items": [
            {"quantity": 3, "unit_price": 250, "description": "Coffee", "discount_amount": 50},
            {"quantity": 0.5, "unit_price": 200, "description": "Half"},
        ],
    }
    invoice = await thred.created("/invoices/", body)
    assert invoice["total_amount_cents"] == 3 * 250 - 50 + 100 - 100
    assert (invoice["currency"], invoice["status"], invoice["amount_due_cents"]) == ("GBP", "SENT", 700)
    assert invoice["customer"] == {"id": customer["id"], "external_id": "cus_1", "name": "Acme Ltd"}
    default = await thred.invoice(customer, 500, external_id="in_10")
    assert default["currency"] == "EUR"
    listed = await thred.get("/invoices/", customer_external_id="cus_1")
    assert [i["external_id"] for i in listed.json()["results"]] == ["in_9", "in_10"]
    assert (await thred.get(f"/invoices/{invoice['id']}/")).json()["id"] == invoice["id"]


async def test_ordering_errors_name_the_missing_parent(thred: Thred) -> None:
    line = [{"quantity": 1, "unit_price": 100, "description": "x"}]
    invoice_body = {"external_id": "in_1", "sent_at": "2025-03-01", "line_items": line}
    by_id = await thred.post("/invoices/", invoice_body | {"customer_id": "00000000-0000-4000-8000-000000000000"})
    by_external_id = await thred.post("/invoices/", invoice_body | {"customer_external_id": "cus_missing"})
    assert by_id.status_code == by_external_id.status_code == 404
    assert by_id.json()["error_code"] == by_external_id.json()["error_code"] == "customer_not_found"

    customer = await thred.customer()
    payment = {
        "customer_id": customer["id"],
        "total_amount_cents": 100,
        "allocations": [{"invoice_id": "in-missing", "amount_cents": 100}],
    }
    no_invoice = await thred.post("/invoices/payments/", payment)
    assert (no_invoice.status_code, no_invoice.json()["error_code"]) == (404, "invoice_not_found")
    no_customer = await thred.post("/invoices/payments/", payment | {"customer_id": "cus-missing"})
    assert (no_customer.status_code, no_customer.json()["error_code"]) == (404, "customer_not_found")
    refund = {"invoice_id": "in-missing", "method": "CASH", "completed_at": "2025-03-01", "external_id": "r"}
    no_refund_invoice = await thred.post("/invoices/refunds/", refund)
    assert (no_refund_invoice.status_code, no_refund_invoice.json()["error_code"]) == (404, "invoice_not_found")

    orphan = await thred.post(
        "/invoices/refunds/re-missing/payments/", {"amount_cents": 1, "method": "CASH", "external_id": "rp"}
    )
    assert orphan.status_code == 404
    # The reference-page error shape, as on Thred's refund-payment routes.
    assert set(orphan.json()) == {"error_code", "message", "detail", "request_id"}
    assert orphan.json()["error_code"] == "refund_not_found"


# invoice payments -------------------------------------------------------------------------------------


async def test_idempotency_key_replays_the_first_response(thred: Thred) -> None:
    invoice = await thred.invoice(await thred.customer(), 1000)
    body = {
        "customer_id": invoice["customer"]["id"],
        "total_amount_cents": 1000,
        "currency": "EUR",
        "allocations": [{"invoice_id": invoice["id"], "amount_cents": 1000}],
        "external_id": "pi_1",
    }
    first = await thred.post("/invoices/payments/", body, **{"Idempotency-Key": "key-1"})
    assert first.status_code == 201
    created = first.json()["payment"]
    assert (created["status"], created["allocated_amount_cents"], created["unapplied_amount_cents"]) == (
        "completed",
        1000,
        0,
    )
    replay = await thred.post("/invoices/payments/", {"garbage": True}, **{"Idempotency-Key": "key-1"})
    assert (replay.status_code, replay.json()) == (200, first.json())
    # Same external_id under a new key: the existing payment, not a second one (a sandbox choice).
    twin = await thred.post("/invoices/payments/", body, **{"Idempotency-Key": "key-2"})
    assert (twin.status_code, twin.json()["payment"]["id"]) == (200, created["id"])
    listed = await thred.get("/invoices/payments/")
    assert listed.json()["count"] == 1

    flat = (await thred.get(f"/invoices/payments/{created['id']}/")).json()
    assert "payment" not in flat
    assert (flat["total_amount"], flat["total_amount_cents"], flat["customer_name"]) == (1000, 1000, "Acme Ltd")
    assert flat["allocations"][0]["invoice_status"] == "PAID"
    paid = (await thred.get(f"/invoices/{invoice['id']}/")).json()
    assert (paid["status"], paid["amount_due_cents"], paid["paid_at"]) == ("PAID", 0, "2025-03-01T12:00:00Z")
    found = await thred.get("/invoices/payments/", search="pi_")
    assert [p["id"] for p in found.json()["results"]] == [created["id"]]

    cancel = await thred.post(f"/invoices/payments/{created['id']}/delete/")
    assert (cancel.status_code, cancel.json()["error_code"]) == (400, "invalid_state")


async def test_allocations_may_not_exceed_the_amount_due(thred: Thred) -> None:
    invoice = await thred.invoice(await thred.customer(), 1000)
    await thred.pay(invoice, 600)
    body = {
        "customer_id": invoice["customer"]["id"],
        "total_amount_cents": 500,
        "allocations": [{"invoice_id": invoice["id"], "amount_cents": 500}],
    }
    over = await thred.post("/invoices/payments/", body)
    assert (over.status_code, over.json()["error_code"]) == (400, "validation_error")
    assert "allocations.0.amount_cents" in over.json()["details"]
    assert (await thred.get(f"/invoices/{invoice['id']}/")).json()["status"] == "PARTIALLY_PAID"


async def test_a_pending_payment_can_be_cancelled(thred: Thred) -> None:
    invoice = await thred.invoice(await thred.customer(), 1000)
    body = {
        "customer_id": invoice["customer"]["id"],
        "total_amount_cents": 1000,
        "status": "pending",
        "allocations": [{"invoice_id": invoice["id"], "amount_cents": 1000}],
    }
    payment = (await thred.created("/invoices/payments/", body))["payment"]
    cancelled = await thred.post(f"/invoices/payments/{payment['id']}/delete/")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert (await thred.get(f"/invoices/{invoice['id']}/")).json()["amount_due_cents"] == 1000


# refunds and refund payments --------------------------------------------------------------------------


async def test_refunds_are_bounded_by_what_was_paid(thred: Thred) -> None:
    invoice = await thred.invoice(await thred.customer(), 1000)
    unpaid = await thred.post(
        "/invoices/refunds/",
        {"invoice_id": invoice["id"], "method": "STRIPE", "completed_at": "2025-03-02", "external_id": "re_0"},
    )
    assert (unpaid.status_code, unpaid.json()["error_code"]) == (400, "validation_error")
    await thred.pay(invoice, 1000)
    partial = await thred.refund(invoice, 400)
    assert (partial["refunded_amount"], partial["status"], partial["customer_name"]) == (400, "pending", "Acme Ltd")
    assert partial["allocations"][0]["invoice_id"] == invoice["id"]
    too_much = await thred.post(
        "/invoices/refunds/",
        {
            "invoice_id": invoice["id"],
            "method": "STRIPE",
            "completed_at": "2025-03-02",
            "external_id": "re_2",
            "amount_cents": 601,
        },
    )
    assert (too_much.status_code, too_much.json()["error_code"]) == (400, "validation_error")
    rest = await thred.refund(invoice, None, external_id="re_3")
    assert rest["refunded_amount"] == 600


async def test_refund_payments_move_the_refund_to_paid(thred: Thred) -> None:
    invoice = await thred.invoice(await thred.customer(), 1000)
    await thred.pay(invoice, 1000)
    refund = await thred.refund(invoice, 500)
    over = await thred.refund_payment(refund, 501)
    assert (over.status_code, over.json()["error_code"]) == (400, "validation_error")
    assert "amount_cents" in over.json()["details"]

    first = await thred.refund_payment(refund, 200)
    assert (first.status_code, first.json()["refunded_amount"]) == (201, 200)
    again = await thred.refund_payment(refund, 200)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert (await thred.get(f"/invoices/refunds/{refund['id']}/")).json()["status"] == "processing"
    rest = await thred.refund_payment(refund, 300, external_id="rp_2")
    assert rest.status_code == 201
    done = (await thred.get(f"/invoices/refunds/{refund['id']}/")).json()
    assert (done["status"], len(done["refund_payments"])) == ("paid", 2)

    path = f"/invoices/refunds/{refund['id']}/payments/"
    assert (await thred.get(path)).json()["count"] == 2
    gone = await thred.client.delete(thred.base + path + rest.json()["id"] + "/", headers=thred.headers)
    assert (gone.status_code, gone.content) == (204, b"")
    missing = await thred.get(path + rest.json()["id"] + "/")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "refund_payment_not_found")
    assert "request_id" in missing.json()
    assert (await thred.get(f"/invoices/refunds/{refund['id']}/")).json()["status"] == "processing"


# payouts ----------------------------------------------------------------------------------------------


async def test_payout_arithmetic_upsert_and_reconciliation(thred: Thred) -> None:
    customer = await thred.customer()
    first, second = await thred.invoice(customer, 10_000), await thred.invoice(customer, 5_000, "in_2")
    pay_1, pay_2 = await thred.pay(first, 10_000), await thred.pay(second, 5_000, "pi_2")
    refund = await thred.refund(first, 1_000)
    refund_payment = (await thred.refund_payment(refund, 1_000)).json()

    body = thred.payout(
        payment_ids=[pay_1["id"], pay_2["id"]],
        refund_payment_ids=[refund_payment["id"]],
        fee_cents=450,
        paid_out_amount_cents=13_550,
    )
    created = await thred.post("/payouts/", body)
    assert created.status_code == 201
    payout = created.json()
    assert (payout["gross_payments_amount_cents"], payout["total_refunds_amount_cents"]) == (15_000, 1_000)
    assert (payout["expected_net_amount_cents"], payout["amount_variance_cents"]) == (13_550, 0)
    assert (payout["net_amount_cents"], payout["payment_count"], payout["refund_payment_count"]) == (13_550, 2, 1)
    assert payout["reconciliation_status"] == "unreconciled"
    assert [p["external_id"] for p in payout["payments"]] == ["pi_1", "pi_2"]
    assert payout["refund_payments"][0]["refunded_amount_cents"] == 1_000

    updated = await thred.post(
        "/payouts/", body | {"paid_out_amount_cents": 13_000, "additional_refunds_amount_cents": 50}
    )
    assert (updated.status_code, updated.json()["id"]) == (200, payout["id"])
    assert (updated.json()["expected_net_amount_cents"], updated.json()["amount_variance_cents"]) == (13_500, -500)

    elsewhere = await thred.post("/payouts/", thred.payout("po_2", payment_ids=[pay_1["id"]]))
    assert (elsewhere.status_code, elsewhere.json()["error_code"]) == (400, "validation_error")

    reconciled = await thred.post(f"/payouts/{payout['id']}/reconcile/")
    assert reconciled.json()["reconciliation_status"] == "reconciled"
    refused = await thred.post("/payouts/", body)
    assert (refused.status_code, refused.json()["error_code"]) == (409, "payout_reconciled")
    assert (await thred.get(f"/payouts/{payout['id']}/")).json()["paid_out_amount_cents"] == 13_000
    assert (await thred.get("/payouts/", external_id="PO_")).json()["count"] == 1


async def test_payout_references_must_exist_and_share_its_currency(thred: Thred) -> None:
    invoice = await thred.invoice(await thred.customer(), 1000)
    payment = await thred.pay(invoice, 1000)
    missing = await thred.post("/payouts/", thred.payout(payment_ids=["nope"]))
    assert (missing.status_code, missing.json()["error_code"]) == (404, "payment_not_found")
    missing_refund = await thred.post("/payouts/", thred.payout(refund_payment_ids=["nope"]))
    assert (missing_refund.status_code, missing_refund.json()["error_code"]) == (404, "refund_payment_not_found")
    dollars = await thred.post("/payouts/", thred.payout(payment_ids=[payment["id"]], currency="USD"))
    assert (dollars.status_code, dollars.json()["details"]) == (
        400,
        {"payment_ids.0": [f"{payment['id']} is in EUR, the payout in USD."]},
    )
    assert (await thred.get("/payouts/")).json()["count"] == 0


# lists, validation, paths -----------------------------------------------------------------------------


async def test_lists_page_and_filter(thred: Thred) -> None:
    for n in range(45):
        await thred.customer(f"cus_{n:02d}")
    seen: list[str] = []
    page = 1
    while True:
        body = (await thred.get("/customers/", page=page, page_size=20)).json()
        seen += [c["external_id"] for c in body["results"]]
        assert body["page_info"] == {"total_count": 45, "current_page": page, "total_pages": 3, "page_size": 20}
        if body["page_info"]["current_page"] == body["page_info"]["total_pages"]:
            break
        page += 1
    assert seen == [f"cus_{n:02d}" for n in range(45)]
    default = (await thred.get("/customers/")).json()
    assert (default["count"], len(default["results"])) == (45, 20)
    exact = (await thred.get("/customers/", external_id="cus_07")).json()
    assert [c["external_id"] for c in exact["results"]] == ["cus_07"]
    too_big = await thred.get("/customers/", page_size=101)
    assert (too_big.status_code, too_big.json()["error_code"]) == (400, "validation_error")
    past_the_end = await thred.get("/customers/", page=4, page_size=20)
    assert (past_the_end.status_code, past_the_end.json()["error_code"]) == (404, "invalid_page")


async def test_validation_errors_name_each_field(thred: Thred) -> None:
    customer = await thred.customer()
    body = {
        "customer_id": customer["id"],
        "sent_at": "2025-03-01",
        "unknown_field": "ignored",
        "line_items": [
            {"quantity": 1, "unit_price": 10.5, "description": "x"},
            {"quantity": 1, "unit_price": "10", "description": "y"},
        ],
    }
    response = await thred.post("/invoices/", body)
    assert response.status_code == 400
    payload = response.json()
    assert (payload["error"], payload["error_code"]) == ("Validation failed", "validation_error")
    assert payload["details"]["external_id"] == ["This field is required."]
    assert set(payload["details"]) == {"external_id", "line_items.0.unit_price", "line_items.1.unit_price"}

    lower = await thred.post("/payouts/", thred.payout(currency="eur", fee_cents=True))
    assert set(lower.json()["details"]) == {"currency", "fee_cents"}
    broken = await thred.client.post(thred.base + "/customers/", content=b"{not json", headers=thred.headers)
    assert (broken.status_code, broken.json()["error_code"]) == (400, "parse_error")
    a_list = await thred.post("/customers/", [1, 2])
    assert a_list.json()["details"] == {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}


async def test_paths_without_trailing_slash_and_unknown_routes(thred: Thred) -> None:
    customer = await thred.customer()
    assert (await thred.get(f"/customers/{customer['id']}")).json()["id"] == customer["id"]
    unknown = await thred.get("/nothing-here/")
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, "not_found")
    missing = await thred.get("/customers/nope/")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "customer_not_found")


# sandbox controls -------------------------------------------------------------------------------------


async def test_injected_faults_then_recovery(thred: Thred) -> None:
    client = thred.client
    fault = {"path_contains": "/customers/", "status": 503, "times": 2}
    assert (await client.post("/_sandbox/faults", json=fault)).status_code == 201
    body = {"external_id": "cus_1", "company_name": "Acme Ltd"}
    statuses = [(await thred.post("/customers/", body)).status_code for _ in range(3)]
    assert statuses == [503, 503, 201]

    await client.post("/_sandbox/faults", json={"path_contains": "/invoices/", "status": 429, "retry_after": 7})
    limited = await thred.get("/invoices/")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert limited.json()["error_code"] == "rate_limited"

    # "after": the sandbox commits, then the response is lost; the retry finds the record (200).
    await client.post("/_sandbox/faults", json={"path_contains": "/customers/", "status": 502, "when": "after"})
    lost = await thred.post("/customers/", {"external_id": "cus_2"})
    retried = await thred.post("/customers/", {"external_id": "cus_2"})
    assert (lost.status_code, retried.status_code) == (502, 200)

    await client.post("/_sandbox/faults", json={"path_contains": "/customers/", "times": 5})
    assert len((await client.get("/_sandbox/faults")).json()["faults"]) == 1
    assert (await client.delete("/_sandbox/faults")).status_code == 204
    assert (await thred.get("/customers/")).status_code == 200

    counts = (await client.get("/_sandbox/requests/count")).json()
    assert counts["POST /v1/platform/businesses/{business_id}/customers/"] == 5
    state = (await client.get("/_sandbox/state")).json()
    assert [c["external_id"] for c in state["businesses"]["biz-1"]["customers"]] == ["cus_1", "cus_2"]


async def test_sqlite_file_keeps_state_across_restarts(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "thred.db")
    first = create_app(path=path, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(first), base_url="http://sandbox") as http:
        thred = await Thred(http).login()
        invoice = await thred.invoice(await thred.customer(), 1000)
        payment = await thred.pay(invoice, 1000)
        headers = thred.headers
    books = first.state.books
    assert isinstance(books, Books)
    books.close()

    second = create_app(path=path, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(second), base_url="http://sandbox") as http:
        thred = Thred(http)
        thred.headers = headers  # tokens survive the restart too
        again = await thred.post("/customers/", {"external_id": "cus_1"})
        assert again.status_code == 200
        assert (await thred.get(f"/invoices/{invoice['id']}/")).json()["status"] == "PAID"
        replay = await thred.post("/invoices/payments/", {}, **{"Idempotency-Key": "pi_1"})
        assert (replay.status_code, replay.json()["payment"]["id"]) == (200, payment["id"])
        await thred.customer("cus_2")
        listed = (await thred.get("/customers/")).json()["results"]
        assert [c["external_id"] for c in listed] == ["cus_1", "cus_2"]
    second.state.books.close()


# a real server ----------------------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[str, Starlette]]:
    app = create_app()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=10)


async def test_over_real_http_concurrent_retries_create_one_payment(served: tuple[str, Starlette]) -> None:
    url, app = served
    async with httpx.AsyncClient(base_url=url) as http:
        thred = await Thred(http).login()
        invoice = await thred.invoice(await thred.customer(), 1000)
        body = {
            "customer_id": invoice["customer"]["id"],
            "total_amount_cents": 1000,
            "external_id": "pi_1",
            "allocations": [{"invoice_id": invoice["id"], "amount_cents": 1000}],
        }
        responses = await asyncio.gather(
            *(thred.post("/invoices/payments/", body, **{"Idempotency-Key": "k"}) for _ in range(8))
        )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["payment"]["id"] for r in responses}) == 1
    assert len(app.state.books.state()["businesses"]["biz-1"]["payments"]) == 1
