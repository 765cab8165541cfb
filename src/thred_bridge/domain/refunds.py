"""Money out: refunds and refund payments for processor refunds and for disputes' withdrawals."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from thred_bridge.domain.ids import external_id
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import DisputeDebit, Refund
from thred_bridge.domain.record_types import AFTER, Record, Ref, when


def refund_method(processor: str) -> str:
    """Thred's refund-payment method for money returned through a processor."""
    return "STRIPE" if processor == "stripe" else "CREDIT_CARD"


def _payment_of(invoice: Ref) -> Ref:
    """The payment a charge's invoice is paid by (``charge_records`` gives both the charge's external id)."""
    return Ref("payment", invoice.external_id)


def _refund_pair(
    processor: str, ext: str, invoice: Ref, amount: Money, fee: Money, at: datetime, memo: str, reference: str
) -> list[Record]:
    """A refund on the charge's invoice record, and the refund payment. The invoice record is the bridge's own
    or, for an invoice-first charge, the one that adopts the merchant's Thred invoice (``sales.adopted_invoice``):
    either way the refund waits for it, so it lands there whichever event brought the charge, and when."""
    refund = Record(
        "refund",
        ext,
        {
            "external_id": ext,
            "invoice_id": None,
            "method": refund_method(processor),
            "amount_cents": amount.minor,
            "completed_at": when(at),
            "processor": processor,
            "memo": memo,
            "reference_number": reference,
        },
        # Thred refunds only what was paid: after the charge's payment too, whichever event queued it first.
        parents={"invoice_id": invoice, AFTER + "payment": _payment_of(invoice)},
    )
    payment = Record(
        "refund_payment",
        ext,
        {
            "external_id": ext,
            "amount_cents": amount.minor,
            "method": refund_method(processor),
            "completed_at": when(at),
            "processor": processor,
            "refund_processing_fee_cents": max(fee.minor, 0),
            "memo": memo,
        },
        parent_path=Ref("refund", ext),
    )
    return [refund, payment]


def refund_records(refund: Refund) -> list[Record]:
    """A booked refund; one that failed or was canceled removes its refund payment instead."""
    ext = external_id(refund.processor, refund.object_id)
    if refund.status in ("failed", "canceled"):
        return [
            Record(
                "refund_payment",
                external_id(refund.processor, refund.object_id, "void"),
                {"reason": f"refund {refund.status}"},
                parents={"id": Ref("refund_payment", ext)},
                parent_path=Ref("refund", ext),
                op="delete",
            )
        ]
    memo = refund.reason or f"{refund.processor.title()} refund {refund.object_id}"
    invoice = Ref("invoice", external_id(refund.processor, refund.charge_id))
    return _refund_pair(
        refund.processor, ext, invoice, refund.amount, refund.fee, refund.occurred_at, memo, refund.object_id
    )


def dispute_debit_records(debit: DisputeDebit) -> list[Record]:
    """The disputed amount went back to the cardholder: a refund and refund payment, the fee on it."""
    ext = external_id(debit.processor, debit.object_id)
    memo = f"Dispute {debit.object_id}" + (f" ({debit.reason})" if debit.reason else "")
    invoice = Ref("invoice", external_id(debit.processor, debit.charge_id))
    return _refund_pair(
        debit.processor, ext, invoice, debit.amount, debit.fee, debit.occurred_at, memo, debit.object_id
    )


def within_room(amount: int, room: int | None) -> tuple[int, int]:
    """(booked, excess) of money out of ``amount`` when its payment has ``room`` left refundable (None: not
    known here; Thred decides). Thred refunds at most what was paid; a chargeback after a partial refund, or
    a refund after a chargeback, goes beyond that, and the excess is carried on the payout (decision 0007)."""
    if room is None or amount <= room:
        return amount, 0
    booked = max(room, 0)
    return booked, amount - booked


def booked_short(body: Mapping[str, Any], booked: int, excess: int) -> dict[str, Any]:
    """A refund's or refund payment's body booked for ``booked`` of its amount, its memo saying why."""
    memo = (
        f"booked {booked} of {booked + excess} (minor units): the other {excess} is beyond what the payment "
        "left refundable and is carried on the payout"
    )
    return {**body, "amount_cents": booked, "memo": f"{body['memo']}; {memo}" if body.get("memo") else memo}
