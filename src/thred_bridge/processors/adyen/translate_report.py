"""A settlement batch's rows → the movements that book it: one per payment, refund and dispute stage the
batch settles, then the batch's :class:`Payout`. Pure.

The payout lists the Thred ids of every payment and refund payment it settles, so each must exist: a
payment, refund or dispute the webhooks already booked is named by the same external id (``references``)
and its records are not written again (one processor object is one Thred record); one the bridge never
saw (a lost webhook, an immediately captured payment on a connection set to wait for CAPTURE, history)
is booked here from its report rows, with the report's gross and fee, for the walk-in customer (the
report carries no shopper details).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, DisputeCredit, DisputeDebit, Movement, Party, Refund
from thred_bridge.processors.adyen.batch import BatchLine, BatchSummary
from thred_bridge.processors.adyen.report import ReportRow
from thred_bridge.processors.adyen.translate import PROCESSOR
from thred_bridge.processors.adyen.translate_payouts import to_payout


def _first(line: BatchLine, rows: Mapping[int, ReportRow]) -> ReportRow | None:
    return next((rows[n] for n in line.lines if n in rows), None)


def _metadata(row: ReportRow | None, summary: BatchSummary) -> dict[str, str]:
    metadata = {"source": "adyen_settlement_report", "adyen_batch_number": str(summary.batch_number)}
    if row is not None and row.psp_reference:
        metadata["adyen_psp_reference"] = row.psp_reference
    if row is not None and row.merchant_reference:
        metadata["merchant_reference"] = row.merchant_reference
    return metadata


def payment_charge(
    payment: str, amount: Money, fee: Money, row: ReportRow | None, summary: BatchSummary, at: datetime
) -> Charge:
    """The payment ``payment`` as a :class:`Charge` from its report row, for the walk-in customer."""
    reference = row.merchant_reference if row is not None else None
    return Charge(
        processor=PROCESSOR,
        object_id=payment,
        amount=amount,
        fee=fee,
        occurred_at=at,
        customer=Party("walkin"),
        description=reference or f"Adyen payment {payment}",
        method=(row.payment_method if row is not None else None) or "unknown",
        reference=reference or payment,
        metadata={**_metadata(row, summary), "fee_source": "settlement_report_applied"},
    )


def _charge_id(row: ReportRow | None) -> str | None:
    return row.psp_reference if row is not None and row.psp_reference else None


def report_movements(summary: BatchSummary, rows: Mapping[int, ReportRow], *, fallback_at: datetime) -> list[Movement]:
    """Every movement the batch needs, the payout last. ``rows`` are the batch's rows by line number;
    ``fallback_at`` dates a row whose Creation Date/TimeZone cannot be placed in time (and the payout, if
    its row cannot)."""
    moved: list[Movement] = []
    for line in summary.payments.values():
        row = _first(line, rows)
        if line.amount.minor > 0:
            at = (row.created_at if row is not None else None) or fallback_at
            moved.append(payment_charge(line.object_id, line.amount, line.fee, row, summary, at))
    for line in summary.refunds.values():
        row = _first(line, rows)
        charge_id = _charge_id(row)
        amount = -line.amount
        if charge_id is None or amount.minor <= 0:
            continue
        at = (row.created_at if row is not None else None) or fallback_at
        moved.append(
            Refund(PROCESSOR, line.object_id, charge_id, amount, line.fee, at, "succeeded",
                   metadata=_metadata(row, summary))
        )  # fmt: skip
    for line in summary.disputes:
        row = _first(line, rows)
        charge_id = _charge_id(row)
        if charge_id is None:
            continue
        at = (row.created_at if row is not None else None) or fallback_at
        if line.kind == "dispute_debit" and line.amount.minor < 0:
            moved.append(DisputeDebit(PROCESSOR, line.object_id, charge_id, -line.amount, line.fee, at))
        elif line.kind == "dispute_credit" and line.amount.minor > 0:
            returned = -line.fee if line.fee.minor < 0 else Money.zero(line.fee.currency)
            # A reinstatement is booked for the payment's customer: the payment's own records come along
            # (written only if the bridge never booked it, from this row: the walk-in customer).
            zero = Money.zero(line.amount.currency)
            moved.append(payment_charge(charge_id, line.amount, zero, row, summary, at))
            moved.append(DisputeCredit(PROCESSOR, line.object_id, charge_id, line.amount, returned, at))
    if summary.paid_at is None:
        summary = replace(summary, paid_at=fallback_at)
    moved.append(to_payout(summary))
    return moved
