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
from thred_bridge.domain.movements import Charge, DisputeCredit, DisputeDebit, Movement, Party, Payout, Refund
from thred_bridge.processors.adyen.batch import BatchLine, BatchSummary
from thred_bridge.processors.adyen.report import ReportRow
from thred_bridge.processors.adyen.translate import PROCESSOR
from thred_bridge.processors.adyen.translate_payouts import to_payout


def _first(line: BatchLine, rows: Mapping[int, ReportRow]) -> ReportRow | None:
    return next((rows[n] for n in line.lines if n in rows), None)


def _metadata(row: ReportRow | None, summary: BatchSummary, line: BatchLine | None = None) -> dict[str, str]:
    metadata = {"source": "adyen_settlement_report", "adyen_batch_number": str(summary.batch_number)}
    if row is not None and row.psp_reference:
        metadata["adyen_psp_reference"] = row.psp_reference
    if row is not None and row.merchant_reference:
        metadata["merchant_reference"] = row.merchant_reference
    if row is not None and row.gross_currency and row.gross_currency != summary.currency:
        metadata |= _processed(row, line)
    return metadata


def _processed(row: ReportRow, line: BatchLine | None) -> dict[str, str]:
    """What a converted row was processed as, in the keys Stripe and Mollie FX use: its currency, the
    exchange rate, and the amount when one row states it (partial captures add up in the batch's
    currency only)."""
    out = {"presentment_currency": str(row.gross_currency)}
    if row.exchange_rate is not None:
        out["exchange_rate"] = format(row.exchange_rate.normalize(), "f")
    gross = row.gross
    if gross is not None and line is not None and len(line.lines) == 1:
        magnitude = gross if gross.minor >= 0 else -gross
        out["presentment_amount"] = format(magnitude.to_decimal(), "f")
    return out


def payment_charge(
    payment: str,
    amount: Money,
    fee: Money,
    row: ReportRow | None,
    summary: BatchSummary,
    at: datetime,
    line: BatchLine | None = None,
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
        metadata={**_metadata(row, summary, line), "fee_source": "settlement_report_applied"},
    )


def _charge_id(row: ReportRow | None) -> str | None:
    return row.psp_reference if row is not None and row.psp_reference else None


def line_movements(
    line: BatchLine, row: ReportRow | None, summary: BatchSummary, fallback_at: datetime
) -> list[Movement]:
    """The movements that book one payment, refund or dispute line of the batch (``row``: its first report
    row, for the date, references and payment method); none for a line with nothing to book (a refund
    with no payment reference, a zero amount). A reinstatement comes with its payment's charge, which
    ``records_for`` needs beside it."""
    at = (row.created_at if row is not None else None) or fallback_at
    if line.kind == "payment":
        if line.amount.minor <= 0:
            return []
        return [payment_charge(line.object_id, line.amount, line.fee, row, summary, at, line)]
    charge_id = _charge_id(row)
    if charge_id is None:
        return []
    if line.kind == "refund":
        amount = -line.amount
        if amount.minor <= 0:
            return []
        return [Refund(PROCESSOR, line.object_id, charge_id, amount, line.fee, at, "succeeded",
                       metadata=_metadata(row, summary, line))]  # fmt: skip
    if line.kind == "dispute_debit" and line.amount.minor < 0:
        return [DisputeDebit(PROCESSOR, line.object_id, charge_id, -line.amount, line.fee, at)]
    if line.kind == "dispute_credit" and line.amount.minor > 0:
        returned = -line.fee if line.fee.minor < 0 else Money.zero(line.fee.currency)
        # A reinstatement is booked for the payment's customer: the payment's own records come along
        # (written only if the bridge never booked it, from this row: the walk-in customer).
        zero = Money.zero(line.amount.currency)
        return [
            payment_charge(charge_id, line.amount, zero, row, summary, at),
            DisputeCredit(PROCESSOR, line.object_id, charge_id, line.amount, returned, at),
        ]
    return []


def batch_payout(summary: BatchSummary, *, fallback_at: datetime) -> Payout:
    """The batch's payout (dated ``fallback_at`` when its MerchantPayout row cannot be placed in time)."""
    if summary.paid_at is None:
        summary = replace(summary, paid_at=fallback_at)
    return to_payout(summary)


def report_movements(summary: BatchSummary, rows: Mapping[int, ReportRow], *, fallback_at: datetime) -> list[Movement]:
    """Every movement the batch needs, the payout last. ``rows`` are the batch's rows by line number;
    ``fallback_at`` dates a row whose Creation Date/TimeZone cannot be placed in time (and the payout, if
    its row cannot). (``report_stream`` does the same a row at a time, without holding the rows.)"""
    moved: list[Movement] = []
    for line in (*summary.payments.values(), *summary.refunds.values(), *summary.disputes):
        moved += line_movements(line, _first(line, rows), summary, fallback_at)
    moved.append(batch_payout(summary, fallback_at=fallback_at))
    return moved
