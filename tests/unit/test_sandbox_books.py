"""The sandbox's books without HTTP: all-or-nothing mutations, payout releases, the store's reload."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from thred_bridge.sandbox import Books
from thred_bridge.sandbox.ledger import SandboxError
from thred_bridge.sandbox.schemas import (
    CreateCustomerRequest,
    CreateInvoicePaymentRequest,
    CreateInvoiceRequest,
    CreatePayoutRequest,
    CreateRefundRequest,
)
from thred_bridge.sandbox.store import Documents

BIZ = "biz-1"


def _books(path: str | None = None) -> Books:
    books = Books(path, clock=lambda: datetime(2025, 3, 1, tzinfo=UTC))
    books.ensure_business(BIZ, "partner", create=True)
    return books


def _invoice(books: Books, customer_id: str, cents: int, ext: str) -> dict[str, Any]:
    line = {"quantity": 1, "unit_price": cents, "description": "x"}
    body = {"external_id": ext, "customer_id": customer_id, "sent_at": "2025-03-01", "line_items": [line]}
    return books.create_invoice(BIZ, CreateInvoiceRequest.model_validate(body)).body


def _pay(books: Books, customer_id: str, allocations: list[tuple[str, int]], ext: str | None = None) -> Any:
    body = {
        "customer_id": customer_id,
        "total_amount_cents": sum(cents for _, cents in allocations),
        "allocations": [{"invoice_id": i, "amount_cents": cents} for i, cents in allocations],
        "external_id": ext,
    }
    return books.create_payment(BIZ, CreateInvoicePaymentRequest.model_validate(body), None).body["payment"]


def _payout(books: Books, ext: str, payment_ids: list[str]) -> dict[str, Any]:
    body = {
        "external_id": ext,
        "processor": "adyen",
        "paid_out_amount_cents": 0,
        "fee_cents": 0,
        "currency": "EUR",
        "status": "paid",
        "completed_at": "2025-03-02",
        "payment_ids": payment_ids,
    }
    return books.upsert_payout(BIZ, CreatePayoutRequest.model_validate(body)).body


def test_a_refused_payment_changes_nothing() -> None:
    books = _books()
    customer = books.create_customer(BIZ, CreateCustomerRequest(external_id="c")).body
    first, second = _invoice(books, customer["id"], 100, "a"), _invoice(books, customer["id"], 100, "b")
    with pytest.raises(SandboxError) as refused:
        _pay(books, customer["id"], [(first["id"], 100), (second["id"], 101)])
    assert (refused.value.status, refused.value.code) == (400, "validation_error")
    state = books.state()["businesses"][BIZ]
    assert [i["amount_due_cents"] for i in state["invoices"]] == [100, 100]
    assert state["payments"] == []


def test_a_payout_update_releases_the_payments_it_drops() -> None:
    books = _books()
    customer = books.create_customer(BIZ, CreateCustomerRequest(external_id="c")).body
    invoice = _invoice(books, customer["id"], 100, "a")
    payment = _pay(books, customer["id"], [(invoice["id"], 100)], "p")
    assert _payout(books, "po_1", [payment["id"]])["gross_payments_amount_cents"] == 100
    with pytest.raises(SandboxError, match="Validation failed"):
        _payout(books, "po_2", [payment["id"]])
    assert _payout(books, "po_1", [])["payment_count"] == 0
    assert _payout(books, "po_2", [payment["id"]])["payment_count"] == 1


def test_a_payment_with_refunds_against_it_cannot_be_cancelled() -> None:
    books = _books()
    customer = books.create_customer(BIZ, CreateCustomerRequest(external_id="c")).body
    invoice = _invoice(books, customer["id"], 100, "a")
    body = {
        "customer_id": customer["id"],
        "total_amount_cents": 100,
        "status": "pending",
        "allocations": [{"invoice_id": invoice["id"], "amount_cents": 100}],
    }
    payment = books.create_payment(BIZ, CreateInvoicePaymentRequest.model_validate(body), None).body["payment"]
    refund = {"invoice_id": invoice["id"], "method": "CASH", "completed_at": "2025-03-02", "external_id": "r"}
    books.create_refund(BIZ, CreateRefundRequest.model_validate(refund))
    with pytest.raises(SandboxError) as refused:
        books.cancel_payment(BIZ, payment["id"])
    assert refused.value.code == "invalid_state"
    assert books.record("invoice_payment", BIZ, payment["id"])["status"] == "pending"


def test_the_store_reloads_order_keys_and_deletions(tmp_path: Path) -> None:
    path = str(tmp_path / "docs.db")
    docs = Documents(path)
    for n in range(3):
        docs.put("thing", "s", {"id": f"id{n}", "external_id": f"e{n}"}, key=f"e{n}")
    docs.put("thing", "s", {"id": "id0", "external_id": "e0", "v": 2}, key="e0")
    docs.delete("thing", "s", "id1")
    docs.put("thing", "s", {"id": "id9"}, key=None)
    docs.commit()
    docs.put("thing", "s", {"id": "uncommitted"})
    docs.rollback()
    docs.close()

    again = Documents(path)
    assert [d["id"] for d in again.scan("thing", "s")] == ["id0", "id2", "id9"]
    assert again.by_key("thing", "s", "e0") == {"id": "id0", "external_id": "e0", "v": 2}
    assert again.by_key("thing", "s", "e1") is None
    again.close()
