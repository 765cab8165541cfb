"""Public JSON shapes of the sandbox's records, built from what :mod:`.store` keeps.

Where Thred's documented responses name a field two ways, both are given, so the bridge can read either:
``refunded_amount`` and ``refunded_amount_cents``, ``total_amount`` and ``total_amount_cents``, and so on.
Every amount is an integer in minor units. Derived figures (an invoice's amount due, a refund's status, a
payout's arithmetic) are computed here from the current records, so they never go stale.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from thred_bridge.domain.money import Money
from thred_bridge.sandbox.store import Doc, Documents


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``; a naive datetime is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def business(doc: Doc) -> Doc:
    public = {k: v for k, v in doc.items() if k not in {"partner_id", "auto_created"}}
    public["name"] = doc["legal_name"]
    public["is_active"] = True
    public["activation_at"] = doc["created_at"]
    return public


def customer_name(doc: Doc | None) -> str:
    if doc is None:
        return ""
    for field in ("company_name", "individual_name", "email", "external_id"):
        if doc.get(field):
            return str(doc[field])
    return str(doc["id"])


def customer(doc: Doc) -> Doc:
    public = {"type": "customer", **doc}
    public["display_name"] = customer_name(doc)
    parts = [doc.get(f) for f in ("address_line1", "address_line2", "city", "postal_code", "country")]
    public["full_address"] = public["address_string"] = ", ".join(p for p in parts if p)
    public["is_active"] = doc["status"] == "active"
    public["is_archived"] = False
    public["archived_at"] = None
    public["credit_limit"] = doc.get("credit_limit_cents")
    public["documents"] = []
    return public


def invoice_status(doc: Doc) -> str:
    if doc.get("voided_at"):
        return "VOID"
    if doc["paid_cents"] >= doc["total_amount_cents"]:
        return "PAID"
    return "PARTIALLY_PAID" if doc["paid_cents"] > 0 else "SENT"


def invoice(docs: Documents, doc: Doc, now: datetime) -> Doc:
    owner = docs.get("customer", doc["business_id"], doc["customer_id"])
    due = doc["total_amount_cents"] - doc["paid_cents"]
    overdue = bool(doc.get("due_at")) and due > 0 and datetime.fromisoformat(doc["due_at"]) < now
    public = {k: v for k, v in doc.items() if k not in {"paid_cents", "refunded_cents"}}
    return public | {
        "type": "invoice",
        "status": invoice_status(doc),
        "is_overdue": overdue,
        "amount_paid_cents": doc["paid_cents"],
        "amount_due_cents": due,
        "amount_refunded_cents": doc["refunded_cents"],
        "customer": {
            "id": doc["customer_id"],
            "external_id": owner.get("external_id") if owner else None,
            "name": customer_name(owner),
        },
    }


def payment_detail(doc: Doc) -> Doc:
    """The object inside the create response's ``{"payment": …}`` wrapper (``InvoicePaymentDetail``)."""
    allocated = sum(a["amount_cents"] for a in doc["allocations"])
    unapplied = doc["total_amount_cents"] - allocated
    return {k: v for k, v in doc.items() if k != "allocations"} | {
        "applied_amount_cents": allocated,
        "allocated_amount_cents": allocated,
        "unapplied_amount_cents": unapplied,
        "remaining_amount_cents": unapplied,
        "bank_reference": None,
        "allocations": [
            {"id": a["id"], "invoice_id": a["invoice_id"], "amount_cents": a["amount_cents"]}
            for a in doc["allocations"]
        ],
    }


def payment(docs: Documents, doc: Doc) -> Doc:
    """A payment as GET returns it, flat (``InvoicePaymentList``), with the detail fields as well."""
    owner = docs.get("customer", doc["business_id"], doc["customer_id"]) or {}
    detail = payment_detail(doc)
    allocations = []
    for a in doc["allocations"]:
        inv = docs.get("invoice", doc["business_id"], a["invoice_id"]) or {}
        allocations.append(
            {
                "id": a["id"],
                "invoice_id": a["invoice_id"],
                "invoice_number": inv.get("invoice_number"),
                "invoice_status": invoice_status(inv) if inv else None,
                "amount": a["amount_cents"],
                "amount_cents": a["amount_cents"],
                "allocated_at": a["allocated_at"],
                "transaction_tags": [],
                "notes": None,
            }
        )
    return detail | {
        "customer": {
            "id": doc["customer_id"],
            "name": customer_name(owner or None),
            "email": owner.get("email"),
            "company_name": owner.get("company_name"),
        },
        "customer_name": customer_name(owner or None),
        "customer_email": owner.get("email"),
        "total_amount": doc["total_amount_cents"],
        "allocated_amount": detail["allocated_amount_cents"],
        "unallocated_amount": detail["unapplied_amount_cents"],
        "net_amount": doc["total_amount_cents"] - doc["processing_fee_cents"],
        "processing_fee": doc["processing_fee_cents"],
        "display_amount": Money(doc["total_amount_cents"], doc["currency"]).format(),
        "is_fully_allocated": detail["unapplied_amount_cents"] == 0,
        "is_completed": doc["status"] == "completed",
        "allocations": allocations,
        "refund_allocations": [],
        "reconciled_bank_transactions": [],
    }


def refund_status(doc: Doc) -> str:
    if doc["paid_cents"] >= doc["amount_cents"]:
        return "paid"
    return "processing" if doc["paid_cents"] > 0 else "pending"


def refund_payment(docs: Documents, doc: Doc) -> Doc:
    refund = docs.get("refund", doc["business_id"], doc["refund_id"]) or {}
    owner = docs.get("customer", doc["business_id"], refund.get("customer_id", ""))
    return {k: v for k, v in doc.items() if k != "amount_cents"} | {
        "refunded_amount": doc["amount_cents"],
        "refunded_amount_cents": doc["amount_cents"],
        "amount_cents": doc["amount_cents"],
        "refund_processing_fee": doc["refund_processing_fee_cents"],
        "customer_name": customer_name(owner),
        "metadata": {},
        "reconciled_bank_transactions": [],
    }


def refund(docs: Documents, doc: Doc) -> Doc:
    bid = doc["business_id"]
    inv = docs.get("invoice", bid, doc["invoice_id"]) or {}
    owner = docs.get("customer", bid, doc["customer_id"])
    payments = [docs.get("refund_payment", bid, i) for i in doc["refund_payment_ids"]]
    public = {k: v for k, v in doc.items() if k not in {"paid_cents", "refund_payment_ids", "allocation_id"}}
    return public | {
        "refunded_amount": doc["amount_cents"],
        "refunded_amount_cents": doc["amount_cents"],
        "refund_processing_fee": doc["refund_processing_fee_cents"],
        "paid_amount_cents": doc["paid_cents"],
        "remaining_amount_cents": doc["amount_cents"] - doc["paid_cents"],
        "status": refund_status(doc),
        "customer_name": customer_name(owner),
        "allocations": [
            {
                "id": doc["allocation_id"],
                "allocation_type": "invoice",
                "amount": doc["amount_cents"],
                "invoice_id": doc["invoice_id"],
                "invoice_number": inv.get("invoice_number"),
                "invoice_outstanding_balance_cents": (inv["total_amount_cents"] - inv["paid_cents"]) if inv else None,
                "target_description": f"Invoice {inv.get('invoice_number')}",
                "description": doc.get("memo"),
                "allocation_date": doc["created_at"],
            }
        ],
        "refund_payments": [refund_payment(docs, p) for p in payments if p is not None],
    }


def payout_figures(docs: Documents, doc: Doc) -> dict[str, Any]:
    """The payout arithmetic: what the listed records say should have reached the bank."""
    bid = doc["business_id"]
    payments = [docs.get("invoice_payment", bid, i) or {} for i in doc["payment_ids"]]
    refund_payments = [docs.get("refund_payment", bid, i) or {} for i in doc["refund_payment_ids"]]
    gross = sum(p.get("total_amount_cents", 0) for p in payments)
    refunds = sum(r.get("amount_cents", 0) for r in refund_payments) + doc["additional_refunds_amount_cents"]
    expected_net = gross - refunds - doc["fee_cents"]
    return {
        "payment_count": len(payments),
        "refund_payment_count": len(refund_payments),
        "gross_payments_amount_cents": gross,
        "total_refunds_amount_cents": refunds,
        "expected_net_amount_cents": expected_net,
        "amount_variance_cents": doc["paid_out_amount_cents"] - expected_net,
        # Thred's only example is self-contradictory: it shows net_amount_cents 890,000 (= paid out - fee)
        # beside paid_out_amount_cents = expected_net_amount_cents = 920,000, i.e. paid out is already net of
        # the fee. The sandbox takes the consistent reading: the net amount is what reached the bank.
        "net_amount_cents": doc["paid_out_amount_cents"],
        "payments": [
            {
                "id": p.get("id"),
                "external_id": p.get("external_id"),
                "payment_reference": p.get("payment_reference"),
                "customer_name": customer_name(docs.get("customer", bid, p.get("customer_id", ""))),
                "payment_date": p.get("payment_date"),
                "total_amount_cents": p.get("total_amount_cents"),
                "currency": p.get("currency"),
            }
            for p in payments
        ],
        "refund_payments": [
            {
                "id": r.get("id"),
                "external_id": r.get("external_id"),
                "refund_id": r.get("refund_id"),
                "customer_name": refund_payment(docs, r)["customer_name"] if r else "",
                "refunded_amount_cents": r.get("amount_cents"),
                "completed_at": r.get("completed_at"),
            }
            for r in refund_payments
        ],
    }


def payout(docs: Documents, doc: Doc) -> Doc:
    return doc | payout_figures(docs, doc)
