"""One settlement batch of a settlement details report → what it paid out and why. Pure.

A batch's rows become lines in the batch's net (settlement) currency, signed as they moved the merchant's
balance, each with the fee Adyen kept on it:

- ``Settled`` → a payment, by ``Psp Reference`` (partial captures of one payment add up);
- ``Refunded`` → a refund, by ``Modification Reference`` (the refund's pspReference);
- ``Chargeback`` / ``SecondChargeback`` → a dispute debit, ``ChargebackReversed`` → a dispute credit, by the
  dispute's pspReference (``Modification Reference``) and stage (``references``);
- ``Fee``, ``MiscCosts``, ``PaymentCost``, ``InvoiceDeduction`` → fees (their net, no gross);
- ``DepositCorrection``, ``Balancetransfer``, ``RefundedReversed`` and any other type → adjustments;
- ``MerchantPayout`` → the amount paid to the bank (its Net Debit).

Then gross − refunds − fees − adjustments + variance == paid out, to the cent, where gross counts payments
and dispute credits and refunds count refunds and dispute debits (as a Thred payout does). ``variance`` is
zero when the batch's rows account for the whole payout; SmashPig's test fixtures, for one, do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Literal, TypeVar

from thred_bridge.domain.money import Money
from thred_bridge.errors import TranslationError
from thred_bridge.processors.adyen.references import DisputeStage, dispute_object_id
from thred_bridge.processors.adyen.report import ReportRow, RowKind

LineKind = Literal["payment", "refund", "dispute_debit", "dispute_credit", "fee", "adjustment"]

_T = TypeVar("_T", str, int)

_FEE_KINDS: frozenset[RowKind] = frozenset({"fee", "misc_costs", "payment_cost", "invoice_deduction"})


@dataclass(frozen=True, slots=True)
class BatchLine:
    """What one payment, refund, dispute stage, fee or adjustment did to the batch, in its currency.

    ``amount`` is signed as it moved the balance (a payment +, a refund −), the gross in the net currency
    for payment rows and the net for fee and adjustment rows; ``fee`` is what Adyen kept on it (+).
    ``amount − fee`` is its contribution to the payout. ``lines`` are the report rows behind it.

    Held as integers, without a text for payments: a batch of 50,000 payments keeps 50,000 lines while its
    report is read, and two Money objects and a description each were a third of that.
    """

    kind: LineKind
    object_id: str
    amount_minor: int
    fee_minor: int
    currency: str
    text: str | None  # a fee or adjustment row's description; None for payments, refunds and disputes
    lines: tuple[int, ...]

    @classmethod
    def of(
        cls, kind: LineKind, object_id: str, amount: Money, fee: Money, text: str | None, lines: tuple[int, ...]
    ) -> BatchLine:
        if fee.currency != amount.currency:
            raise TranslationError(f"line {lines[0]}: a fee in {fee.currency} on an amount in {amount.currency}")
        return cls(kind, object_id, amount.minor, fee.minor, amount.currency, text, lines)

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def fee(self) -> Money:
        return Money(self.fee_minor, self.currency)

    @property
    def net(self) -> Money:
        return Money(self.amount_minor - self.fee_minor, self.currency)

    @property
    def description(self) -> str:
        """A fee or adjustment row's text; empty for payments, refunds and disputes (no Thred field reads it)."""
        return self.text or ""


@dataclass(frozen=True, slots=True)
class FeeMismatch:
    """A row whose gross − net is not the fee its fee columns state (kept as data, never an error)."""

    line: int
    type: str
    psp_reference: str | None
    implied_fee: Money
    reported_fee: Money

    @property
    def difference(self) -> Money:
        return self.implied_fee - self.reported_fee


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """A settlement batch: its payments, refunds, disputes, fees, adjustments and payout, and the variance."""

    batch_number: int
    merchant_account: str
    currency: str
    payments: Mapping[str, BatchLine]
    refunds: Mapping[str, BatchLine]
    disputes: tuple[BatchLine, ...]
    fees: tuple[BatchLine, ...]
    adjustments: tuple[BatchLine, ...]
    paid_out: Money
    payout_reference: str | None
    paid_at: datetime | None
    payout_lines: tuple[int, ...]
    mismatches: tuple[FeeMismatch, ...]

    @property
    def lines(self) -> tuple[BatchLine, ...]:
        """Every line, payments first, then refunds, disputes, fees and adjustments."""
        return (*self.payments.values(), *self.refunds.values(), *self.disputes, *self.fees, *self.adjustments)

    def _total(self, values: Iterable[Money]) -> Money:
        return Money(sum(m.minor for m in values), self.currency)

    @property
    def gross(self) -> Money:
        """Payments and dispute credits, gross, in the batch currency."""
        credits = (d.amount for d in self.disputes if d.kind == "dispute_credit")
        return self._total([*(p.amount for p in self.payments.values()), *credits])

    @property
    def refunds_total(self) -> Money:
        """Refunds and dispute debits, gross, as a positive amount."""
        debits = (d.amount for d in self.disputes if d.kind == "dispute_debit")
        return -self._total([*(r.amount for r in self.refunds.values()), *debits])

    @property
    def fees_total(self) -> Money:
        """Fees kept on payments, refunds and disputes, plus the fee rows (a credited fee row lowers it)."""
        return self._total([*(line.fee for line in self.lines), *(-f.amount for f in self.fees)])

    @property
    def adjustments_total(self) -> Money:
        """Other money out of the balance (positive) or into it (negative)."""
        return -self._total(a.amount for a in self.adjustments)

    @property
    def expected_paid_out(self) -> Money:
        """gross − refunds − fees − adjustments: the sum of every line's net."""
        return self.gross - self.refunds_total - self.fees_total - self.adjustments_total

    @property
    def variance(self) -> Money:
        """paid out − expected: what the batch's rows do not explain (a balance carried in or out)."""
        return self.paid_out - self.expected_paid_out

    @property
    def ties_out(self) -> bool:
        return self.variance.minor == 0 and not self.mismatches


class _Lines:
    """Lines keyed by object id (and kind, for dispute stages), merged when one object has several rows
    of one kind (partial captures, or a dispute's debit and its reversal, which share the dispute's id)."""

    def __init__(self) -> None:
        self.by_key: dict[str, BatchLine] = {}

    def add(self, line: BatchLine, key: str) -> None:
        held = self.by_key.get(key)
        if held is None:
            self.by_key[key] = line
            return
        amount, fee = held.amount_minor + line.amount_minor, held.fee_minor + line.fee_minor
        self.by_key[key] = BatchLine(
            held.kind, held.object_id, amount, fee, held.currency, held.text, held.lines + line.lines
        )

    def view(self) -> Mapping[str, BatchLine]:
        return MappingProxyType(self.by_key)


def _money_line(row: ReportRow, kind: LineKind, object_id: str, net: Money) -> BatchLine:
    """A payment, refund or dispute row: the gross in the net currency and the implied fee (none without gross)."""
    amount = row.gross_in_net_currency
    fee = row.fee
    if amount is None or fee is None:
        amount, fee = net, Money.zero(net.currency)
    return BatchLine.of(kind, object_id, amount, fee, None, (row.line,))


def _other_line(row: ReportRow, kind: LineKind, net: Money, batch: int) -> BatchLine:
    text = row.modification_reference or row.psp_reference or ""
    description = f"{row.type}: {text}" if text else row.type
    return BatchLine.of(kind, f"batch_{batch}_line_{row.line}", net, Money.zero(net.currency), description, (row.line,))


def _classify(row: ReportRow, net: Money, batch: int) -> BatchLine:
    """A non-payout row → its line."""
    kind, mod = row.kind, row.modification_reference
    if kind == "settled":
        if not row.psp_reference:
            raise TranslationError(f"settlement report line {row.line}: a Settled row without a Psp Reference")
        return _money_line(row, "payment", row.psp_reference, net)
    if kind == "refunded" and mod:
        return _money_line(row, "refund", mod, net)
    if kind in ("chargeback", "second_chargeback") and mod:
        stage: DisputeStage = "chargeback" if kind == "chargeback" else "second_chargeback"
        return _money_line(row, "dispute_debit", dispute_object_id(mod, stage), net)
    if kind == "chargeback_reversed" and mod:
        return _money_line(row, "dispute_credit", dispute_object_id(mod, "chargeback"), net)
    if kind in _FEE_KINDS:
        return _other_line(row, "fee", net, batch)
    # DepositCorrection, Balancetransfer, RefundedReversed, other types, and a refund or dispute row that
    # names no modification (it cannot be matched to a booked record): the money still counts.
    return _other_line(row, "adjustment", net, batch)


class BatchBuilder:
    """A batch summed row by row, so a report of any size is summarised without holding its rows: what is
    kept is one line per payment, refund, dispute stage, fee or adjustment row, and the totals.

    ``add`` raises TranslationError as soon as the rows stop being one batch (another batch number,
    merchant account or net currency), when ``merchant_account`` is given and differs, or for a Settled row
    without a Psp Reference; rows with no net amount (nothing moved) are skipped."""

    def __init__(self, *, merchant_account: str | None = None) -> None:
        self._expected_account = merchant_account
        self._batch: int | None = None
        self._account: str | None = None
        self._currency: str | None = None
        self._payments, self._refunds, self._disputes = _Lines(), _Lines(), _Lines()
        self._fees: list[BatchLine] = []
        self._adjustments: list[BatchLine] = []
        self._paid_out: Money | None = None
        self._payout_lines: list[int] = []
        self._payout_reference: str | None = None
        self._paid_at: datetime | None = None
        self._mismatches: list[FeeMismatch] = []

    def add(self, row: ReportRow) -> None:
        net = row.net
        if net is None:
            return
        if row.batch_number is None:
            raise TranslationError(f"settlement report line {row.line} has no Batch Number")
        batch = self._batch = _same(self._batch, row.batch_number, "batch numbers")
        self._account = _same(self._account, row.merchant_account, "merchant accounts")
        if row.net_currency:
            self._currency = _same(self._currency, row.net_currency, "net currencies")
        if self._expected_account is not None and row.merchant_account != self._expected_account:
            raise TranslationError(
                f"settlement batch {batch} is for merchant account {row.merchant_account!r}, "
                f"not {self._expected_account!r}"
            )
        if row.fee_mismatch is not None and row.fee is not None and row.reported_fee is not None:
            self._mismatches.append(FeeMismatch(row.line, row.type, row.psp_reference, row.fee, row.reported_fee))
        if row.kind == "merchant_payout":
            self._paid_out = -net if self._paid_out is None else self._paid_out - net
            self._payout_lines.append(row.line)
            self._payout_reference = row.modification_reference or self._payout_reference
            self._paid_at = row.created_at or self._paid_at
            return
        line = _classify(row, net, batch)
        if line.kind == "fee":
            self._fees.append(line)
        elif line.kind == "adjustment":
            self._adjustments.append(line)
        elif line.kind == "payment":
            self._payments.add(line, line.object_id)
        elif line.kind == "refund":
            self._refunds.add(line, line.object_id)
        else:
            self._disputes.add(line, f"{line.kind} {line.object_id}")

    def summary(self) -> BatchSummary:
        """The batch so far. Raises TranslationError when no row had an amount."""
        if self._batch is None or self._account is None or self._currency is None:
            if self._batch is not None and self._currency is None:
                raise TranslationError("the rows are not one settlement batch: net currencies none")
            raise TranslationError("the settlement batch has no rows with an amount")
        return BatchSummary(
            batch_number=self._batch,
            merchant_account=self._account,
            currency=self._currency,
            payments=self._payments.view(),
            refunds=self._refunds.view(),
            disputes=tuple(self._disputes.by_key.values()),
            fees=tuple(self._fees),
            adjustments=tuple(self._adjustments),
            paid_out=Money.zero(self._currency) if self._paid_out is None else self._paid_out,
            payout_reference=self._payout_reference,
            paid_at=self._paid_at,
            payout_lines=tuple(self._payout_lines),
            mismatches=tuple(self._mismatches),
        )


def _same(held: _T | None, value: _T, what: str) -> _T:
    if held is not None and value != held:
        shown = ", ".join(map(str, sorted([held, value])))
        raise TranslationError(f"the rows are not one settlement batch: {what} {shown}")
    return value


def summarise_batch(rows: Iterable[ReportRow], *, merchant_account: str | None = None) -> BatchSummary:
    """All rows of one batch → :class:`BatchSummary` (a :class:`BatchBuilder` fed every row).

    Raises TranslationError when the rows are not one batch (several batch numbers, merchant accounts or
    net currencies, or none), when ``merchant_account`` is given and differs, or for a Settled row without
    a Psp Reference. Rows with no net amount (nothing moved) are skipped; fee mismatches are collected.
    """
    builder = BatchBuilder(merchant_account=merchant_account)
    for row in rows:
        builder.add(row)
    return builder.summary()


def split_batches(rows: Iterable[ReportRow]) -> dict[tuple[str, int | None], list[ReportRow]]:
    """Rows grouped by (merchant account, batch number), in file order: a report per payable batch normally
    holds one, but a merged or company-level file may hold several."""
    groups: dict[tuple[str, int | None], list[ReportRow]] = {}
    for row in rows:
        groups.setdefault((row.merchant_account, row.batch_number), []).append(row)
    return groups
