"""Mollie amounts (``{"currency": "EUR", "value": "10.00"}``) ↔ :class:`Money` at the ISO 4217 exponent.

Mollie writes every amount as a decimal **string** in major units: two decimals for EUR, none for JPY,
and four in a settlement's ``periods`` (``"86.1000"``, ``"2.5410"``; PROCESSORS.md §3.3, §4 fact 10).
Negative values are normal (refund and chargeback ``settlementAmount``, refund revenue lines).

Two ways in, both through :class:`~decimal.Decimal`, never a float:

- :func:`parse_amount` is exact. Trailing zeros are fine (``"86.1000"`` EUR is 8610 cents), but a value
  with more significant decimals than the currency has minor units (``"2.5410"`` EUR) is refused with
  :class:`InexactAmountError`: rounding it would make money appear or vanish.
- :func:`fee_of_deductions` reads a balance transaction's ``deductions`` (negative, already rounded by
  Mollie to the minor unit) as a positive fee, exactly like :func:`parse_amount`.
- :func:`parse_cost` is for the 4-decimal *cost* figures of a settlement period only, and rounds
  **half-even** (banker's rounding: ``"0.6050"`` → 0.60, ``"2.5450"`` → 2.54, ``"2.5350"`` → 2.54) to the
  currency's minor unit. It refuses more than :data:`COST_DECIMALS` decimals. To round a *sum* of costs
  once (which is what ties a settlement out), take :func:`exact_amount` of each, add, and call
  :func:`round_half_even`.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded

from thred_bridge.domain.money import Money, MoneyError, iso_exponent, normalise_currency

COST_DECIMALS = 4
"""The most decimals :func:`parse_cost` accepts (Mollie's settlement ``periods`` use four)."""

MAX_VALUE_CHARS = 32
"""Longest ``value`` text accepted: far beyond any real amount, short enough to parse in constant time."""

_VALUE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# Moving the decimal point of a ≤ 32-digit value by ≤ 4 places is exact at this precision; the traps make
# sure of it.
_EXACT = Context(prec=2 * MAX_VALUE_CHARS, traps=[InvalidOperation, Overflow, Inexact, Rounded])


class InexactAmountError(MoneyError):
    """The amount has more decimals than the currency's minor unit: converting it would lose money."""


def parse_value(value: object, currency: str) -> Decimal:
    """Mollie's ``value`` text (``"10.00"``, ``"-35.07"``, ``"86.1000"``) → the exact Decimal.

    Only ``-?digits[.digits]`` is accepted: no float, int, exponent, sign ``+``, spaces, NaN or Infinity.
    """
    if isinstance(value, float):
        raise MoneyError(f"{currency} value {value!r} is a float: Mollie amounts are decimal strings")
    if not isinstance(value, str):
        raise MoneyError(f"{currency} value {value!r} is a {type(value).__name__}, not a decimal string")
    if len(value) > MAX_VALUE_CHARS:
        raise MoneyError(f"{currency} value is {len(value)} characters long (at most {MAX_VALUE_CHARS})")
    if not _VALUE.fullmatch(value):
        raise MoneyError(f"{currency} value {value!r} is not a decimal string like '10.00'")
    return Decimal(value)


def exact_amount(amount: object, what: str = "amount") -> tuple[Decimal, str]:
    """A Mollie amount object → (exact Decimal in major units, ISO currency code), nothing rounded."""
    if not isinstance(amount, Mapping):
        raise MoneyError(f"{what} is not an amount object: {amount!r}"[:200])
    currency = amount.get("currency")
    if not isinstance(currency, str):
        raise MoneyError(f"{what} has no currency")
    try:
        code = normalise_currency(currency)
        return parse_value(amount.get("value"), code), code
    except MoneyError as exc:
        raise type(exc)(f"{what}: {exc}") from exc


def _scaled(value: Decimal, currency: str) -> Decimal:
    """``value`` major units as (possibly fractional) minor units, exactly."""
    try:
        return value.scaleb(iso_exponent(currency), _EXACT)
    except ArithmeticError as exc:  # pragma: no cover - MAX_VALUE_CHARS keeps every value in range
        raise MoneyError(f"{value} {currency} is out of range") from exc


def to_money(value: Decimal, currency: str) -> Money:
    """An exact Decimal in major units → Money; InexactAmountError if it is not a whole minor unit."""
    code = normalise_currency(currency)
    scaled = _scaled(value, code)
    whole = scaled.to_integral_value()
    if scaled != whole:
        raise InexactAmountError(
            f"{value} {code} has more than {iso_exponent(code)} decimals; converting it would lose money"
        )
    return Money(int(whole), code)


def round_half_even(value: Decimal, currency: str) -> Money:
    """An exact Decimal in major units → Money, rounded half-even to the minor unit (explicitly lossy)."""
    code = normalise_currency(currency)
    return Money(int(_scaled(value, code).to_integral_value(rounding=ROUND_HALF_EVEN)), code)


def parse_amount(amount: object, what: str = "amount") -> Money:
    """A Mollie amount object → Money, exactly (``{"currency": "EUR", "value": "10.00"}`` → 1000 EUR cents).

    Raises MoneyError for anything that is not a Mollie amount, and InexactAmountError (a MoneyError) for
    a value with more significant decimals than the currency's ISO minor unit.
    """
    value, code = exact_amount(amount, what)
    try:
        return to_money(value, code)
    except InexactAmountError as exc:
        raise InexactAmountError(f"{what}: {exc}") from exc


def decimals_of(value: Decimal) -> int:
    """How many decimals ``value`` is written with (``Decimal("2.5410")`` → 4, trailing zeros counted)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def parse_cost(amount: object, what: str = "cost") -> Money:
    """A settlement-period cost figure (``"2.5410"``) → Money rounded **half-even** to the minor unit.

    For cost (fee) lines only, where Mollie itself works in 4 decimals; refuses more than
    :data:`COST_DECIMALS` decimals. Round a sum of costs once with :func:`round_half_even` instead of
    adding rounded lines.
    """
    value, code = exact_amount(amount, what)
    if decimals_of(value) > COST_DECIMALS:
        raise InexactAmountError(f"{what}: {value} {code} has more than {COST_DECIMALS} decimals")
    return round_half_even(value, code)


def fee_of_deductions(amount: object, what: str = "deductions") -> Money:
    """A balance transaction's ``deductions`` (``{"currency": "EUR", "value": "-0.29"}``: what Mollie
    withheld, negative) → the fee as Money (+29 EUR cents), exactly.

    Mollie rounds a deduction to a "real" amount as the money moves (the 4-decimal figures are only in the
    settlement's costs), so a value with more decimals than the currency's minor unit is refused with
    InexactAmountError rather than rounded. A positive value (Mollie gave something back) is a negative fee.
    """
    withheld = parse_amount(amount, what)
    return -withheld


def to_mollie(money: Money) -> dict[str, str]:
    """Money → Mollie's amount object, at the ISO exponent (``Money(1050, "EUR")`` → ``"10.50"``)."""
    return {"currency": money.currency, "value": format(money.to_decimal(), "f")}
