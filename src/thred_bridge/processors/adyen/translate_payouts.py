"""An Adyen settlement batch (its :class:`BatchSummary`) → :class:`Payout`. Pure.

Mirrors ``stripe/translate_payouts``: the payout is what reached the bank (the batch's ``MerchantPayout``
Net Debit), and its items are everything the batch settled, signed as they moved the balance, each with
the fee Adyen kept, so Σ (amount − fee) over the items is the payout when the batch is complete. Payments,
refunds and dispute stages name the objects the webhooks booked (``references``), so the Thred payout
lists their Thred ids; fee rows are ``fee`` items and everything else ``adjustment`` items.
"""

from __future__ import annotations

from thred_bridge.domain.movements import Payout, PayoutItem, PayoutItemKind
from thred_bridge.errors import TranslationError
from thred_bridge.processors.adyen.batch import BatchLine, BatchSummary, LineKind
from thred_bridge.processors.adyen.references import payout_object_id
from thred_bridge.processors.adyen.translate import PROCESSOR

_ITEM_KIND: dict[LineKind, PayoutItemKind] = {
    "payment": "charge",
    "refund": "refund",
    "dispute_debit": "dispute_debit",
    "dispute_credit": "dispute_credit",
    "fee": "fee",
    "adjustment": "adjustment",
}


def to_payout_item(line: BatchLine) -> PayoutItem:
    """One batch line → a :class:`PayoutItem` (same sign and fee conventions)."""
    return PayoutItem(_ITEM_KIND[line.kind], line.object_id, line.amount, line.fee, line.description)


def to_payout(summary: BatchSummary, *, account: str | None = None) -> Payout:
    """A settlement batch → :class:`Payout` ``paid``, dated by its MerchantPayout row.

    Raises TranslationError for a batch with no MerchantPayout row (Adyen paid nothing out; the balance was
    carried to a later batch) or whose payout row's date cannot be placed in time (no Creation Date, or a
    TimeZone abbreviation that names no single offset).
    """
    what = f"Adyen settlement batch {summary.batch_number} of {summary.merchant_account}"
    if not summary.payout_lines:
        raise TranslationError(f"{what} has no MerchantPayout row: nothing was paid out")
    if summary.paid_at is None:
        raise TranslationError(f"{what}: the MerchantPayout row's Creation Date/TimeZone cannot be read as a time")
    metadata = {
        "adyen_merchant_account": summary.merchant_account,
        "adyen_batch_number": str(summary.batch_number),
        "expected_paid_out_cents": str(summary.expected_paid_out.minor),
        "variance_cents": str(summary.variance.minor),
    }
    if summary.mismatches:
        metadata["fee_mismatch_lines"] = ",".join(str(m.line) for m in summary.mismatches)
    return Payout(
        processor=PROCESSOR,
        object_id=payout_object_id(summary.merchant_account, summary.batch_number),
        amount=summary.paid_out,
        status="paid",
        arrives_at=summary.paid_at,
        items=tuple(to_payout_item(line) for line in summary.lines),
        itemised=True,
        account=account,
        reference=summary.payout_reference,
        metadata=metadata,
    )
