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
        body = {"external_id": external_id, "customer_id": customer["id"], "sent_at": "2025-03-01T10:00:00Z",
                "line_items": [line]}  # fmt: skip
        return await self.created("/invoices/", body)

    async def pay(self, invoice: dict[str, Any], cents: int, external_id: str = "pi_1") -> dict[str, Any]:
        body = {"customer_id": invoice["customer"]["id"], "total_amount_cents": cents, "currency": "EUR",
                "allocations": [{"invoice_id": invoice["id"], "amount_cents": cents}], "external_id": external_id,
                "payment_processor": "stripe", "processing_fee_cents": 30}  # fmt: skip
        payment: dict[str, Any] = (await self.created("/invoices/payments/", body, **{"Idempotency-Key": external_id}))[
            "payment"
        ]
        return payment

    async def refund(self, invoice: dict[str, Any], cents: int | None, external_id: str = "re_1") -> dict[str, Any]:
        body: dict[str, Any] = {"invoice_id": invoice["id"], "method": "STRIPE", "external_id": external_id,
                                "completed_at": "2025-03-02T10:00:00Z"}  # fmt: skip
        if cents is not None:
            body["amount_cents"] = cents
        return await self.created("/invoices/refunds/", body)

    async def refund_payment(self, refund: dict[str, Any], cents: int, external_id: str = "rp_1") -> httpx.Response:
        body = {"amount_cents": cents, "method": "STRIPE", "external_id": external_id, "processor": "stripe"}
        return await self.post(f"/invoices/refunds/{refund['id']}/payments/", body)

    @staticmethod
    def payout(external_id: str = "po_1", **fields: Any) -> dict[str, Any]:
        return {"external_id": external_id, "processor": "stripe", "currency": "EUR", "status": "paid",
                "completed_at": "2025-03-03T00:00:00Z", "fee_cents": 0, "paid_out_amount_cents": 0} | fields  # fmt: skip


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
        for kwargs in ({"data": {"grant_type": "client_credentials"}},
                       {"json": {"client_id": "partner-1", "grant_type": "client_credentials"}}, {}):  # fmt: skip
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
    repeat = await thred.post("/invoices/", {"external_id": "in_1", "customer_id": customer["id"],
                                             "sent_at": "2025-03-01", "line_items": [
                                                 {"quantity": 9, "unit_price": 9, "description": "x"}]})  # fmt: skip
    assert repeat.status_code == 200
    assert repeat.json()["id"] == invoice["id"]
    assert repeat.json()["total_amount_cents"] == 1000


async def test_invoice_totals_currency_and_customer_lookup(thred: Thred) -> None:
    customer = await thred.customer()
    body = {"external_id": "in_9", "customer_external_id": "cus_1", "sent_at": "2025-03-01",
            "currency": "GBP", "additional_discount": 100,
            "line_items": [{"quantity": 3, "unit_price": 250, "description": "Coffee", "discount_amount": 50},
                           {"quantity": 0.5, "unit_price": 200, "description": "Half"}]}  # fmt: skip
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
    payment = {"customer_id": customer["id"], "total_amount_cents": 100,
               "allocations": [{"invoice_id": "in-missing", "amount_cents": 100}]}  # fmt: skip
    no_invoice = await thred.post("/invoices/payments/", payment)
    assert (no_invoice.status_code, no_invoice.json()["error_code"]) == (404, "invoice_not_found")
    no_customer = await thred.post("/invoices/payments/", payment | {"customer_id": "cus-missing"})
    assert (no_customer.status_code, no_customer.json()["error_code"]) == (404, "customer_not_found")
    refund = {"invoice_id": "in-missing", "method": "CASH", "completed_at": "2025-03-01", "external_id": "r"}
    no_refund_invoice = await thred.post("/invoices/refunds/", refund)
    assert (no_refund_invoice.status_code, no_refund_invoice.json()["error_code"]) == (404, "invoice_not_found")

    orphan = await thred.post("/invoices/refunds/re-missing/payments/", {"amount_cents": 1, "method": "CASH",
                                                                         "external_id": "rp"})  # fmt: skip
    assert orphan.status_code == 404
    # The reference-page error shape, as on Thred's refund-payment routes.
    assert set(orphan.json()) == {"error_code", "message", "detail", "request_id"}
    assert orphan.json()["error_code"] == "refund_not_found"
