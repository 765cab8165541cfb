"""Payouts: what a processor sent to the bank, as one Thred payout listing the Thred ids of what it settles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from thred_bridge.domain.ids import external_id
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Payout, PayoutItem
from thred_bridge.domain.record_types import Record, Ref, when


@dataclass(frozen=True, slots=True)
class PayoutTotals:
    """A payout in Thred's terms: gross payments − refunds − fees − other outflows + credits = paid out."""

    gross: int
    refunds: int
    fees: int
    outflows: int
    credits: int
    payments: tuple[Ref, ...]
    refund_payments: tuple[Ref, ...]

    @property
    def net(self) -> int:
        return self.gross - self.refunds - self.fees - self.outflows + self.credits


def payout_item_ref(processor: str, item: PayoutItem) -> tuple[str, Ref] | None:
    """The Thred record an item settles: ("payment" | "refund_payment", ref), or None for a bare fee."""
    if item.kind == "charge":
        return "payment", Ref("payment", external_id(processor, item.object_id))
    if item.kind == "dispute_credit":
        return "payment", Ref("payment", external_id(processor, item.object_id, "reinstated"))
    if item.kind in ("refund", "dispute_debit"):
        return "refund_payment", Ref("refund_payment", external_id(processor, item.object_id))
    return None


def payout_totals(payout: Payout) -> PayoutTotals:
    gross = refunds = fees = outflows = credits = 0
    payments: list[Ref] = []
    refund_payments: list[Ref] = []
    for item in payout.items:
        fees += item.fee.minor
        target = payout_item_ref(payout.processor, item)
        if target is not None and target[0] == "payment":
            gross += item.amount.minor
            payments.append(target[1])
        elif target is not None:
            refunds += -item.amount.minor
            refund_payments.append(target[1])
        elif item.kind == "fee":
            fees += -item.amount.minor
        elif item.amount.minor < 0:
            outflows += -item.amount.minor
        else:
            credits += item.amount.minor
    return PayoutTotals(gross, refunds, fees, outflows, credits, tuple(payments), tuple(refund_payments))


def payout_record(payout: Payout) -> Record:
    """One Thred payout, upserted by external id, listing the Thred ids of what it settles.

    Thred has no field for money that came in without a payment (a returned fee, a reserve released, a
    failed payout credited back): such credits lower the fees first, then the other outflows; what is
    still left shows as the payout's variance, with a memo, and ``reconcile`` flags it.
    """
    if payout.status in ("failed", "canceled"):
        return _unpaid_payout_record(payout)
    t = payout_totals(payout)
    fee_cents, left = max(t.fees, 0), t.credits + max(-t.fees, 0)  # fees given back net to a credit
    absorbed = min(fee_cents, left)
    fee_cents, left = fee_cents - absorbed, left - absorbed
    absorbed = min(t.outflows, left)
    outflow_cents, left = t.outflows - absorbed, left - absorbed
    ext = external_id(payout.processor, payout.object_id)
    notes = []
    if not payout.itemised:
        notes.append("manual payout: the processor does not itemise it (totals only)")
    if left:
        notes.append(f"credits of {Money(left, payout.amount.currency).format()} have no Thred field")
    expected = t.gross - t.refunds - fee_cents - outflow_cents
    if payout.itemised and payout.amount.minor != expected + left:
        notes.append("the items do not add up to the amount paid out")
    body: dict[str, Any] = {
        "external_id": ext,
        "processor": payout.processor,
        "processor_payout_id": payout.object_id,
        "paid_out_amount_cents": payout.amount.minor,
        "fee_cents": fee_cents,
        "additional_refunds_amount_cents": outflow_cents,
        "currency": payout.amount.currency,
        "status": payout.status,
        "completed_at": when(payout.arrives_at),
        "payment_ids": [None] * len(t.payments),
        "refund_payment_ids": [None] * len(t.refund_payments),
        "metadata": {
            "processor": payout.processor,
            "gross_cents": str(t.gross),
            "refunds_cents": str(t.refunds),
            "fees_cents": str(t.fees),
            "other_outflows_cents": str(t.outflows),
            "credits_cents": str(t.credits),
            **payout.metadata,
        },
    }
    if payout.reference:
        body["reference_number"] = payout.reference
    if notes:
        body["memo"] = "; ".join(notes)
    parents = {f"payment_ids.{i}": ref for i, ref in enumerate(t.payments)}
    parents.update({f"refund_payment_ids.{i}": ref for i, ref in enumerate(t.refund_payments)})
    return Record("payout", ext, body, parents=parents, updatable=True)


def _unpaid_payout_record(payout: Payout) -> Record:
    """A payout that failed or was canceled settled nothing: no money reached the bank, and what it carried
    goes back to the processor balance and into a later payout, which lists those payments instead."""
    ext = external_id(payout.processor, payout.object_id)
    body: dict[str, Any] = {
        "external_id": ext,
        "processor": payout.processor,
        "processor_payout_id": payout.object_id,
        "paid_out_amount_cents": 0,
        "fee_cents": 0,
        "additional_refunds_amount_cents": 0,
        "currency": payout.amount.currency,
        "status": payout.status,
        "completed_at": when(payout.arrives_at),
        "payment_ids": [],
        "refund_payment_ids": [],
        "memo": f"payout {payout.status}: {payout.amount.format()} returned to the {payout.processor} balance; "
        "what it carried is listed in the payout that paid it out again",
        "metadata": {"processor": payout.processor, "amount_cents": str(payout.amount.minor), **payout.metadata},
    }
    if payout.reference:
        body["reference_number"] = payout.reference
    return Record("payout", ext, body, updatable=True)


def carry_excess(body: Mapping[str, Any], excess: Sequence[tuple[str, int, str | None]]) -> dict[str, Any]:
    """The payout's body as sent, given the refund payments it settles that were booked short: each one's
    excess joins the additional refunds, named in the memo with its payment, so the payout still ties out; a
    refund payment booked for nothing (its whole amount beyond what was refundable) has no Thred id to list.
    ``excess``: (refund payment external id, excess in minor units, the payment's external id)."""
    out = {**body, "refund_payment_ids": [i for i in body.get("refund_payment_ids", []) if i is not None]}
    total = sum(cents for _, cents, _ in excess)
    if not total:
        return out
    currency = str(body["currency"])
    out["additional_refunds_amount_cents"] = int(body.get("additional_refunds_amount_cents") or 0) + total
    out["metadata"] = {**body.get("metadata", {}), "excess_refunds_cents": str(total)}
    named = ", ".join(
        f"{ext} {Money(cents, currency).format()}" + (f" (payment {payment})" if payment else "")
        for ext, cents, payment in excess
    )
    memo = f"money out beyond what was paid, carried as additional refunds: {named}"
    out["memo"] = f"{body['memo']}; {memo}" if body.get("memo") else memo
    return out
