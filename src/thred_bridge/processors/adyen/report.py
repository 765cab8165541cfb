"""Adyen's settlement details report (CSV) → typed rows, one at a time. Pure: the caller downloads.

Columns are found BY HEADER NAME, never by position (PROCESSORS.md §2.5, §4 fact 16, §6): the legacy
30-column layout, the 2023+ layout that appends ~19 columns after ``Reserved10``, merchant-added columns
and reordered columns all read the same. Names match ignoring case and repeated spaces.

Every amount is decimal text in major units, read with Decimal into ISO minor units (``currency``): a
blank or ``""`` cell is None (and counts as 0 where summed). Fee columns (Commission, Markup, Scheme Fees,
Interchange, DCC Markup, Payment Fees) are in the net currency.

Each row with a gross amount is tied out: its implied fee (gross in the net currency − net) against the
fee columns. A difference is kept on the row as data (``fee_mismatch``); it never stops the parse.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import lru_cache
from typing import Literal

from thred_bridge.domain.money import Money, MoneyError, iso_exponent, normalise_currency
from thred_bridge.errors import TranslationError
from thred_bridge.processors.adyen.currency import parse_report_amount, parse_report_decimal

RowKind = Literal[
    "settled",
    "refunded",
    "chargeback",
    "second_chargeback",
    "chargeback_reversed",
    "refunded_reversed",
    "fee",
    "misc_costs",
    "payment_cost",
    "invoice_deduction",
    "deposit_correction",
    "balance_transfer",
    "merchant_payout",
    "other",
]

# ``Type`` (lower-cased) → kind. Adyen writes ``Balancetransfer``; any case is accepted. Types not listed
# (MatchedStatement, ManualCorrected, BankInstructionReturned, EpaPaid, PaidOut, PaidOutReversed, …) are
# ``other``, their ``type`` kept as written.
_KIND_BY_TYPE: dict[str, RowKind] = {
    "settled": "settled",
    "refunded": "refunded",
    "chargeback": "chargeback",
    "secondchargeback": "second_chargeback",
    "chargebackreversed": "chargeback_reversed",
    "refundedreversed": "refunded_reversed",
    "fee": "fee",
    "misccosts": "misc_costs",
    "paymentcost": "payment_cost",
    "invoicededuction": "invoice_deduction",
    "depositcorrection": "deposit_correction",
    "balancetransfer": "balance_transfer",
    "merchantpayout": "merchant_payout",
}

REQUIRED_COLUMNS: tuple[str, ...] = (
    "Merchant Account",
    "Psp Reference",
    "Type",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    "Batch Number",
)
"""Columns every layout has; a report without one of them is refused."""

FEE_COLUMNS: tuple[str, ...] = (
    "Commission (NC)",
    "Markup (NC)",
    "Scheme Fees (NC)",
    "Interchange (NC)",
    "DCC Markup (NC)",
)
"""Fee components summed for the tie-out (blank = 0). ``Payment Fees (NC)`` is handled apart: see
:func:`reported_fee`."""

PAYMENT_FEES = "Payment Fees (NC)"

# Creation Date's TimeZone is an abbreviation (§2.5, §6). Only unambiguous ones are read; CST, IST and
# the like are not (they name several zones), and neither is anything unknown: ``created_at`` is then None.
TIMEZONE_OFFSETS_H: dict[str, float] = {
    "UTC": 0, "GMT": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2, "MET": 1, "MEST": 2,
    "EET": 2, "EEST": 3, "MSK": 3, "EST": -5, "EDT": -4, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
    "AKST": -9, "AKDT": -8, "HST": -10, "BRT": -3, "JST": 9, "KST": 9, "HKT": 8, "SGT": 8,
    "AEST": 10, "AEDT": 11, "AWST": 8, "NZST": 12, "NZDT": 13,
}  # fmt: skip

_WIDE = Context(prec=80)


@lru_cache(maxsize=512)
def _norm(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").split()).casefold()


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One row of a settlement details report. Amounts are Money at ISO minor units, None when blank.

    ``gross_*`` are in ``gross_currency``; ``net_*`` and every fee column in ``net_currency``.
    ``gross_in_net_currency``, ``fee``, ``reported_fee`` and ``fee_mismatch`` are set on rows that have both
    a gross and a net amount (the payment rows); see :func:`read_report`.
    """

    line: int
    type: str
    kind: RowKind
    batch_number: int | None
    company_account: str | None
    merchant_account: str
    psp_reference: str | None
    modification_reference: str | None
    merchant_reference: str | None
    modification_merchant_reference: str | None
    payment_method: str | None
    creation_date: datetime | None
    timezone: str | None
    gross_currency: str | None
    gross_debit: Money | None
    gross_credit: Money | None
    exchange_rate: Decimal | None
    net_currency: str | None
    net_debit: Money | None
    net_credit: Money | None
    commission: Money | None
    markup: Money | None
    scheme_fees: Money | None
    interchange: Money | None
    dcc_markup: Money | None
    payment_fees: Money | None
    gross_in_net_currency: Money | None
    fee: Money | None
    reported_fee: Money | None
    fee_mismatch: Money | None
    columns: Mapping[str, str]

    @property
    def gross(self) -> Money | None:
        """Gross credit − gross debit (signed as it moved the balance), in the gross currency."""
        return _signed(self.gross_credit, self.gross_debit)

    @property
    def net(self) -> Money | None:
        """Net credit − net debit, in the net currency: what the row did to the merchant's balance."""
        return _signed(self.net_credit, self.net_debit)

    @property
    def created_at(self) -> datetime | None:
        """``creation_date`` made aware through ``timezone``; None if either is missing or the zone unknown."""
        if self.creation_date is None or self.timezone is None:
            return None
        hours = TIMEZONE_OFFSETS_H.get(self.timezone.strip().upper())
        if hours is None:
            return None
        return self.creation_date.replace(tzinfo=timezone(timedelta(hours=hours)))


def _signed(credit: Money | None, debit: Money | None) -> Money | None:
    if credit is None:
        return None if debit is None else -debit
    return credit if debit is None else credit - debit


def reported_fee(components: Money, payment_fees: Money | None) -> Money:
    """The fee a row's fee columns state: ``components`` (Commission + Markup + Scheme Fees + Interchange +
    DCC Markup), and ``Payment Fees (NC)`` where it fits.

    In Adyen's 2025-era rows ``Payment Fees (NC)`` is the total of the other fee columns (SmashPig
    ``emptynetcredit``: Markup 0 + Scheme Fees 0.04 + Interchange 0.1, Payment Fees 0.14), while
    PROCESSORS.md §4 fact 16 lists it as an addend. So: blank or 0 → the sum; equal to the sum, or the only
    fee given → itself; otherwise → added to the sum.
    """
    if payment_fees is None or payment_fees.minor == 0:
        return components
    if components.minor in (0, payment_fees.minor):
        return payment_fees
    return components + payment_fees


def _unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-iso_exponent(currency))


def _tie_out(
    gross: Money | None, net: Money | None, rate: Decimal | None, fee: Money
) -> tuple[Money | None, Money | None, Money | None]:
    """(gross in the net currency, implied fee, fee mismatch) for a row with a gross and a net amount.

    Same currency: exact. Across currencies Adyen gives gross × ``Exchange Rate`` ≈ net + fees: if net +
    reported fee is within one minor unit of gross × rate, that is the gross (exact, no rounding of ours);
    otherwise gross × rate rounded half-up, and the difference shows as a mismatch.
    """
    if gross is None or net is None:
        return None, None, None
    if gross.currency == net.currency:
        in_net = gross
    else:
        candidate = net + fee
        if rate is None:
            return candidate, fee, None  # nothing to check against: the report's own split stands
        converted = _WIDE.multiply(gross.to_decimal(), rate)
        unit = _unit(net.currency)
        if abs(_WIDE.subtract(converted, candidate.to_decimal())) < unit:
            in_net = candidate
        else:
            rounded = converted.quantize(unit, rounding=ROUND_HALF_UP, context=_WIDE)
            in_net = Money(int(rounded.scaleb(iso_exponent(net.currency), _WIDE)), net.currency)
    implied = in_net - net
    mismatch = implied - fee
    return in_net, implied, (mismatch if mismatch.minor else None)


class _Cells:
    """One CSV record by header name, with the row's line number for every error it raises."""

    def __init__(self, index: Mapping[str, int], header: list[str], record: list[str], line: int) -> None:
        self.index, self.header, self.record, self.line = index, header, record, line

    def text(self, column: str) -> str | None:
        position = self.index.get(_norm(column))
        if position is None or position >= len(self.record):
            return None
        value = self.record[position].strip()
        return value or None

    def fail(self, column: str, problem: str) -> TranslationError:
        return TranslationError(f"settlement report line {self.line}, {column!r}: {problem}")

    def currency(self, column: str) -> str | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            return normalise_currency(value)
        except MoneyError as exc:
            raise self.fail(column, str(exc)) from exc

    def money(self, column: str, currency: str | None, currency_column: str) -> Money | None:
        value = self.text(column)
        if value is None:
            return None
        if currency is None:
            raise self.fail(column, f"{value!r} has no currency ({currency_column!r} is blank)")
        try:
            return parse_report_amount(value, currency)
        except MoneyError as exc:
            raise self.fail(column, str(exc)) from exc

    def decimal(self, column: str) -> Decimal | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            return parse_report_decimal(value)
        except MoneyError as exc:
            raise self.fail(column, str(exc)) from exc

    def integer(self, column: str) -> int | None:
        value = self.text(column)
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()):
            raise self.fail(column, f"{value!r} is not a whole number")
        return int(value)

    def date(self, column: str) -> datetime | None:
        value = self.text(column)
        if value is None:
            return None
        # fromisoformat is ~10x faster than strptime, and the shape check keeps it to this one format.
        if len(value) == 19 and value[10] == " " and value[4] == value[7] == "-" and value[13] == value[16] == ":":
            try:
                return datetime.fromisoformat(value)  # naive: the zone is the TimeZone cell
            except ValueError:
                pass
        raise self.fail(column, f"{value!r} is not YYYY-MM-DD HH:MM:SS")

    def by_name(self) -> Mapping[str, str]:
        return _ByName(self.header, self.record)


class _ByName(Mapping[str, str]):
    """A row's cells by header name, read from the CSV record when asked: building a dict for each row
    cost a tenth of the parse, and nothing in the bridge reads it (it is there for what it does not map)."""

    __slots__ = ("_header", "_record")

    def __init__(self, header: list[str], record: list[str]) -> None:
        self._header, self._record = header, record

    def __getitem__(self, name: str) -> str:
        try:
            i = self._header.index(name)
        except ValueError:
            raise KeyError(name) from None
        return self._record[i] if i < len(self._record) else ""

    def __iter__(self) -> Iterator[str]:
        return iter(self._header)

    def __len__(self) -> int:
        return len(self._header)


def _row(cells: _Cells) -> ReportRow:
    type_text = cells.text("Type")
    if type_text is None:
        raise cells.fail("Type", "blank")
    merchant = cells.text("Merchant Account")
    if merchant is None:
        raise cells.fail("Merchant Account", "blank")
    gross_currency = cells.currency("Gross Currency")
    net_currency = cells.currency("Net Currency")

    def nc(column: str) -> Money | None:
        return cells.money(column, net_currency, "Net Currency")

    gross_debit = cells.money("Gross Debit (GC)", gross_currency, "Gross Currency")
    gross_credit = cells.money("Gross Credit (GC)", gross_currency, "Gross Currency")
    net_debit, net_credit = nc("Net Debit (NC)"), nc("Net Credit (NC)")
    fees = {column: nc(column) for column in FEE_COLUMNS}
    payment_fees = nc(PAYMENT_FEES)
    rate = cells.decimal("Exchange Rate")
    in_net = fee = stated = mismatch = None
    gross, net = _signed(gross_credit, gross_debit), _signed(net_credit, net_debit)
    if gross is not None and net is not None and net_currency is not None:
        components = Money(sum(m.minor for m in fees.values() if m is not None), net_currency)
        stated = reported_fee(components, payment_fees)
        in_net, fee, mismatch = _tie_out(gross, net, rate, stated)
    return ReportRow(
        line=cells.line,
        type=type_text,
        kind=_KIND_BY_TYPE.get(type_text.replace(" ", "").casefold(), "other"),
        batch_number=cells.integer("Batch Number"),
        company_account=cells.text("Company Account"),
        merchant_account=merchant,
        psp_reference=cells.text("Psp Reference"),
        modification_reference=cells.text("Modification Reference"),
        merchant_reference=cells.text("Merchant Reference"),
        modification_merchant_reference=cells.text("Modification Merchant Reference"),
        payment_method=cells.text("Payment Method"),
        creation_date=cells.date("Creation Date"),
        timezone=cells.text("TimeZone"),
        gross_currency=gross_currency,
        gross_debit=gross_debit,
        gross_credit=gross_credit,
        exchange_rate=rate,
        net_currency=net_currency,
        net_debit=net_debit,
        net_credit=net_credit,
        commission=fees["Commission (NC)"],
        markup=fees["Markup (NC)"],
        scheme_fees=fees["Scheme Fees (NC)"],
        interchange=fees["Interchange (NC)"],
        dcc_markup=fees["DCC Markup (NC)"],
        payment_fees=payment_fees,
        gross_in_net_currency=in_net,
        fee=fee,
        reported_fee=stated,
        fee_mismatch=mismatch,
        columns=cells.by_name(),
    )


def _index(header: list[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        key = _norm(name)
        if not key:
            continue
        if key in index:
            raise TranslationError(f"settlement report header names {name.strip()!r} twice")
        index[key] = position
    missing = [c for c in REQUIRED_COLUMNS if _norm(c) not in index]
    if missing:
        raise TranslationError(f"not a settlement details report: the header has no {', '.join(map(repr, missing))}")
    return index


def _lines(source: bytes | str | Iterable[str]) -> Iterable[str]:
    if isinstance(source, bytes | bytearray):
        try:
            source = bytes(source).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TranslationError(f"the settlement report is not UTF-8: {exc}") from exc
    if isinstance(source, str):
        return io.StringIO(source.removeprefix("\ufeff"), newline="")
    return source


def read_report(source: bytes | str | Iterable[str]) -> Iterator[ReportRow]:
    """A settlement details report → its rows, lazily, in file order.

    ``source`` is the whole file (bytes, UTF-8 with or without BOM, or text) or its lines (e.g. a streamed
    download's lines; a quoted cell spanning lines needs the line endings kept). Blank lines are skipped.
    Raises TranslationError, naming the line and column, for a missing required column, a duplicated
    column, a non-blank cell beyond the header, or a cell that cannot be read (an amount that would lose
    precision, a date that is not ``YYYY-MM-DD HH:MM:SS``, …).
    """
    reader = csv.reader(_lines(source))
    header = next(reader, None)
    if header is None:
        raise TranslationError("the settlement report is empty (no header line)")
    header = [name.removeprefix("\ufeff") for name in header]
    index = _index(header)
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        extra = [cell for cell in record[len(header) :] if cell.strip()]
        if extra:
            raise TranslationError(
                f"settlement report line {reader.line_num} has {len(record)} cells for {len(header)} columns"
            )
        yield _row(_Cells(index, header, record, reader.line_num))
