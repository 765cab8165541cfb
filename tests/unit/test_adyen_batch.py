"""One settlement batch → its summary, tied out to the cent (adyen/batch.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thred_bridge.domain.money import Money
from thred_bridge.errors import TranslationError
from thred_bridge.processors.adyen.batch import BatchSummary, split_batches, summarise_batch
from thred_bridge.processors.adyen.report import ReportRow, read_report

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "adyen"
LEGACY_HEADER = (FIXTURES / "settlement_detail_report_smashpig_donation.csv").read_text().splitlines()[0]


def _rows(name: str) -> list[ReportRow]:
    return list(read_report((FIXTURES / f"settlement_detail_report_{name}.csv").read_bytes()))


def _summary(name: str) -> BatchSummary:
    return summarise_batch(_rows(name))


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def test_a_complete_batch_ties_out_to_the_cent() -> None:
    s = _summary("batch_complete")
    assert (s.batch_number, s.merchant_account, s.currency) == (42, "TestMerchant", "EUR")
    assert s.paid_out == eur(6735)
    assert s.gross == eur(19000)  # payments 100 + 30 + 20, and the reversal 40
    assert s.refunds_total == eur(10500)  # the refund 25, the chargeback 40, the second chargeback 40
    assert s.fees_total == eur(2265)  # 2.90 + 0.60 + 0.40 + 7.50 on lines, 1.25 + 10.00 fee rows
    assert s.adjustments_total == eur(-500)  # the deposit correction credited 5.00
    assert s.expected_paid_out == eur(6735)
    assert s.gross - s.refunds_total - s.fees_total - s.adjustments_total == s.paid_out
    assert s.variance == eur(0)
    assert s.ties_out
    assert s.mismatches == ()
    assert s.payout_reference == "TX1234567890XT batch 42, TestMerchant"
    assert s.paid_at == datetime(2024, 3, 5, 6, 0, tzinfo=timezone(timedelta(hours=1)))
    assert s.payout_lines == (12,)


def test_payments_refunds_and_disputes_by_object() -> None:
    s = _summary("batch_complete")
    assert sorted(s.payments) == ["8815000000000001", "8815000000000002"]
    split = s.payments["8815000000000002"]  # two partial captures
    assert (split.kind, split.amount, split.fee, split.net, split.lines) == (
        "payment",
        eur(5000),
        eur(100),
        eur(4900),
        (3, 4),
    )
    assert (s.payments["8815000000000001"].amount, s.payments["8815000000000001"].fee) == (eur(10000), eur(290))
    assert list(s.refunds) == ["8835000000000001"]
    assert (s.refunds["8835000000000001"].amount, s.refunds["8835000000000001"].fee) == (eur(-2500), eur(0))
    disputes = [(d.kind, d.object_id, d.amount.minor, d.fee.minor) for d in s.disputes]
    assert disputes == [
        ("dispute_debit", "8845000000000003", -4000, 750),
        ("dispute_credit", "8845000000000003", 4000, 0),
        ("dispute_debit", "8845000000000003_second_chargeback", -4000, 0),
    ]
    assert [(f.amount.minor, f.description) for f in s.fees] == [
        (-125, "Fee: Transaction Fees March 2024"),
        (-1000, "InvoiceDeduction: Invoice NL2024030001 (1/1)"),
    ]
    assert [(a.kind, a.object_id, a.amount.minor) for a in s.adjustments] == [("adjustment", "batch_42_line_11", 500)]
    assert sum(line.net.minor for line in s.lines) == s.paid_out.minor


# file → (paid out, gross, refunds, fees, adjustments, variance) in minor units; SmashPig's fixtures are
# test data and often do not add up to their payout line: the variance says by how much.
SAMPLES = {
    "smashpig_chargeback": (403, 0, 100, 380, 0, 883),
    "smashpig_chargeback_reversed": (0, 5200, 0, 11, 0, -5189),
    "smashpig_deposit_correction": (0, 0, 0, 0, 20000, 20000),
    "smashpig_donation-ach": (78, 100, 0, 22, 0, 0),
    "smashpig_donation-ideal": (76, 570, 0, 27, 0, -467),
    "smashpig_donation": (76, 100, 0, 24, 0, 0),
    "smashpig_donation_reordered": (76, 100, 0, 24, 0, 0),
    "smashpig_emptynetcredit": (0, 11, 0, 14, 0, 3),
    "smashpig_invoice_deduction": (0, 0, 0, 3, 0, 3),
    "smashpig_payment_cost": (175, 0, 0, -175, 0, 0),
    "smashpig_refund": (403, 0, 100, 180, 0, 683),
    "fx_mismatch": (3630, 3755, 0, 125, 0, 0),
    "reordered_new_layout": (1140, 1234, 0, 94, 0, 0),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_batches(name: str) -> None:
    s = _summary(name)
    got = (s.paid_out, s.gross, s.refunds_total, s.fees_total, s.adjustments_total, s.variance)
    assert tuple(m.minor for m in got) == SAMPLES[name]
    assert s.gross - s.refunds_total - s.fees_total - s.adjustments_total + s.variance == s.paid_out


def test_fee_mismatches_are_reported_not_raised() -> None:
    s = _summary("fx_mismatch")
    assert s.variance.minor == 0
    assert not s.ties_out
    assert [(m.line, m.psp_reference, m.implied_fee.minor, m.reported_fee.minor) for m in s.mismatches] == [
        (3, "9915000000000002", 70, 50),
        (4, "9915000000000003", 20, 10),
    ]
    assert [m.difference.minor for m in s.mismatches] == [20, 10]


def test_rows_of_several_batches_are_refused_and_can_be_split() -> None:
    rows = _rows("smashpig_donation") + _rows("smashpig_refund")
    with pytest.raises(TranslationError, match="not one settlement batch: batch numbers 2, 3"):
        summarise_batch(rows)
    groups = split_batches(rows)
    assert list(groups) == [("WikimediaCOM", 2), ("WikimediaCOM", 3)]
    assert [summarise_batch(g).paid_out.minor for g in groups.values()] == [76, 403]


def test_other_refusals() -> None:
    with pytest.raises(TranslationError, match="batch numbers 9, 42"):
        summarise_batch(_rows("batch_complete") + _rows("fx_mismatch"))
    complete = (FIXTURES / "settlement_detail_report_batch_complete.csv").read_text()
    with pytest.raises(TranslationError, match="merchant accounts OtherMerchant, TestMerchant"):
        summarise_batch(read_report(complete.replace("TestCompany,TestMerchant,,", "TestCompany,OtherMerchant,,", 1)))
    with pytest.raises(TranslationError, match="net currencies EUR, USD"):
        summarise_batch(read_report(complete.replace(",EUR,1.25,", ",USD,1.25,")))
    with pytest.raises(TranslationError, match="is for merchant account 'WikimediaCOM', not 'Other'"):
        summarise_batch(_rows("smashpig_donation"), merchant_account="Other")
    with pytest.raises(TranslationError, match="line 2 has no Batch Number"):
        summarise_batch(_rows("docs_sample_rows"))
    with pytest.raises(TranslationError, match="no rows with an amount"):
        summarise_batch([])
    data = (FIXTURES / "settlement_detail_report_smashpig_donation.csv").read_text().replace("5364893193133131", "")
    with pytest.raises(TranslationError, match="line 2: a Settled row without a Psp Reference"):
        summarise_batch(read_report(data))


# --- any batch ties out to the cent ----------------------------------------------------------------

CREDIT_TYPES = ["Settled", "ChargebackReversed"]
DEBIT_TYPES = ["Refunded", "Chargeback", "SecondChargeback"]
FEE_TYPES = ["Fee", "MiscCosts", "PaymentCost", "InvoiceDeduction"]
ADJUSTMENT_TYPES = ["DepositCorrection", "Balancetransfer", "RefundedReversed", "MatchedStatement"]


@dataclass
class _Row:
    type: str
    reference: str
    gross: int  # minor units, ≥ 0
    fee: int  # minor units, ≥ 0
    net: int  # signed


def _text(minor: int) -> str:
    return format(Decimal(minor).scaleb(-2), "f")


def _money_row(kind: str, reference: str, gross: int, fee: int) -> _Row:
    net = gross - fee if kind in CREDIT_TYPES else -(gross + fee)
    return _Row(kind, reference, gross, fee, net)


money_rows = st.builds(
    _money_row,
    st.sampled_from(CREDIT_TYPES + DEBIT_TYPES),
    st.sampled_from(["R1", "R2", "R3"]),  # shared references: partial captures, a dispute's stages
    st.integers(min_value=0, max_value=10**8),
    st.integers(min_value=0, max_value=10**5),
)
other_rows = st.builds(
    lambda kind, net: _Row(kind, "", 0, 0, net),
    st.sampled_from(FEE_TYPES + ADJUSTMENT_TYPES),
    st.integers(min_value=-(10**6), max_value=10**6),
)


def _line(row: _Row) -> str:
    gross_debit = gross_credit = net_debit = net_credit = ""
    if row.type in CREDIT_TYPES:
        gross_credit = _text(row.gross)
    elif row.type in DEBIT_TYPES:
        gross_debit = _text(row.gross)
    if row.net >= 0:
        net_credit = _text(row.net)
    else:
        net_debit = _text(-row.net)
    money = row.type in CREDIT_TYPES + DEBIT_TYPES
    psp, gross_currency = (f"P{row.reference}", "EUR") if money else ("", "")
    commission = _text(row.fee) if money else ""
    cells = [
        "Co", "TestMerchant", psp, "", "", "2024-03-01 10:00:00", "CET", row.type, row.reference, gross_currency,
        gross_debit, gross_credit, "1" if money else "", "EUR", net_debit, net_credit, commission, "", "", "", "",
        "", "42", "", "", "", "", "", "", "",
    ]  # fmt: skip
    return ",".join(cells)


@settings(max_examples=150)
@given(st.lists(money_rows | other_rows, max_size=25), st.integers(min_value=-(10**4), max_value=10**4))
def test_any_batch_ties_out_to_the_cent(rows: list[_Row], unexplained: int) -> None:
    total = sum(r.net for r in rows)
    paid = total + unexplained
    payout = _Row("MerchantPayout", "TX batch 42", 0, 0, -paid)
    text = "\n".join([LEGACY_HEADER, *map(_line, [*rows, payout])])
    s = summarise_batch(read_report(text))
    gross = sum(r.gross for r in rows if r.type in CREDIT_TYPES)
    refunds = sum(r.gross for r in rows if r.type in DEBIT_TYPES)
    fees = sum(r.fee for r in rows) - sum(r.net for r in rows if r.type in FEE_TYPES)
    adjustments = -sum(r.net for r in rows if r.type in ADJUSTMENT_TYPES)
    assert s.paid_out == eur(paid)
    assert (s.gross, s.refunds_total, s.fees_total, s.adjustments_total) == (
        eur(gross),
        eur(refunds),
        eur(fees),
        eur(adjustments),
    )
    assert s.gross - s.refunds_total - s.fees_total - s.adjustments_total == eur(total)
    assert s.variance == eur(unexplained)
    assert s.mismatches == ()
    assert sum(line.net.minor for line in s.lines) == total
