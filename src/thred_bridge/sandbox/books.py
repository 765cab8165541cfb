"""The sandbox's books: the records that move money, with their idempotency, ordering checks and arithmetic.

:class:`Books` is the sandbox's whole state. It adds invoices, invoice payments, refunds and refund
payments to :class:`~thred_bridge.sandbox.payouts.Payouts` (payout upserts) and
:class:`~thred_bridge.sandbox.ledger.Ledger` (lock, store, tokens, businesses, customers, lists). No HTTP:
each refusal is a :class:`~thred_bridge.sandbox.ledger.SandboxError` with the status and ``error_code``.
The payout arithmetic itself is in :func:`thred_bridge.sandbox.views.payout_figures`.

- ``external_id`` idempotency: a repeat create returns the existing record, unchanged, with
  ``created=False`` (businesses, customers, invoices, refunds, invoice payments; refund payments per refund).
  Payouts are upserts instead: a repeat replaces the payout unless it is reconciled (409
  ``payout_reconciled``).
- ``Idempotency-Key`` on invoice payments: the first response is stored and replayed, whatever the body.
  De-duplicating invoice payments on ``external_id`` as well is a sandbox choice; Thred does not say.
- Ordering: a record naming a parent that does not exist is refused with 404 ``customer_not_found``,
  ``invoice_not_found``, ``refund_not_found``, ``payment_not_found`` or ``refund_payment_not_found``.
- Money (400 ``validation_error``): allocations may not exceed the payment nor an invoice's amount due and
  must share its currency and customer; a refund may not exceed what was paid on the invoice minus earlier
  refunds; a refund payment may not exceed what is left of its refund; a payout's records must exist, share
  its currency, not be cancelled and belong to no other payout.
- An invoice's total, in minor units, is the sum over its lines of (quantity * unit_price - discount_amount
  + sales taxes), then - additional_discount + additional_sales_taxes_total + tips. It is ``PAID`` once its
  allocations cover it.

Each mutation checks everything first, then writes, then commits once.
"""

from __future__ import annotations

from thred_bridge.sandbox import views
from thred_bridge.sandbox.ledger import SandboxError, Written, as_json, invalid, new_id, not_found
from thred_bridge.sandbox.payouts import Payouts
from thred_bridge.sandbox.schemas import (
    CreateInvoicePaymentRequest,
    CreateInvoiceRequest,
    CreateRefundPaymentRequest,
    CreateRefundRequest,
)
from thred_bridge.sandbox.store import Doc, Documents


class Books(Payouts):
    """Everything the sandbox knows about every business, in memory or in a SQLite file."""

    # invoices ---------------------------------------------------------------------------------------

    def create_invoice(self, business_id: str, request: CreateInvoiceRequest) -> Written:
        with self.mutation() as docs:
            existing = docs.by_key("invoice", business_id, request.external_id)
            if existing is not None:
                return Written(views.invoice(docs, existing, self.now()), created=False)
            if request.customer_id is not None:
                owner = self.customer_doc(business_id, request.customer_id)
            elif request.customer_external_id is not None:
                owner = docs.by_key("customer", business_id, request.customer_external_id) or {}
                if not owner:
                    raise not_found("customer_not_found", "Customer", request.customer_external_id)
            else:
                raise invalid("customer_id", "Either customer_id or customer_external_id is required.")
            lines, total = [], 0
            for n, item in enumerate(request.line_items):
                gross = item.quantity * item.unit_price
                if gross != gross.to_integral_value():
                    raise invalid(f"line_items.{n}.quantity", "quantity × unit_price must be whole cents.")
                amount = int(gross) - item.discount_amount + sum(t.amount - t.discount_amount for t in item.sales_taxes)
                if amount < 0:
                    raise invalid(f"line_items.{n}.discount_amount", "The discount exceeds the line amount.")
                lines.append({"id": new_id(), **as_json(item), "amount_cents": amount})
                total += amount
            total += request.additional_sales_taxes_total + request.tips - request.additional_discount
            if total < 0:
                raise invalid("additional_discount", "The discount exceeds the invoice amount.")
            stamp = views.iso(self.now())
            number = request.invoice_number or f"INV-{len(docs.scan('invoice', business_id)) + 1:05d}"
            doc = {
                "id": new_id(),
                "business_id": business_id,
                **as_json(request, "line_items", "customer_external_id", "currency"),
                "customer_id": owner["id"],
                "invoice_number": number,
                "currency": request.currency or self.base_currency(business_id),
                "line_items": lines,
                "total_amount_cents": total,
                "paid_cents": 0,
                "refunded_cents": 0,
                "paid_at": None,
                "created_at": stamp,
                "updated_at": stamp,
            }
            if total == 0:
                doc["paid_at"] = stamp
            docs.put("invoice", business_id, doc, key=request.external_id)
            return Written(views.invoice(docs, doc, self.now()), created=True)

    # invoice payments -------------------------------------------------------------------------------

    def create_payment(
        self, business_id: str, request: CreateInvoicePaymentRequest, idempotency_key: str | None
    ) -> Written:
        """Record a payment; ``Written.body`` is the whole response, ``{"payment": {...}}``."""
        with self.mutation() as docs:
            if idempotency_key:
                cached = docs.get("idempotency_key", business_id, idempotency_key)
                if cached is not None:
                    return Written(cached["response"], created=False)
            existing = None
            if request.external_id is not None:
                existing = docs.by_key("invoice_payment", business_id, request.external_id)
            if existing is not None:
                response, created = {"payment": views.payment_detail(existing)}, False
            else:
                doc = self._new_payment(docs, business_id, request)
                response, created = {"payment": views.payment_detail(doc)}, True
            if idempotency_key:
                docs.put("idempotency_key", business_id, {"id": idempotency_key, "response": response})
            return Written(response, created=created)

    def replay(self, business_id: str, idempotency_key: str) -> Doc | None:
        """The response first given for this ``Idempotency-Key``, if any."""
        cached = self.docs.get("idempotency_key", business_id, idempotency_key)
        return None if cached is None else dict(cached["response"])

    def _new_payment(self, docs: Documents, business_id: str, request: CreateInvoicePaymentRequest) -> Doc:
        self.customer_doc(business_id, request.customer_id)
        invoices: dict[str, Doc] = {}
        wanted: dict[str, int] = {}
        for n, alloc in enumerate(request.allocations):
            inv = docs.get("invoice", business_id, alloc.invoice_id)
            if inv is None:
                raise not_found("invoice_not_found", "Invoice", alloc.invoice_id)
            if inv["customer_id"] != request.customer_id:
                raise invalid(f"allocations.{n}.invoice_id", "The invoice belongs to another customer.")
            invoices[inv["id"]] = inv
            wanted[inv["id"]] = wanted.get(inv["id"], 0) + alloc.amount_cents
        currency = request.currency or next(
            (inv["currency"] for inv in invoices.values()), self.base_currency(business_id)
        )
        for n, alloc in enumerate(request.allocations):
            inv = invoices[alloc.invoice_id]
            if inv["currency"] != currency:
                raise invalid(
                    f"allocations.{n}.invoice_id",
                    f"The invoice is in {inv['currency']}, the payment in {currency}.",
                )
            due = inv["total_amount_cents"] - inv["paid_cents"]
            if wanted[inv["id"]] > due:
                raise invalid(
                    f"allocations.{n}.amount_cents",
                    f"Allocation of {wanted[inv['id']]} exceeds "
                    f"the amount due on invoice {inv['invoice_number']} ({due}).",
                )
        if sum(wanted.values()) > request.total_amount_cents:
            raise invalid("allocations", "The allocations exceed total_amount_cents.")
        now = self.now()
        stamp = views.iso(now)
        for invoice_id, amount in wanted.items():
            inv = dict(invoices[invoice_id])
            inv["paid_cents"] += amount
            if inv["paid_cents"] >= inv["total_amount_cents"]:
                inv["paid_at"] = stamp
            docs.put("invoice", business_id, inv | {"updated_at": stamp}, key=inv["external_id"])
        doc = {
            "id": new_id(),
            "business_id": business_id,
            **as_json(request, "allocations", "currency"),
            "currency": currency,
            "payment_date": (request.payment_date or now.date()).isoformat(),
            "allocations": [
                {
                    "id": new_id(),
                    "invoice_id": a.invoice_id,
                    "amount_cents": a.amount_cents,
                    "allocated_at": stamp,
                }
                for a in request.allocations
            ],
            "payout_id": None,
            "processed_at": stamp if request.status == "completed" else None,
            "failed_at": stamp if request.status == "failed" else None,
            "created_at": stamp,
            "updated_at": stamp,
        }
        docs.put("invoice_payment", business_id, doc, key=request.external_id)
        return doc

    def cancel_payment(self, business_id: str, payment_id: str) -> Doc:
        """Cancel a pending or failed payment and give its allocations back to the invoices."""
        with self.mutation() as docs:
            doc = docs.get("invoice_payment", business_id, payment_id)
            if doc is None:
                raise not_found("payment_not_found", "Payment", payment_id)
            if doc["status"] not in {"pending", "failed"}:
                raise SandboxError(
                    400,
                    "invalid_state",
                    f"Only pending or failed payments can be deleted; "
                    f"this one is {doc['status']}. Reverse a completed payment with a refund.",
                )
            if doc["payout_id"] is not None:
                raise SandboxError(400, "invalid_state", "The payment is part of a payout.")
            stamp = views.iso(self.now())
            changed: dict[str, Doc] = {}
            for alloc in doc["allocations"]:
                inv = changed.get(alloc["invoice_id"]) or dict(
                    docs.get("invoice", business_id, alloc["invoice_id"]) or {}
                )
                inv["paid_cents"] -= alloc["amount_cents"]
                if inv["paid_cents"] < inv["refunded_cents"]:
                    raise SandboxError(400, "invalid_state", "The invoice has refunds that need this payment.")
                inv["paid_at"] = inv["paid_at"] if inv["paid_cents"] >= inv["total_amount_cents"] else None
                changed[inv["id"]] = inv | {"updated_at": stamp}
            for inv in changed.values():
                docs.put("invoice", business_id, inv, key=inv["external_id"])
            docs.put(
                "invoice_payment",
                business_id,
                doc | {"status": "cancelled", "updated_at": stamp},
                key=doc.get("external_id"),
            )
            return {
                "message": "Payment cancelled and its allocations reversed.",
                "payment_id": payment_id,
                "status": "cancelled",
                "updated_at": stamp,
            }

    # refunds ----------------------------------------------------------------------------------------

    def create_refund(self, business_id: str, request: CreateRefundRequest) -> Written:
        with self.mutation() as docs:
            existing = docs.by_key("refund", business_id, request.external_id)
            if existing is not None:
                return Written(views.refund(docs, existing), created=False)
            inv = docs.get("invoice", business_id, request.invoice_id)
            if inv is None:
                raise not_found("invoice_not_found", "Invoice", request.invoice_id)
            refundable = inv["paid_cents"] - inv["refunded_cents"]
            amount = request.amount_cents if request.amount_cents is not None else refundable
            if refundable < 1:
                raise invalid(
                    "invoice_id",
                    f"Nothing is refundable on invoice {inv['invoice_number']}: paid "
                    f"{inv['paid_cents']}, already refunded {inv['refunded_cents']}.",
                )
            if amount > refundable:
                raise invalid(
                    "amount_cents",
                    f"A refund of {amount} exceeds what is refundable on invoice "
                    f"{inv['invoice_number']}: {refundable} (paid {inv['paid_cents']}, "
                    f"already refunded {inv['refunded_cents']}).",
                )
            stamp = views.iso(self.now())
            docs.put(
                "invoice",
                business_id,
                inv | {"refunded_cents": inv["refunded_cents"] + amount, "updated_at": stamp},
                key=inv["external_id"],
            )
            doc = {
                "id": new_id(),
                "business_id": business_id,
                **as_json(request, "amount_cents"),
                "amount_cents": amount,
                "customer_id": inv["customer_id"],
                "currency": inv["currency"],
                "allocation_id": new_id(),
                "paid_cents": 0,
                "refund_payment_ids": [],
                "created_at": stamp,
                "updated_at": stamp,
            }
            docs.put("refund", business_id, doc, key=request.external_id)
            return Written(views.refund(docs, doc), created=True)

    # refund payments --------------------------------------------------------------------------------

    def refund_doc(self, business_id: str, refund_id: str) -> Doc:
        doc = self.docs.get("refund", business_id, refund_id)
        if doc is None:
            raise not_found("refund_not_found", "Refund", refund_id)
        return doc

    def create_refund_payment(self, business_id: str, refund_id: str, request: CreateRefundPaymentRequest) -> Written:
        with self.mutation() as docs:
            refund = self.refund_doc(business_id, refund_id)
            key = f"{refund_id}/{request.external_id}"
            existing = docs.by_key("refund_payment", business_id, key)
            if existing is not None:
                return Written(views.refund_payment(docs, existing), created=False)
            left = refund["amount_cents"] - refund["paid_cents"]
            if request.amount_cents > left:
                raise invalid(
                    "amount_cents",
                    f"A refund payment of {request.amount_cents} exceeds what is "
                    f"left to pay on refund {refund_id}: {left}.",
                )
            now = self.now()
            stamp = views.iso(now)
            doc = {
                "id": new_id(),
                "business_id": business_id,
                "refund_id": refund_id,
                **as_json(request),
                "completed_at": views.iso(request.completed_at or now),
                "currency": refund["currency"],
                "payout_id": None,
                "created_at": stamp,
                "updated_at": stamp,
            }
            docs.put(
                "refund",
                business_id,
                refund
                | {
                    "paid_cents": refund["paid_cents"] + request.amount_cents,
                    "refund_payment_ids": [*refund["refund_payment_ids"], doc["id"]],
                    "updated_at": stamp,
                },
                key=refund["external_id"],
            )
            docs.put("refund_payment", business_id, doc, key=key)
            return Written(views.refund_payment(docs, doc), created=True)

    def refund_payment(self, business_id: str, refund_id: str, payment_id: str) -> Doc:
        self.refund_doc(business_id, refund_id)
        doc = self.docs.get("refund_payment", business_id, payment_id)
        if doc is None or doc["refund_id"] != refund_id:
            raise not_found("refund_payment_not_found", "Refund payment", payment_id)
        return views.refund_payment(self.docs, doc)

    def delete_refund_payment(self, business_id: str, refund_id: str, payment_id: str) -> None:
        with self.mutation() as docs:
            self.refund_payment(business_id, refund_id, payment_id)
            doc = docs.get("refund_payment", business_id, payment_id) or {}
            if doc["payout_id"] is not None:
                raise SandboxError(400, "invalid_state", "The refund payment is part of a payout.")
            refund = self.refund_doc(business_id, refund_id)
            docs.put(
                "refund",
                business_id,
                refund
                | {
                    "paid_cents": refund["paid_cents"] - doc["amount_cents"],
                    "refund_payment_ids": [i for i in refund["refund_payment_ids"] if i != payment_id],
                    "updated_at": views.iso(self.now()),
                },
                key=refund["external_id"],
            )
            docs.delete("refund_payment", business_id, payment_id)
