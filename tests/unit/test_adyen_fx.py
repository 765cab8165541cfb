"""Adyen payments settled in another currency (decision 0008): a connection that names its settlement
currency holds the webhooks' readings in others, and the settlement report books them converted."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, DisputeDebit, Party, Payout, Refund
from thred_bridge.domain.records import records_for
from thred_bridge.processors.adyen.batch import summarise_batch
from thred_bridge.processors.adyen.report import read_report
from thred_bridge.processors.adyen.translate import held_unless_settled_in
from thred_bridge.processors.adyen.translate_report import report_movements
from thred_bridge.simulators.adyen_reports import SettlementReport, converted

AT = datetime(2026, 3, 2, tzinfo=UTC)


def _charge(cents: int, currency: str, object_id: str = "P1") -> Charge:
    amount = Money(cents, currency)
    return Charge("adyen", object_id, amount, amount - amount, AT, Party("shopper_1", name="Ada"), "order", "visa")


def _refund(cents: int, currency: str, status: str = "succeeded") -> Refund:
    amount = Money(cents, currency)
    return Refund("adyen", "R1", "P1", amount, amount - amount, AT, status)  # type: ignore[arg-type]


def test_only_movements_in_another_currency_than_the_settlements_are_held() -> None:
    eur, gbp = _charge(10_000, "EUR"), _charge(5_000, "GBP", "P2")
    chargeback = DisputeDebit("adyen", "D1", "P1", Money(3_000, "EUR"), Money(0, "EUR"), AT)
    payout = Payout("adyen", "M_batch_1", Money(1, "GBP"), "paid", AT, ())
    moved = held_unless_settled_in([eur, gbp, chargeback, payout], "GBP")
    assert [getattr(m, "held", None) for m in moved] == [True, False, True, None]
    assert held_unless_settled_in([eur, gbp], None) == [eur, gbp]  # no currency named: none held


def test_a_held_movement_holds_its_money_records_not_its_customer_nor_an_undo() -> None:
    records = records_for(held_unless_settled_in([_charge(10_000, "EUR"), _refund(2_000, "EUR")], "GBP"))
    assert [(r.kind, r.held) for r in records] == [
        ("customer", False), ("invoice", True), ("payment", True), ("refund", True), ("refund_payment", True),
    ]  # fmt: skip
    undone = records_for(held_unless_settled_in([_refund(2_000, "EUR", "failed")], "GBP"))
    assert {(r.op, r.held) for r in undone} == {("delete", False)}


def test_a_converted_row_is_booked_in_the_batch_currency_with_what_was_processed() -> None:
    report = SettlementReport(batch=5, currency="GBP")
    report.settled("P1", None, 120, reference="order-1", processed=("EUR", 10_000, "0.8512"))
    report.settled("P2", 5_000, 60)
    report.refunded("P1", "R1", None, processed=("EUR", 2_000, "0.8512"))
    rows = list(read_report(report.csv("new")))
    summary = summarise_batch(rows, merchant_account="TestMerchant")
    moved = report_movements(summary, {r.line: r for r in rows}, fallback_at=AT)
    charges = {m.object_id: m for m in moved if isinstance(m, Charge)}
    assert (charges["P1"].amount, charges["P1"].fee) == (Money(8_512, "GBP"), Money(120, "GBP"))
    assert {k: charges["P1"].metadata[k] for k in ("presentment_currency", "presentment_amount", "exchange_rate")} == {
        "presentment_currency": "EUR", "presentment_amount": "100.00", "exchange_rate": "0.8512",
    }  # fmt: skip
    assert "presentment_currency" not in charges["P2"].metadata
    (refund,) = [m for m in moved if isinstance(m, Refund)]
    assert (refund.amount, refund.metadata["presentment_amount"]) == (Money(1_702, "GBP"), "20.00")
    payout = moved[-1]
    assert isinstance(payout, Payout)
    assert payout.amount == payout.item_net == Money(report.net_total, "GBP")


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10**8),
            st.sampled_from(["EUR", "USD", "JPY", "KWD", "SEK"]),
            st.decimals(min_value=Decimal("0.001"), max_value=Decimal("250"), places=6),
            st.integers(min_value=0, max_value=500),
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["GBP", "EUR", "JPY", "BHD"]),
)
def test_any_converted_batch_ties_out_to_the_minor_unit(
    payments: list[tuple[int, str, Decimal, int]], currency: str
) -> None:
    """Whatever the processing currencies, amounts and rates, each payment is booked at the report's
    converted gross, its fee as stated, and the batch's items add up to its payout exactly."""
    report = SettlementReport(batch=9, currency=currency)
    expected: dict[str, int] = {}
    for n, (minor, source, rate, fee) in enumerate(payments):
        processed = (source, minor, format(rate, "f") if source != currency else "1")
        gross = converted(processed, currency)
        if gross - fee <= 0:
            continue
        report.settled(f"P{n}", None, fee, processed=processed)
        expected[f"P{n}"] = gross
    if not expected:
        return
    rows = list(read_report(report.csv()))
    summary = summarise_batch(rows)
    moved = report_movements(summary, {r.line: r for r in rows}, fallback_at=AT)
    assert {m.object_id: m.amount.minor for m in moved if isinstance(m, Charge)} == expected
    assert all(m.amount.currency == currency for m in moved if isinstance(m, Charge))
    payout = moved[-1]
    assert isinstance(payout, Payout)
    assert payout.item_net == payout.amount == Money(report.net_total, currency)
    assert summary.variance.minor == 0
    assert not summary.mismatches
