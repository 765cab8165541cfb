"""Payouts in the sandbox's books: upserts by ``external_id``, the records they settle, reconciliation.

A payout lists Thred ids of invoice payments (``payment_ids``) and refund payments
(``refund_payment_ids``). Each must exist (404 ``payment_not_found`` / ``refund_payment_not_found``), be
listed once, share the payout's currency, not be cancelled, and belong to no other payout (400
``validation_error``). Re-posting the same ``external_id`` replaces the payout (200) and releases records it
no longer lists, unless the payout is reconciled: then 409 ``payout_reconciled``. Reconciling is
sandbox-only (:meth:`Payouts.reconcile_payout`), standing in for Thred's user matching the payout to a bank
transaction. The arithmetic (gross, refunds, expected net, variance) is computed on every read by
:func:`thred_bridge.sandbox.views.payout_figures`, so it always reflects the records listed.
"""

from __future__ import annotations

from thred_bridge.sandbox import views
from thred_bridge.sandbox.ledger import Ledger, SandboxError, Written, as_json, invalid, new_id, not_found
from thred_bridge.sandbox.schemas import CreatePayoutRequest
from thred_bridge.sandbox.store import Doc, Documents


class Payouts(Ledger):
    """The payout part of the books."""

    def upsert_payout(self, business_id: str, request: CreatePayoutRequest) -> Written:
        """Create the payout (201) or replace the one with this ``external_id`` (200) unless reconciled."""
        with self.mutation() as docs:
            existing = docs.by_key("payout", business_id, request.external_id)
            if existing is not None and existing["reconciliation_status"] == "reconciled":
                raise SandboxError(
                    409,
                    "payout_reconciled",
                    f"Payout {request.external_id} is reconciled to a bank transaction and can no longer be updated.",
                )
            payout_id = existing["id"] if existing else new_id()
            payments = self._settled(docs, business_id, payout_id, request, "invoice_payment")
            refund_payments = self._settled(docs, business_id, payout_id, request, "refund_payment")
            stamp = views.iso(self.now())
            listed = {p["id"] for p in payments} | {r["id"] for r in refund_payments}
            for kind, ids in (("invoice_payment", "payment_ids"), ("refund_payment", "refund_payment_ids")):
                for old_id in (existing or {}).get(ids, []):
                    old = docs.get(kind, business_id, old_id)
                    if old is not None and old_id not in listed:
                        docs.put(kind, business_id, old | {"payout_id": None}, key=_key(kind, old))
            for kind, rows in (("invoice_payment", payments), ("refund_payment", refund_payments)):
                for row in rows:
                    docs.put(kind, business_id, row | {"payout_id": payout_id}, key=_key(kind, row))
            doc = {
                "id": payout_id,
                "business_id": business_id,
                **as_json(request),
                "reconciliation_status": "unreconciled",
                "reconciled_at": None,
                "settlement_file_id": None,
                "imported_at": existing["imported_at"] if existing else stamp,
                "created_at": existing["created_at"] if existing else stamp,
                "updated_at": stamp,
            }
            docs.put("payout", business_id, doc, key=request.external_id)
            return Written(views.payout(docs, doc), created=existing is None)

    def _settled(
        self, docs: Documents, business_id: str, payout_id: str, request: CreatePayoutRequest, kind: str
    ) -> list[Doc]:
        field = "payment_ids" if kind == "invoice_payment" else "refund_payment_ids"
        code = "payment_not_found" if kind == "invoice_payment" else "refund_payment_not_found"
        ids: list[str] = getattr(request, field)
        rows = []
        seen: set[str] = set()  # not ``ids[:n]``: that is quadratic, minutes for a payout of 50,000 payments
        for n, record_id in enumerate(ids):
            row = docs.get(kind, business_id, record_id)
            if row is None:
                raise not_found(code, "Payment" if kind == "invoice_payment" else "Refund payment", record_id)
            if record_id in seen:
                raise invalid(f"{field}.{n}", f"{record_id} is listed twice.")
            seen.add(record_id)
            if row["currency"] != request.currency:
                raise invalid(f"{field}.{n}", f"{record_id} is in {row['currency']}, the payout in {request.currency}.")
            if row.get("status") == "cancelled":
                raise invalid(f"{field}.{n}", f"{record_id} is cancelled.")
            if row["payout_id"] not in {None, payout_id}:
                other = docs.get("payout", business_id, row["payout_id"]) or {}
                raise invalid(
                    f"{field}.{n}",
                    f"{record_id} is already settled by payout {other.get('external_id')} ({row['payout_id']}).",
                )
            rows.append(row)
        return rows

    def reconcile_payout(self, business_id: str, payout_id: str) -> Doc:
        """Sandbox only: mark a payout reconciled to a bank transaction, as Thred does when its user matches
        the payout in the bank feed. Later upserts of it are refused with 409 ``payout_reconciled``."""
        with self.mutation() as docs:
            doc = docs.get("payout", business_id, payout_id)
            if doc is None:
                raise not_found("payout_not_found", "Payout", payout_id)
            stamp = views.iso(self.now())
            doc = doc | {"reconciliation_status": "reconciled", "reconciled_at": stamp, "updated_at": stamp}
            docs.put("payout", business_id, doc, key=doc["external_id"])
            return views.payout(docs, doc)


def _key(kind: str, doc: Doc) -> str | None:
    if kind == "refund_payment":
        return f"{doc['refund_id']}/{doc['external_id']}"
    return doc.get("external_id")
