"""Money as integer ISO 4217 minor units, and exact conversions to and from decimal text.

Each processor writes amounts its own way (Stripe: integers with its own exponent table;
Adyen: integers with another; Mollie: decimal strings). Every conversion lands here, in
``Money(minor, currency)`` whose exponent is ISO 4217's. Nothing here touches a float.
Shared with the sandbox, so it stays standard-library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import MAX_PREC, Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded
from functools import lru_cache

# ISO 4217 minor-unit exponents that are not 2 (current list; everything else active is 2).
_ISO_EXPONENT_NOT_2: dict[str, int] = {
    # zero decimals
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0, "XAU": 0, "XAG": 0, "XPT": 0, "XPD": 0, "XDR": 0, "XXX": 0,
    # three decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four decimals
    "CLF": 4, "UYW": 4,
}  # fmt: skip


# Shifting the decimal point must never round: the default context keeps only 28 digits.
_EXACT = Context(prec=MAX_PREC, traps=[InvalidOperation, Overflow, Inexact, Rounded])


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def iso_exponent(currency: str) -> int:
    """ISO 4217 minor-unit exponent of ``currency`` (upper or lower case)."""
    code = normalise_currency(currency)
    return _ISO_EXPONENT_NOT_2.get(code, 2)


@lru_cache(maxsize=1024)
def normalise_currency(currency: str) -> str:
    """``currency`` as an upper-case three-letter code; MoneyError when it is not one. Cached: every Money
    made checks its currency, and a report of 50,000 rows makes hundreds of thousands."""
    code = currency.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise MoneyError(f"not an ISO 4217 currency code: {currency!r}")
    return code


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An exact amount: ``minor`` units of ``currency`` at its ISO 4217 exponent."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise MoneyError(f"minor units must be an int, got {type(self.minor).__name__}")
        code = normalise_currency(self.currency)
        if code != self.currency:
            object.__setattr__(self, "currency", code)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} and {other.currency}")

    @property
    def exponent(self) -> int:
        return iso_exponent(self.currency)

    def to_decimal(self) -> Decimal:
        """The amount in major units, exactly (``Money(1050, 'EUR')`` → ``Decimal('10.50')``)."""
        return Decimal(self.minor).scaleb(-self.exponent, _EXACT)

    def format(self) -> str:
        """``10.50 EUR``, ``1000 JPY``, ``1.250 KWD``."""
        return f"{self.to_decimal():,.{self.exponent}f} {self.currency}"

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)


def to_minor(amount: Decimal | str | int, exponent: int) -> int:
    """``amount`` major units as an int at ``exponent``; refuses anything that would round."""
    if isinstance(amount, float | bool):
        raise MoneyError(f"not a decimal amount: {amount!r} (pass a Decimal or decimal text, never a float)")
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"not a decimal amount: {amount!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"not a finite amount: {amount!r}")
    try:
        scaled = value.scaleb(exponent, _EXACT)
    except ArithmeticError as exc:
        raise MoneyError(f"{amount} is out of range") from exc
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount} has more than {exponent} decimals")
    return int(scaled)


def parse_decimal(amount: Decimal | str, currency: str) -> Money:
    """Decimal text in major units (``"10.00"``, ``"-3.5000"``) → Money at ISO exponent, exactly."""
    code = normalise_currency(currency)
    return Money(to_minor(amount, iso_exponent(code)), code)


def rescale(minor: int, from_exponent: int, currency: str) -> Money:
    """An integer written at a processor's exponent → Money at the ISO exponent, exactly.

    Refuses a value that would lose precision (e.g. Stripe ISK 150 = 1.50 ISK, which has no ISO minor unit).
    """
    code = normalise_currency(currency)
    to_exponent = iso_exponent(code)
    if from_exponent == to_exponent:
        return Money(minor, code)
    if from_exponent < to_exponent:
        return Money(minor * 10 ** (to_exponent - from_exponent), code)
    factor = 10 ** (from_exponent - to_exponent)
    if minor % factor:
        raise MoneyError(f"{minor} at exponent {from_exponent} is not a whole {code} minor unit")
    return Money(minor // factor, code)


def to_exponent(money: Money, exponent: int) -> int:
    """Money → an integer at a processor's exponent (the inverse of :func:`rescale`)."""
    iso = money.exponent
    if exponent >= iso:
        return int(money.minor * 10 ** (exponent - iso))
    factor = 10 ** (iso - exponent)
    if money.minor % factor:
        raise MoneyError(f"{money.format()} cannot be written with {exponent} decimals")
    return int(money.minor // factor)
