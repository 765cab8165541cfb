"""Stripe's exponent table and exact conversions (processors/stripe/currency.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.money import Money, MoneyError, iso_exponent
from thred_bridge.processors.stripe.currency import from_stripe, stripe_exponent, to_stripe

ZERO_DECIMAL = [
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
]
THREE_DECIMAL = ["BHD", "JOD", "KWD", "OMR", "TND"]
TWO_DECIMAL = ["USD", "EUR", "GBP", "HUF", "TWD", "CHF", "SEK"]
amounts = st.integers(min_value=-(10**15), max_value=10**15)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [*((c, 0) for c in ZERO_DECIMAL), *((c, 3) for c in THREE_DECIMAL), *((c, 2) for c in TWO_DECIMAL), ("ISK", 2)],
)
def test_exponent_table(currency: str, exponent: int) -> None:
    assert stripe_exponent(currency) == exponent
    assert stripe_exponent(currency.lower()) == exponent


@given(amounts, st.sampled_from([*ZERO_DECIMAL, *THREE_DECIMAL, *TWO_DECIMAL]))
def test_round_trip_from_stripe(amount: int, currency: str) -> None:
    money = from_stripe(amount, currency.lower())
    assert money.currency == currency
    assert to_stripe(money) == amount


@given(amounts, st.sampled_from([c for c in [*ZERO_DECIMAL, *THREE_DECIMAL, *TWO_DECIMAL] if c != "MGA"]))
def test_where_stripe_agrees_with_iso_nothing_is_rescaled(amount: int, currency: str) -> None:
    assert stripe_exponent(currency) == iso_exponent(currency)
    assert from_stripe(amount, currency) == Money(amount, currency)


def test_jpy_is_zero_decimal() -> None:
    assert from_stripe(1000, "jpy") == Money(1000, "JPY")
    assert from_stripe(1000, "jpy").format() == "1,000 JPY"


def test_kwd_is_three_decimal() -> None:
    assert from_stripe(1250, "kwd").format() == "1.250 KWD"
    assert from_stripe(1255, "kwd") == Money(1255, "KWD")  # a reported amount need not end in 0


def test_huf_and_twd_are_two_decimal_in_the_api() -> None:
    assert from_stripe(1050, "huf").format() == "10.50 HUF"
    assert from_stripe(1050, "twd").format() == "10.50 TWD"


def test_ugx_is_zero_decimal_like_iso() -> None:
    assert from_stripe(5000, "ugx") == Money(5000, "UGX")


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_isk_is_written_times_100(kronur: int) -> None:
    money = from_stripe(kronur * 100, "isk")
    assert money == Money(kronur, "ISK")
    assert to_stripe(money) == kronur * 100


@given(st.integers(min_value=-(10**12), max_value=10**12).filter(lambda n: n % 100))
def test_fractional_isk_is_refused(amount: int) -> None:
    with pytest.raises(MoneyError, match="not a whole ISK minor unit"):
        from_stripe(amount, "isk")


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_mga_stripe_unit_is_100_iso_minor_units(ariary: int) -> None:
    money = from_stripe(ariary, "mga")
    assert money == Money(ariary * 100, "MGA")
    assert to_stripe(money) == ariary


@given(st.integers(min_value=-(10**12), max_value=10**12).filter(lambda n: n % 100))
def test_mga_below_one_ariary_cannot_be_written_for_stripe(iso_minor: int) -> None:
    with pytest.raises(MoneyError, match="cannot be written with 0 decimals"):
        to_stripe(Money(iso_minor, "MGA"))


@pytest.mark.parametrize("currency", ["IQD", "LYD", "CLF", "XAU"])
def test_currencies_stripe_does_not_name_are_not_guessed(currency: str) -> None:
    with pytest.raises(MoneyError, match="Stripe's exponent"):
        from_stripe(100, currency)


@pytest.mark.parametrize("amount", [10.5, "1000", True, None])
def test_only_integers_are_stripe_amounts(amount: object) -> None:
    with pytest.raises(MoneyError, match="must be an integer"):
        from_stripe(amount, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["", "us", "usdx", "€€€"])
def test_bad_currency_codes(currency: str) -> None:
    with pytest.raises(MoneyError):
        from_stripe(100, currency)
