"""Invoice-first merchants: a charge whose metadata names a Thred invoice pays that invoice."""

from __future__ import annotations

import pytest

from thred_bridge import testing

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
