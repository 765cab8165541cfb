"""Invoice-first merchants: a charge whose metadata names a Thred invoice pays that invoice."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from thred_bridge import testing
from thred_bridge.simulators.adyen_reports import SettlementReport

pytestmark = pytest.mark.anyio


async def test_charge_pays_the_named_thred_invoice_and_its_refund_lands_there(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        thred = h.bridge.thred
        assert thred is not None
        customer = await thred.create(
            h.business_id, "customer", {"external_id": "crm_42", "individual_name": "Existing Customer"}
        )
        invoice = await thred.create(
            h.business_id,
            "invoice",
            {
                "external_id": "erp_inv_1001",
                "customer_id": customer.id,
                "sent_at": "2026-11-01T09:00:00Z",
                "currency": "EUR",
                "line_items": [{"description": "Consulting", "quantity": 1, "unit_price": 12_000}],
            },
        )
        charge = h.world.add_charge(12_000, "eur", metadata={"thred_invoice_id": invoice.id}, fee=193)
        await h.deliver(h.world.event("charge.succeeded", charge))
        refund = h.world.refund(charge["id"], 2_000)
        await h.deliver(h.world.event("refund.created", refund))
        status = await h.drain()
        books = await h.books()
    assert status.failed == 0, status.failures
    assert [i["id"] for i in books["invoices"]] == [invoice.id]  # no invoice of the bridge's own
    assert [c["id"] for c in books["customers"]] == [customer.id]
    (payment,) = books["payments"]
    assert payment["customer_id"] == customer.id
    assert payment["external_id"] == f"stripe_{charge['id']}"
    assert [a["invoice_id"] for a in payment["allocations"]] == [invoice.id]
    (refund_row,) = books["refunds"]
    assert [a["invoice_id"] for a in refund_row["allocations"]] == [invoice.id]
    assert refund_row["refunded_amount_cents"] == 2_000


async def test_an_unknown_invoice_fails_with_threds_reason(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        missing = "00000000-0000-4000-8000-000000000000"
        charge = h.world.add_charge(5_000, "eur", metadata={"thred_invoice_id": missing})
        await h.deliver(h.world.event("charge.succeeded", charge))
        status = await h.drain()
    ((_, _, error),) = status.failures
    assert "404" in error


PAYMENT = "8815000000000101"
CAPTURE = "8825000000000101"
REFUND = "8835000000000101"
DISPUTE = "8845000000000101"
LATER_REFUND = "8835000000000102"
MISSING = "00000000-0000-4000-8000-000000000000"


async def _existing_invoice(h: testing.Running, amount: int, business_id: str | None = None) -> tuple[str, str]:
    """A customer and an invoice the merchant made in Thred itself (in ``business_id``, default the bridge's):
    their Thred ids."""
    thred = h.bridge.thred
    assert thred is not None
    business = business_id or h.business_id
    customer = await thred.create(business, "customer", {"external_id": "crm_7", "individual_name": "Existing"})
    invoice = await thred.create(
        business,
        "invoice",
        {
            "external_id": "erp_inv_7",
            "customer_id": customer.id,
            "sent_at": "2026-11-01T09:00:00Z",
            "currency": "EUR",
            "line_items": [{"description": "Consulting", "quantity": 1, "unit_price": amount}],
        },
    )
    return customer.id, invoice.id


def _adyen_capture(h: testing.AdyenHarness, invoice_id: str) -> dict[str, Any]:
    return h.item(
        "CAPTURE", CAPTURE, value=10_000, original_reference=PAYMENT,
        additional_data={"metadata.thred_invoice_id": invoice_id},
    )  # fmt: skip


def _assert_all_on(books: dict[str, Any], customer_id: str, invoice_id: str, payments: int = 1) -> None:
    """Nothing of the bridge's own: the one customer and invoice, every payment and refund on that invoice."""
    assert [i["id"] for i in books["invoices"]] == [invoice_id]
    assert [c["id"] for c in books["customers"]] == [customer_id]
    assert len(books["payments"]) == payments
    for payment in books["payments"]:
        assert payment["customer_id"] == customer_id
        assert [a["invoice_id"] for a in payment["allocations"]] == [invoice_id]
    for refund in books["refunds"]:
        assert [a["invoice_id"] for a in refund["allocations"]] == [invoice_id]


@pytest.mark.parametrize("refunds_first", [True, False])
async def test_adyen_capture_pays_the_named_invoice_and_its_refund_and_chargeback_land_there(
    database_url: str, refunds_first: bool
) -> None:
    """The REFUND and CHARGEBACK carry no metadata, only originalReference: they find the invoice through
    the payment, in either order."""
    async with testing.adyen_bridge(database_url) as h:
        customer_id, invoice_id = await _existing_invoice(h, 10_000)
        money_out = [
            h.item("REFUND", REFUND, value=2_500, original_reference=PAYMENT),
            h.item("CHARGEBACK", DISPUTE, value=7_500, original_reference=PAYMENT, reason="Fraud"),
        ]
        batches = [money_out, [_adyen_capture(h, invoice_id)]]
        for batch in batches if refunds_first else reversed(batches):
            assert (await h.deliver(*batch)).content == b"[accepted]"
        status = await h.drain()
        books = await h.books()
    assert (status.failed, status.records_failed) == (0, 0), status.failures
    _assert_all_on(books, customer_id, invoice_id)
    assert books["payments"][0]["external_id"] == f"adyen_{PAYMENT}"
    assert {r["external_id"]: r["amount_cents"] for r in books["refunds"]} == {
        f"adyen_{REFUND}": 2_500,
        f"adyen_{DISPUTE}": 7_500,
    }
    assert len(books["refund_payments"]) == 2


def _assert_nothing_booked(books: dict[str, Any]) -> None:
    """No fallback: no invoice, payment or refund of the bridge's anywhere (the named invoice is the merchant's)."""
    for kind in ("payments", "refunds", "refund_payments"):
        assert not books.get(kind), kind
    assert all(not i["external_id"].startswith(("adyen_", "mollie_")) for i in books.get("invoices", []))


async def _foreign_invoice(h: testing.Running) -> str:
    return (await _existing_invoice(h, 10_000, business_id=str(uuid.uuid4())))[1]


@pytest.mark.parametrize("which", ["missing", "foreign"])
async def test_adyen_a_wrong_invoice_fails_with_threds_reason_and_books_nothing(database_url: str, which: str) -> None:
    async with testing.adyen_bridge(database_url) as h:
        invoice_id = MISSING if which == "missing" else await _foreign_invoice(h)
        await h.deliver(
            _adyen_capture(h, invoice_id), h.item("REFUND", REFUND, value=2_500, original_reference=PAYMENT)
        )
        status = await h.drain()
        books = await h.books()
    errors = {event_type: error for _, event_type, error in status.failures}
    assert set(errors) == {"CAPTURE", "REFUND"}, errors
    thred_says = f"Thred 404 invoice_not_found: Invoice {invoice_id} not found"
    assert errors["CAPTURE"] == thred_says  # Thred's own answer, on the event that named the invoice
    assert errors["REFUND"].endswith(f"which failed: {thred_says}")  # its refund waits behind it
    _assert_nothing_booked(books)


def _report_of_the_payment() -> bytes:
    report = SettlementReport(batch=9)
    report.settled(PAYMENT, 10_000, 35, reference="order-9")
    report.refunded(PAYMENT, REFUND, 2_500, fee=0)
    return report.csv()


async def test_adyen_webhook_before_the_report_keeps_the_named_invoice(database_url: str) -> None:
    """The first booking of a payment wins: the webhook named the invoice, so the report's row (no metadata)
    and its refund land on it too."""
    async with testing.adyen_bridge(database_url) as h:
        customer_id, invoice_id = await _existing_invoice(h, 10_000)
        await h.deliver(_adyen_capture(h, invoice_id))
        await h.drain()
        await h.report_available("settlement_detail_report_batch_9.csv", _report_of_the_payment())
        status = await h.drain()
        books = await h.books()
    assert (status.failed, status.records_failed) == (0, 0), status.failures
    assert [i["id"] for i in books["invoices"]] == [invoice_id]
    (payment,) = books["payments"]
    assert [a["invoice_id"] for a in payment["allocations"]] == [invoice_id]
    (refund,) = books["refunds"]
    assert [a["invoice_id"] for a in refund["allocations"]] == [invoice_id]
    (payout,) = books["payouts"]
    assert payout["payment_ids"] == [payment["id"]]
    assert customer_id in {c["id"] for c in books["customers"]}


async def test_adyen_report_before_the_webhook_keeps_the_reports_booking(database_url: str) -> None:
    """The report booked the payment first (walk-in invoice): the later webhook's invoice id changes nothing,
    nothing fails or is booked twice, and a refund after it still lands where the payment is."""
    async with testing.adyen_bridge(database_url) as h:
        _customer_id, invoice_id = await _existing_invoice(h, 10_000)
        await h.report_available("settlement_detail_report_batch_9.csv", _report_of_the_payment())
        await h.drain()
        await h.deliver(_adyen_capture(h, invoice_id))
        await h.drain()
        await h.deliver(h.item("REFUND", LATER_REFUND, value=1_000, original_reference=PAYMENT))
        status = await h.drain()
        books = await h.books()
    assert (status.failed, status.records_failed) == (0, 0), status.failures
    (payment,) = books["payments"]
    (own,) = [i for i in books["invoices"] if i["id"] != invoice_id]
    assert own["external_id"] == f"adyen_{PAYMENT}"
    assert [a["invoice_id"] for a in payment["allocations"]] == [own["id"]]
    assert {r["external_id"]: [a["invoice_id"] for a in r["allocations"]] for r in books["refunds"]} == {
        f"adyen_{REFUND}": [own["id"]],
        f"adyen_{LATER_REFUND}": [own["id"]],
    }


async def test_mollie_payment_pays_the_named_invoice_and_its_refund_and_chargeback_land_there(
    database_url: str,
) -> None:
    async with testing.mollie_bridge(database_url) as h:
        customer_id, invoice_id = await _existing_invoice(h, 5_000)
        made = h.world.create_payment(5_000, "EUR", email="ada@example.org", metadata={"thred_invoice_id": invoice_id})
        h.world.pay(made["id"])
        refund = h.world.refund(made["id"], 1_000, status="refunded")
        chargeback = h.world.chargeback(made["id"], 2_000)
        await h.ping(made["id"])  # the payment, its refund and chargeback in one fetch
        await h.drain()
        later = h.world.refund(made["id"], 500, status="refunded")  # a refund that comes later, on its own call
        await h.ping(made["id"])
        status = await h.drain()
        books = await h.books()
    assert (status.failed, status.records_failed) == (0, 0), status.failures
    _assert_all_on(books, customer_id, invoice_id)
    assert {r["external_id"]: r["refunded_amount_cents"] for r in books["refund_payments"]} == {
        f"mollie_{refund['id']}": 1_000,
        f"mollie_{chargeback['id']}": 2_000,
        f"mollie_{later['id']}": 500,
    }


@pytest.mark.parametrize("which", ["missing", "foreign"])
async def test_mollie_a_wrong_invoice_fails_with_threds_reason_and_books_nothing(database_url: str, which: str) -> None:
    async with testing.mollie_bridge(database_url) as h:
        invoice_id = MISSING if which == "missing" else await _foreign_invoice(h)
        made = h.world.create_payment(5_000, "EUR", metadata={"thred_invoice_id": invoice_id})
        h.world.pay(made["id"])
        h.world.refund(made["id"], 1_000, status="refunded")
        await h.ping(made["id"])
        status = await h.drain()
        books = await h.books()
    assert status.failed == 1
    ((_, _, error),) = status.failures
    assert error == f"Thred 404 invoice_not_found: Invoice {invoice_id} not found"
    _assert_nothing_booked(books)
