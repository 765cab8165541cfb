"""Settlement details report rows, by header name, with the per-row fee tie-out (adyen/report.py).

``settlement_detail_report_smashpig_*.csv`` are wikimedia-fundraising-SmashPig's fixtures (anonymised, real
format; legacy 30-column and 2025-era 49-column headers); ``docs_sample_rows`` are the rows quoted in Adyen's
docs under the legacy header; ``batch_complete``, ``fx_mismatch`` and ``reordered_new_layout`` are ours.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from thred_bridge.domain.money import Money
from thred_bridge.errors import TranslationError
from thred_bridge.processors.adyen.report import ReportRow, read_report

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "adyen"
LEGACY_HEADER = (FIXTURES / "settlement_detail_report_smashpig_donation.csv").read_text().splitlines()[0]


def _rows(name: str) -> list[ReportRow]:
    return list(read_report((FIXTURES / f"settlement_detail_report_{name}.csv").read_bytes()))


def usd(minor: int) -> Money:
    return Money(minor, "USD")


# file → [(kind, psp reference, net minor units, implied fee minor units or None)], in file order
EXPECTED: dict[str, list[tuple[str, str | None, int, int | None]]] = {
    "smashpig_chargeback": [
        ("chargeback", "4555568860022701", -300, 200),
        ("fee", None, -180, None),
        ("merchant_payout", None, -403, None),
    ],
    "smashpig_chargeback_reversed": [("chargeback_reversed", "4522268860022701", 5189, 11)],
    "smashpig_deposit_correction": [
        ("deposit_correction", None, -50000, None),
        ("deposit_correction", None, 30000, None),
    ],
    "smashpig_donation-ach": [("settled", "GDC9ZZ4L2MONEY42", 78, 22), ("merchant_payout", None, -78, None)],
    "smashpig_donation-ideal": [("settled", "1515876691993221", 543, 27), ("merchant_payout", None, -76, None)],
    "smashpig_donation": [("settled", "5364893193133131", 76, 24), ("merchant_payout", None, -76, None)],
    "smashpig_donation_reordered": [("settled", "5364893193133131", 76, 24), ("merchant_payout", None, -76, None)],
    "smashpig_emptynetcredit": [("settled", "FVD6HH297FKD7K69", -3, 14)],
    "smashpig_invoice_deduction": [("invoice_deduction", None, -6, None), ("invoice_deduction", None, 3, None)],
    "smashpig_payment_cost": [("payment_cost", "PAYMENTCOSTPSP01", 175, None), ("merchant_payout", None, -175, None)],
    "smashpig_refund": [
        ("refunded", "4522268860022701", -100, 0),
        ("fee", None, -180, None),
        ("merchant_payout", None, -403, None),
    ],
    "docs_sample_rows": [("settled", "1813702551707653", 488, 12), ("chargeback", "1313642467023511", -35749, 750)],
}


def test_every_sample_report_is_covered() -> None:
    names = {p.name.removeprefix("settlement_detail_report_").removesuffix(".csv") for p in FIXTURES.glob("*.csv")}
    assert set(EXPECTED) <= names
    assert names - set(EXPECTED) == {"batch_complete", "fx_mismatch", "reordered_new_layout"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_sample_report_parses(name: str) -> None:
    rows = _rows(name)
    got = [(r.kind, r.psp_reference, r.net.minor if r.net else None, r.fee.minor if r.fee else None) for r in rows]
    assert got == EXPECTED[name]
    for row in rows:
        assert row.fee_mismatch is None  # every sample row ties out against its fee columns


def test_a_legacy_row_in_full() -> None:
    (row, payout) = _rows("smashpig_donation")
    assert row.line == 2
    assert row.type == "Settled"
    assert row.batch_number == 2
    assert row.company_account == "Wikimedia"
    assert row.merchant_account == "WikimediaCOM"
    assert row.modification_reference == "5555593193155555"
    assert row.merchant_reference == "33992337.0"
    assert row.modification_merchant_reference is None
    assert row.payment_method == "visa"
    assert row.creation_date == datetime(2016, 2, 18, 16, 10, 51)
    assert row.created_at == datetime(2016, 2, 18, 16, 10, 51, tzinfo=timezone(timedelta(hours=-8)))
    assert (row.gross_currency, row.gross_debit, row.gross_credit) == ("USD", None, usd(100))
    assert row.exchange_rate == Decimal(1)
    assert (row.net_currency, row.net_debit, row.net_credit) == ("USD", None, usd(76))
    assert (row.commission, row.markup, row.scheme_fees, row.interchange) == (None, None, usd(2), usd(22))
    assert (row.dcc_markup, row.payment_fees) == (None, None)
    assert (row.gross, row.net, row.gross_in_net_currency) == (usd(100), usd(76), usd(100))
    assert (row.fee, row.reported_fee, row.fee_mismatch) == (usd(24), usd(24), None)
    assert row.columns["Payment Method Variant"] == "visadebit"
    assert payout.modification_reference == "TX2342222277XT batch 2, WikimediaCOM batch 2, WikimediaCOM"
    assert payout.net == usd(-76)
    assert payout.gross_currency == "EUR"  # gross currency EUR, net USD: only the net counts


def test_columns_are_found_by_name_not_position() -> None:
    plain, reordered = _rows("smashpig_donation"), _rows("smashpig_donation_reordered")
    assert [replace(r, columns={}) for r in plain] == [replace(r, columns={}) for r in reordered]


def test_the_new_layout_reordered_with_a_bom_crlf_an_extra_column_and_a_multi_line_cell() -> None:
    settled, fee, payout = _rows("reordered_new_layout")
    assert settled.kind == "settled"
    assert settled.psp_reference == "AAAA000000000001"
    assert settled.columns["Store"] == "Amsterdam, Centrum"
    assert settled.columns["Metadata"] == '{"order":"web-77","note":"a, b"}'
    assert settled.columns["ARN"] == "1.2302025304E+022"  # left as text, never read as a number
    assert settled.exchange_rate == Decimal("1.000000000000000")
    assert (settled.gross, settled.net) == (usd(1234), usd(1190))
    assert (settled.markup, settled.scheme_fees, settled.interchange, settled.payment_fees) == (
        usd(10),
        usd(4),
        usd(30),
        usd(44),
    )
    # Payment Fees (NC) is the total of the other fee columns here, so it is not added twice
    assert (settled.fee, settled.reported_fee, settled.fee_mismatch) == (usd(44), usd(44), None)
    assert fee.columns["Metadata"] == "multi-line\nnote, with comma"
    assert fee.net == usd(-50)  # ".50"
    assert (payout.kind, payout.net, payout.batch_number) == ("merchant_payout", usd(-1140), 7)
    assert payout.line == 5  # the multi-line cell spans lines 3 and 4


def test_lines_stream_the_same_as_bytes() -> None:
    for name in ("smashpig_chargeback", "reordered_new_layout"):
        data = (FIXTURES / f"settlement_detail_report_{name}.csv").read_bytes()
        lines = iter(data.decode("utf-8").splitlines(keepends=True))
        assert list(read_report(lines)) == list(read_report(data))
        assert list(read_report(data.decode("utf-8-sig"))) == list(read_report(data))


def test_the_2025_layout_and_its_payment_fees_total() -> None:
    (row,) = _rows("smashpig_emptynetcredit")
    assert (row.gross_currency, row.gross, row.exchange_rate) == ("INR", Money(1000, "INR"), Decimal("0.011"))
    assert (row.net_debit, row.net_credit, row.net) == (usd(3), None, usd(-3))  # fees exceed the FX'd gross
    assert (row.markup, row.scheme_fees, row.interchange, row.payment_fees) == (usd(0), usd(4), usd(10), usd(14))
    assert (row.gross_in_net_currency, row.fee, row.reported_fee, row.fee_mismatch) == (usd(11), usd(14), usd(14), None)
    assert row.created_at == datetime(2025, 10, 31, 4, 5, 39, tzinfo=timezone(timedelta(hours=-7)))
    assert row.columns["Metadata"].startswith('{"gr4vy_intent":"authorize"')


def test_fx_rows_tie_out_within_a_minor_unit_or_report_the_mismatch() -> None:
    ties, fx_off, same_off, payout = _rows("fx_mismatch")
    assert (ties.gross_in_net_currency, ties.fee, ties.fee_mismatch) == (usd(1085), usd(35), None)
    assert (fx_off.gross_in_net_currency, fx_off.fee, fx_off.reported_fee) == (usd(2170), usd(70), usd(50))
    assert fx_off.fee_mismatch == usd(20)
    assert (same_off.fee, same_off.reported_fee, same_off.fee_mismatch) == (usd(20), usd(10), usd(10))
    assert payout.fee_mismatch is None


def test_an_fx_row_within_rounding_keeps_the_reports_own_split() -> None:
    settled, _ = _rows("smashpig_donation-ideal")
    # EUR 5.35 × 1.0656568 = USD 5.7013…; net 5.43 + commission 0.27 = 5.70: within a cent, so 5.70 exactly
    assert (settled.gross, settled.exchange_rate) == (Money(535, "EUR"), Decimal("1.0656568"))
    assert (settled.gross_in_net_currency, settled.fee, settled.fee_mismatch) == (usd(570), usd(27), None)


def test_the_docs_sample_rows() -> None:
    settled, chargeback = _rows("docs_sample_rows")
    gbp = "GBP"
    assert (settled.gross, settled.net) == (Money(500, gbp), Money(488, gbp))
    assert (settled.commission, settled.markup, settled.scheme_fees, settled.interchange) == (
        None,
        Money(4, gbp),
        Money(1, gbp),
        Money(7, gbp),
    )
    assert settled.batch_number is None
    assert settled.timezone == "CET"
    assert settled.created_at == datetime(2013, 6, 3, 11, 26, 49, tzinfo=timezone(timedelta(hours=1)))
    assert (chargeback.gross, chargeback.net, chargeback.commission) == (
        Money(-34999, "EUR"),
        Money(-35749, "EUR"),
        Money(750, "EUR"),
    )


@pytest.mark.parametrize("zone", ["CST", "IST", "XYZ", ""])
def test_an_ambiguous_or_unknown_zone_gives_no_aware_time(zone: str) -> None:
    (row, _) = _rows("smashpig_donation")
    assert replace(row, timezone=zone or None).created_at is None


def _csv(*lines: str, header: str = LEGACY_HEADER) -> bytes:
    return "\n".join([header, *lines]).encode()


SETTLED = "C,M,PSP1,ref,visa,2024-01-01 10:00:00,CET,Settled,MOD1,{gc},,{gross},1,{nc},,{net},{comm},,,,visa,,5,,,,,,,"


def _settled(gross: str = "1.00", net: str = "0.90", comm: str = "0.10", gc: str = "EUR", nc: str = "EUR") -> str:
    return SETTLED.format(gross=gross, net=net, comm=comm, gc=gc, nc=nc)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the settlement report is empty (no header line)"),
        (b"a,b,c\n1,2,3\n", "not a settlement details report: the header has no 'Merchant Account', 'Psp Reference'"),
        (
            _csv(header=LEGACY_HEADER.replace("Batch Number", "Batch")),
            "not a settlement details report: the header has no 'Batch Number'",
        ),
        (_csv(header=LEGACY_HEADER + ",Type"), "settlement report header names 'Type' twice"),
        (_csv(_settled(net="0.905")), "settlement report line 2, 'Net Credit (NC)': 0.905 has more than 2 decimals"),
        (_csv(_settled(gross="1.5", gc="JPY")), "settlement report line 2, 'Gross Credit (GC)': 1.5 has more than 0"),
        (_csv(_settled(comm='"1,00"')), "settlement report line 2, 'Commission (NC)': not a decimal amount: '1,00'"),
        (_csv(_settled(nc="")), "settlement report line 2, 'Net Credit (NC)': '0.90' has no currency"),
        (_csv(_settled(gc="EURO")), "settlement report line 2, 'Gross Currency': not an ISO 4217 currency code"),
        (_csv(_settled().replace("2024-01-01 10:00:00", "01/01/2024")), "settlement report line 2, 'Creation Date'"),
        (_csv(_settled().replace(",5,", ",five,")), "settlement report line 2, 'Batch Number': 'five' is not a whole"),
        (_csv(_settled() + ",surprise"), "settlement report line 2 has 31 cells for 30 columns"),
        (_csv(_settled().replace("Settled", "")), "settlement report line 2, 'Type': blank"),
        (b"\xff\xfe" + _csv(), "the settlement report is not UTF-8"),
    ],
)
def test_unreadable_reports_are_refused_with_the_line_and_column(data: bytes, message: str) -> None:
    with pytest.raises(TranslationError) as caught:
        list(read_report(data))
    assert caught.value.message.startswith(message)


def test_short_rows_blank_lines_and_trailing_empty_cells_are_tolerated() -> None:
    row = _settled()
    rows = list(read_report(_csv("", row + ",,,", row.rsplit(",", 7)[0], "")))
    assert [r.net for r in rows] == [Money(90, "EUR"), Money(90, "EUR")]
    assert [r.line for r in rows] == [3, 4]


@pytest.mark.parametrize(
    ("type_text", "kind"),
    [
        ("Settled", "settled"),
        ("SecondChargeback", "second_chargeback"),
        ("ChargebackReversed", "chargeback_reversed"),
        ("RefundedReversed", "refunded_reversed"),
        ("MiscCosts", "misc_costs"),
        ("Balancetransfer", "balance_transfer"),
        ("BalanceTransfer", "balance_transfer"),
        ("MatchedStatement", "other"),
        ("PaidOutReversed", "other"),
    ],
)
def test_row_types(type_text: str, kind: str) -> None:
    (row,) = read_report(_csv(_settled().replace("Settled", type_text)))
    assert (row.type, row.kind) == (type_text, kind)
