"""A Mollie settlement and what it settled → :class:`Payout`. Pure: the caller fetches, this only reads.

Inputs (PROCESSORS.md §3.3): the settlement as ``GET /v2/settlements/{id}`` returns it (the list endpoint
gives empty ``periods``), and every page of its ``/payments``, ``/refunds`` and ``/chargebacks``. The
payout mirrors ``stripe/translate_payouts.py``, signed as the money moved the balance:

- a ``charge`` item per payment (+ its settlement amount), a ``refund`` item per refund and a
  ``dispute_debit`` item per chargeback (− theirs; either sign in the source, §6), each naming its Mollie
  object, whose Thred record the payout lists. A refund listed as ``failed`` or ``canceled`` is an
  ``adjustment``: no refund payment stands for it in the books (as Stripe's ``item_kind`` does);
- a ``fee`` item per cost line of ``periods`` (−``amountGross``, VAT included: costs are positive numbers
  to subtract, §4 fact 19). They have 4 decimals, so the *total* of all cost lines is rounded half-even to
  the minor unit once, and shared out over the lines by largest remainder (each line is within one minor
  unit of its exact value, and the lines add up to the rounded total). Rounding each line on its own does
  not tie out: Mollie's own example settles 86.10 − 43.20 − (2.5410 + 0.6050) = 39.75, where the rounded
  lines would give 2.54 + 0.60 and a total one cent short;
- or, when the caller read the balance transactions (``fees``: what Mollie deducted from each payment as
  its money came in, in whole minor units), each ``charge`` item carries its payment's fee, and **one**
  ``fee`` item carries the remainder: the total costs (rounded half-even once, as above) less the sum of
  those fees. The remainder holds the refund and chargeback costs, the costs of a payment whose
  deduction is not known, and the rounding of each deduction to the cent (Mollie's docs: the differences
  "will be compensated when the invoice is generated"); it may be negative. It stays in this settlement:
  nothing is carried to the next one, so each payout ties out on its own, and the payments' fees plus the
  remainder are the settlement's costs to the minor unit (metadata ``costs_cents``,
  ``payment_fees_cents``, ``costs_remainder_cents``);
- ``amount`` (what reached the bank) is the settlement's ``amount``; its bank ``reference`` the payout's.

Nothing is invented to make the items add up: a settlement that also carries something not listed here
(captures, a rolling reserve, an invoice compensation) will not tie out, and the payout record says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import MAX_PREC, ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, Rounded
from typing import Any

from thred_bridge.domain.money import Money, MoneyError, iso_exponent
from thred_bridge.domain.movements import Payout, PayoutItem, PayoutItemKind, PayoutStatus
from thred_bridge.errors import TranslationError
from thred_bridge.processors.mollie.fields import (
    PROCESSOR,
    id_of,
    money_of,
    settled_of,
    text_of,
    time_of,
)
from thred_bridge.processors.mollie.money import COST_DECIMALS, decimals_of, exact_amount
from thred_bridge.processors.mollie.translate_refunds import chargeback_reason, settled_amount

# Sums and decimal-point shifts of cost figures must never round.
_EXACT = Context(prec=MAX_PREC, traps=[InvalidOperation, Inexact, Rounded])

SETTLEMENT_STATUSES: dict[str, PayoutStatus] = {
    "open": "pending",  # still collecting: the "open" / "next" settlement
    "pending": "pending",
    "processing-at-bank": "in_transit",  # missing from mollie-api-python's constants (§6)
    "paidout": "paid",
    "failed": "failed",
}
"""Mollie's settlement statuses (PROCESSORS.md §3.3) → the bridge's payout statuses."""


@dataclass(frozen=True, slots=True)
class CostLine:
    """One ``costs`` entry of a settlement period, its amounts exact (4 decimals)."""

    period: str
    """``YYYY-MM``."""
    description: str
    method: str | None
    count: int | None
    gross: Decimal
    net: Decimal | None
    vat: Decimal | None
    currency: str


def _exact(amount: object, what: str) -> tuple[Decimal, str] | None:
    """A cost figure, exact; refused with more than ``COST_DECIMALS`` (4) decimals, which Mollie never writes."""
    if amount is None:
        return None
    try:
        value, currency = exact_amount(amount, what)
    except MoneyError as exc:
        raise TranslationError(str(exc)) from exc
    if decimals_of(value) > COST_DECIMALS:
        raise TranslationError(f"{what}: {value} {currency} has more than {COST_DECIMALS} decimals")
    return value, currency


def _cost_line(cost: Mapping[str, Any], period: str, what: str) -> CostLine:
    net = _exact(cost.get("amountNet"), f"{what} amountNet")
    vat = _exact(cost.get("amountVat"), f"{what} amountVat")
    gross = _exact(cost.get("amountGross"), f"{what} amountGross")
    if gross is None:  # not seen in practice; net + VAT is the same figure
        if net is None:
            raise TranslationError(f"{what} has neither amountGross nor amountNet")
        gross = (_EXACT.add(net[0], vat[0] if vat is not None else Decimal(0)), net[1])
    currencies = {x[1] for x in (net, vat, gross) if x is not None}
    if len(currencies) != 1:
        raise TranslationError(f"{what} mixes currencies {sorted(currencies)}")
    count = cost.get("count")
    return CostLine(
        period=period,
        description=text_of(cost.get("description")) or "Mollie costs",
        method=text_of(cost.get("method")),
        count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        gross=gross[0],
        net=net[0] if net is not None else None,
        vat=vat[0] if vat is not None else None,
        currency=gross[1],
    )


def _periods(settlement: Mapping[str, Any], what: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    periods = settlement.get("periods")
    if periods is None or periods == []:  # an empty JSON object can come back as an empty array
        return
    if not isinstance(periods, Mapping):
        raise TranslationError(f"{what}: periods is not an object")
    for year in sorted(periods, key=str):
        months = periods[year]
        if not isinstance(months, Mapping) or not str(year).isdigit():
            raise TranslationError(f"{what}: periods[{year!r}] is not a year of months")
        for month in sorted(months, key=lambda m: int(m) if str(m).isdigit() else 0):
            if not str(month).isdigit() or not 1 <= int(month) <= 12 or not isinstance(months[month], Mapping):
                raise TranslationError(f"{what}: periods[{year!r}][{month!r}] is not a month")
            yield f"{int(year):04d}-{int(month):02d}", months[month]


def cost_lines(settlement: Mapping[str, Any]) -> list[CostLine]:
    """Every ``periods.<year>.<month>.costs`` entry of the settlement, oldest month first, exact."""
    what = f"Mollie settlement {settlement.get('id')}"
    out: list[CostLine] = []
    for period, data in _periods(settlement, what):
        costs = data.get("costs") or []
        if not isinstance(costs, list) or not all(isinstance(c, Mapping) for c in costs):
            raise TranslationError(f"{what}: costs of {period} are not a list of objects")
        out.extend(_cost_line(c, period, f"{what} costs {period} #{i + 1}") for i, c in enumerate(costs))
    return out


def _sum(values: Sequence[Decimal]) -> Decimal:
    total = Decimal(0)
    for value in values:
        total = _EXACT.add(total, value)
    return total


def share_out(exact: Sequence[Decimal], currency: str) -> list[Money]:
    """Exact major-unit values → Money that add up to their sum rounded half-even, each within one minor
    unit of its own value (largest-remainder rounding; ties go to the earlier line)."""
    scale = iso_exponent(currency)
    scaled = [value.scaleb(scale, _EXACT) for value in exact]
    total = int(_sum(scaled).to_integral_value(rounding=ROUND_HALF_EVEN))
    rounded = [int(s.to_integral_value(rounding=ROUND_HALF_EVEN)) for s in scaled]
    short = total - sum(rounded)
    step = 1 if short > 0 else -1
    order = sorted(range(len(scaled)), key=lambda i: (-(scaled[i] - rounded[i]) * step, i))
    for i in order[: abs(short)]:
        rounded[i] += step
    return [Money(minor, currency) for minor in rounded]


def _describe(line: CostLine) -> str:
    count = f" ×{line.count}" if line.count is not None else ""
    parts = [f"gross {line.gross}"]
    if line.net is not None:
        parts.append(f"net {line.net}")
    if line.vat is not None:
        parts.append(f"VAT {line.vat}")
    return f"Mollie costs {line.period}: {line.description}{count} ({', '.join(parts)} {line.currency})"


def fee_items(settlement_id: str, lines: Sequence[CostLine], currency: str) -> list[PayoutItem]:
    """A ``fee`` item per cost line (−cost), rounded so that they add up to the rounded total of the costs."""
    for line in lines:
        if line.currency != currency:
            raise TranslationError(f"Mollie settlement {settlement_id}: costs in {line.currency}, payout in {currency}")
    shares = share_out([line.gross for line in lines], currency)
    zero = Money.zero(currency)
    return [
        PayoutItem("fee", f"{settlement_id}:costs:{line.period}:{i + 1}", -share, zero, _describe(line))
        for i, (line, share) in enumerate(zip(lines, shares, strict=True))
    ]


def _check_settlement(obj: Mapping[str, Any], settlement_id: str, what: str) -> None:
    listed = obj.get("settlementId")
    if listed is not None and listed != settlement_id:
        raise TranslationError(f"{what} was settled in {listed}, not in {settlement_id}")


@dataclass(frozen=True, slots=True)
class CostSplit:
    """A settlement's costs shared out between the fees of its payments and the payout's own fee."""

    total: Money
    """Σ ``amountGross`` of every cost line, rounded half-even once: the costs as the settlement charges them."""
    per_payment: Money
    """Σ the fees of the payments it settled (each Mollie's rounded deduction, as booked on the payment)."""
    remainder: Money
    """``total − per_payment``: the payout's own fee; negative when the deductions came to more."""


def split_costs(lines: Sequence[CostLine], payment_fees: Sequence[Money], currency: str) -> CostSplit:
    """Share a settlement's 4-decimal costs out exactly: the payments keep their own (whole minor unit)
    fees and the payout takes whatever is left, so ``per_payment + remainder == total`` to the minor unit."""
    for line in lines:
        if line.currency != currency:
            raise TranslationError(f"Mollie costs in {line.currency}, payout in {currency}")
    scaled = _sum([line.gross for line in lines]).scaleb(iso_exponent(currency), _EXACT)
    total = Money(int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN)), currency)
    per_payment = Money.zero(currency)
    for fee in payment_fees:
        if fee.currency != currency:
            raise TranslationError(f"a Mollie payment fee in {fee.currency}, payout in {currency}")
        per_payment = per_payment + fee
    return CostSplit(total, per_payment, total - per_payment)


def remainder_items(settlement_id: str, split: CostSplit) -> list[PayoutItem]:
    """The payout's own fee item for what the payments' fees do not cover (none when they cover it all)."""
    if split.remainder.minor == 0:
        return []
    description = (
        f"Mollie costs not deducted per payment: {split.total.format()} of costs in the settlement less "
        f"{split.per_payment.format()} deducted from its payments (refund and chargeback costs, and the "
        "rounding of each deduction to the cent)"
    )
    zero = Money.zero(split.total.currency)
    return [PayoutItem("fee", f"{settlement_id}:costs:remainder", -split.remainder, zero, description)]


def _object_items(
    settlement_id: str,
    currency: str,
    objects: Sequence[Mapping[str, Any]],
    *,
    prefix: str,
    noun: str,
    kind: PayoutItemKind,
    fees: Mapping[str, Money] | None = None,
) -> Iterator[PayoutItem]:
    zero = Money.zero(currency)
    for obj in objects:
        object_id = id_of(obj.get("id"), prefix, f"a {noun} of Mollie settlement {settlement_id}")
        what = f"Mollie {noun} {object_id}"
        _check_settlement(obj, settlement_id, what)
        moved = settled_amount(obj, currency, what)
        if kind == "charge":
            signed = settled_of(obj.get("settlementAmount"), f"{what} settlementAmount")
            if (signed or money_of(obj.get("amount"), f"{what} amount")).minor < 0:
                raise TranslationError(f"{what} settled as a negative amount")
            fee = (fees or {}).get(object_id, zero)
            yield PayoutItem("charge", object_id, moved, fee, text_of(obj.get("description")) or "")
            continue
        item_kind: PayoutItemKind = kind
        if kind == "refund" and obj.get("status") in ("failed", "canceled"):
            item_kind = "adjustment"
        description = text_of(obj.get("description")) or chargeback_reason(obj) or ""
        yield PayoutItem(item_kind, object_id, -moved, zero, description)


def _metadata(
    settlement: Mapping[str, Any], settlement_id: str, lines: Sequence[CostLine], split: CostSplit | None
) -> dict[str, str]:
    metadata = {"mollie_settlement_id": settlement_id}
    for ours, theirs in (
        ("mollie_status", "status"),
        ("mollie_invoice_id", "invoiceId"),
        ("mollie_balance_id", "balanceId"),
    ):
        value = text_of(settlement.get(theirs))
        if value:
            metadata[ours] = value
    if lines:
        metadata["costs_gross_exact"] = str(_sum([line.gross for line in lines]))
    if split is not None:  # without it, the fees are the cost lines, as the settlement lists them
        metadata.update(
            fee_source="balance transactions",
            costs_cents=str(split.total.minor),
            payment_fees_cents=str(split.per_payment.minor),
            costs_remainder_cents=str(split.remainder.minor),
        )
    return metadata


def to_payout(
    settlement: Mapping[str, Any],
    payments: Sequence[Mapping[str, Any]],
    refunds: Sequence[Mapping[str, Any]],
    chargebacks: Sequence[Mapping[str, Any]],
    *,
    account: str | None = None,
    fees: Mapping[str, Money] | None = None,
) -> Payout:
    """A Mollie settlement and its payments, refunds and chargebacks → :class:`Payout` (module docstring).

    ``fees`` (payment id → the fee Mollie deducted, read from the balance transactions) makes each charge
    item carry its payment's fee and the payout one fee item for the rest of the costs (:func:`split_costs`);
    a payment missing from it counts with fee 0, its cost in the remainder. Without ``fees`` the costs are
    fee items per cost line, as the settlement lists them.

    Raises TranslationError for a settlement that cannot be read, an object listed twice or settled
    elsewhere, and an amount in another currency than the settlement's.
    """
    resource = settlement.get("resource", "settlement")
    if resource != "settlement":
        raise TranslationError(f"not a Mollie settlement: resource {resource!r}, id {settlement.get('id')!r}"[:200])
    settlement_id = id_of(settlement.get("id"), "stl", "Mollie settlement id")
    what = f"Mollie settlement {settlement_id}"
    amount = money_of(settlement.get("amount"), f"{what} amount")
    status = settlement.get("status")
    if not isinstance(status, str) or status not in SETTLEMENT_STATUSES:
        raise TranslationError(f"{what} has an unknown status {status!r}")
    currency = amount.currency
    lines = cost_lines(settlement)
    charges = list(
        _object_items(settlement_id, currency, payments, prefix="tr", noun="payment", kind="charge", fees=fees)
    )
    split = None if fees is None else split_costs(lines, [item.fee for item in charges], currency)
    items = [
        *charges,
        *_object_items(settlement_id, currency, refunds, prefix="re", noun="refund", kind="refund"),
        *_object_items(settlement_id, currency, chargebacks, prefix="chb", noun="chargeback", kind="dispute_debit"),
        *(fee_items(settlement_id, lines, currency) if split is None else remainder_items(settlement_id, split)),
    ]
    seen: set[str] = set()
    for item in items:
        if item.object_id in seen:
            raise TranslationError(f"{what} lists {item.object_id} twice")
        seen.add(item.object_id)
    when = settlement.get("settledAt") or settlement.get("createdAt")
    return Payout(
        processor=PROCESSOR,
        object_id=settlement_id,
        amount=amount,
        status=SETTLEMENT_STATUSES[status],
        arrives_at=time_of(when, f"{what} settledAt"),
        items=tuple(items),
        itemised=True,
        account=account,
        reference=text_of(settlement.get("reference")),
        metadata=_metadata(settlement, settlement_id, lines, split),
    )
