"""Stripe's own minor units: its exponent table and exact conversions to and from :class:`Money`.

Stripe writes every amount as an integer in *its* idea of the currency's smallest unit, which is
not always ISO 4217's. This module owns that table; everything else in the bridge sees
``Money`` at the ISO exponent. Pure: nothing here does I/O or touches a float.

Sources (see /work/shared/PROCESSORS.md §1.8):

- [zd] zero-decimal list: archived stripe.com/docs/currencies (web.archive.org/web/20220618095455/
  https://stripe.com/en-mt/docs/currencies).
- [3d] three-decimal list and "least-significant digit must be 0": the same archived page.
- [isk] support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds.
- [huf] Stripe's "special cases" text (HUF; the same rule is commonly stated for TWD).
"""

from __future__ import annotations

from thred_bridge.domain.money import (
    Money,
    MoneyError,
    iso_exponent,
    normalise_currency,
    rescale,
    to_exponent,
)

# Stripe's zero-decimal currencies [zd]: an amount of 100 JPY is written 100.
# Two of them disagree with ISO 4217 or deserve a note:
# - MGA: ISO 4217 exponent 2, Stripe zero-decimal [zd], so 1 MGA in Stripe = 100 ISO minor units.
#   A Money in MGA that is not a whole ariary cannot be written for Stripe (``to_stripe`` refuses).
# - UGX: ISO 4217 exponent 0 and in Stripe's zero-decimal list [zd; woocommerce-gateway-stripe #883];
#   third parties also list it under Stripe's "special cases", whose wording we could not read, so
#   it is treated exactly like JPY.
_ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)

# Three-decimal currencies [3d]: amounts are written at exponent 3 (1.250 KWD = 1250). Stripe refuses
# a *charge* whose last digit is not 0, but amounts it reports (fees, FX results) are still exponent 3,
# so reading them needs no extra rule.
_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

# Two-decimal in Stripe's API although ISO 4217 differs:
# - ISK [isk]: "ISK will remain a two-decimal currency in the Stripe API, and an ISK amount of 100 will
#   continue to represent 1 króna". ISO 4217 says exponent 0, so Stripe's 150 (1.50 ISK) has no ISO
#   minor unit and ``from_stripe`` refuses it with MoneyError.
# HUF and TWD [huf] are two-decimal in the API for charges and ISO agrees (exponent 2); only Stripe
# *payouts* in them must be divisible by 100. They take the default below and need no entry.
_TWO_DECIMAL_UNLIKE_ISO = frozenset({"ISK"})

STRIPE_DEFAULT_EXPONENT = 2


def stripe_exponent(currency: str) -> int:
    """The exponent Stripe writes ``currency`` at (``jpy`` → 0, ``kwd`` → 3, ``isk`` → 2, ``usd`` → 2).

    A currency whose ISO exponent is not 2 and that Stripe's table does not name (IQD, LYD, CLF, …) is
    refused rather than guessed: Stripe does not settle in them, a guess could be 10 times off.
    """
    code = normalise_currency(currency)
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    if code in _TWO_DECIMAL_UNLIKE_ISO:
        return 2
    if iso_exponent(code) != STRIPE_DEFAULT_EXPONENT:
        raise MoneyError(f"Stripe's exponent for {code} is not known (ISO says {iso_exponent(code)})")
    return STRIPE_DEFAULT_EXPONENT


def from_stripe(amount: int, currency: str) -> Money:
    """A Stripe integer amount (``1000, "usd"``) → Money at the ISO exponent, exactly.

    Raises MoneyError for a non-integer amount, an unknown currency, or an amount with no ISO minor
    unit (Stripe ISK 150).
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise MoneyError(f"a Stripe amount must be an integer, got {amount!r}")
    return rescale(amount, stripe_exponent(currency), currency)


def to_stripe(money: Money) -> int:
    """Money → the integer Stripe writes (the inverse of :func:`from_stripe`).

    Raises MoneyError when Stripe cannot express the amount (0.50 MGA, which Stripe has no unit for).
    """
    return to_exponent(money, stripe_exponent(money.currency))
