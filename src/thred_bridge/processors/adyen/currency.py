"""Adyen's own minor units, and the settlement report's decimal text: exact conversions to :class:`Money`.

Adyen writes a webhook's ``amount.value`` as an integer in *its* idea of the currency's smallest unit,
which is not always ISO 4217's; the settlement details report writes decimal text in major units
(``"10.00"``, ``".11"``, ``""``). Everything else in the bridge sees ``Money`` at the ISO exponent. Pure:
nothing here does I/O or touches a float.

Sources (PROCESSORS.md §2.6, §4 facts 10 and 16):

- [cc] docs.adyen.com/development-resources/currency-codes: the table of supported codes and their
  decimals, with "CLP 2 (differs from standard)", "CVE 0 (differs from standard)", and the note "For CLP,
  CVE, IDR, and ISK the standard has a different number of decimals than shown in our currency codes
  table … the decimals in the table on this page are leading".
- [fe] Adyen's front-end constants (@adyen/adyen-platform-experience-web ``currency-decimals.js``): the
  zero- and three-decimal lists. They also name BYR and GHC, which are withdrawn and no longer in [cc]'s
  table; they are left out (their ISO exponent is gone too, so a guess could be 100 times off).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from thred_bridge.domain.money import Money, MoneyError, normalise_currency, parse_decimal, rescale, to_exponent

# Zero decimals in Adyen [cc][fe]. CVE and IDR are two-decimal in ISO 4217, so Adyen's 150 CVE is
# 15000 ISO minor units; every other code here is zero-decimal in ISO too.
_ZERO_DECIMAL = frozenset(
    {
        "CVE", "DJF", "GNF", "IDR", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF",
        "XPF",
    }
)  # fmt: skip

# Three decimals in Adyen [cc][fe], as in ISO 4217.
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

# Two decimals in Adyen [cc]. CLP and ISK are zero-decimal in ISO 4217: Adyen's 150 CLP is 1.50 CLP,
# which has no ISO minor unit, so ``from_adyen`` refuses it; 15000 is 150 CLP exactly.
_TWO_DECIMAL = frozenset(
    {
        "AED", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BMD", "BND",
        "BOB", "BRL", "BSD", "BWP", "BYN", "BZD", "CAD", "CHF", "CLP", "CNH", "CNY", "COP", "CRC", "CUP",
        "CZK", "DKK", "DOP", "DZD", "EGP", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD",
        "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "ILS", "INR", "ISK", "JMD", "KES", "KGS", "KHR", "KYD",
        "KZT", "LAK", "LBP", "LKR", "MAD", "MDL", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK",
        "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR",
        "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD",
        "STN", "SVC", "SZL", "THB", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "VEF",
        "WST", "XCD", "YER", "ZAR", "ZMW",
    }
)  # fmt: skip

ADYEN_CURRENCIES: frozenset[str] = _ZERO_DECIMAL | _THREE_DECIMAL | _TWO_DECIMAL
"""Every code in Adyen's currency table [cc]; any other code is refused rather than guessed."""

# The report's decimal text: digits with an optional point and sign; ".11" and "1." occur, exponents
# ("1E+2") and thousands separators do not and are refused.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def adyen_exponent(currency: str) -> int:
    """The exponent Adyen writes ``currency`` at (``JPY`` → 0, ``KWD`` → 3, ``CLP`` → 2, ``CVE`` → 0).

    Raises MoneyError for a code that is not in Adyen's table.
    """
    code = normalise_currency(currency)
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    if code in _TWO_DECIMAL:
        return 2
    raise MoneyError(f"{code} is not in Adyen's currency table; its Adyen exponent is not known")


def from_adyen(value: int, currency: str) -> Money:
    """An Adyen ``amount`` (``value`` in Adyen minor units, ``currency``) → Money at the ISO exponent, exactly.

    Raises MoneyError for a value that is not an int (a float or a bool: never coerced), an unknown
    currency, or a value with no ISO minor unit (Adyen's 150 CLP, i.e. 1.50 CLP).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyError(f"an Adyen amount value must be an integer, got {value!r}")
    return rescale(value, adyen_exponent(currency), currency)


def to_adyen(money: Money) -> int:
    """Money → the integer Adyen writes (the inverse of :func:`from_adyen`).

    Raises MoneyError when Adyen cannot express the amount (1.50 CVE: Adyen has no unit below the escudo).
    """
    return to_exponent(money, adyen_exponent(money.currency))


def parse_report_decimal(text: str) -> Decimal | None:
    """A report cell as an exact Decimal (``"10.00"``, ``"-1.23"``, ``".11"``, ``"1.000000000000000"``).

    A blank cell (``""``, or ``""`` quoted in the CSV, or spaces) is None. Raises MoneyError for anything
    else that is not plain decimal text.
    """
    if not isinstance(text, str):
        raise MoneyError(f"a report cell must be text, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        return None
    if not _DECIMAL_TEXT.fullmatch(stripped):
        raise MoneyError(f"not a decimal amount: {text!r}")
    try:
        return Decimal(stripped)
    except InvalidOperation as exc:  # unreachable after the pattern; kept so no text escapes untyped
        raise MoneyError(f"not a decimal amount: {text!r}") from exc


def parse_report_amount(text: str, currency: str) -> Money | None:
    """A report amount cell in major units → Money at the ISO exponent of ``currency``; None when blank.

    ``"1.000"`` USD is 100; ``"0.011"`` USD or ``"1.5"`` JPY would lose precision and raises MoneyError.
    """
    value = parse_report_decimal(text)
    if value is None:
        return None
    return parse_decimal(value, currency)
