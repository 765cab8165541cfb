"""Exact money (domain/money.py): decimal text ⇄ ISO minor units, rescaling, refusals, formatting. No floats."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.money import (
    Money,
    MoneyError,
    iso_exponent,
    normalise_currency,
    parse_decimal,
    rescale,
    to_exponent,
    to_minor,
)

BY_EXPONENT: dict[int, list[str]] = {
    0: ["JPY", "ISK", "KRW", "CLP", "VND", "XAF"],
    2: ["EUR", "USD", "GBP", "CHF", "SEK", "MGA"],
    3: ["KWD", "BHD", "JOD", "OMR", "TND", "IQD", "LYD"],
    4: ["CLF", "UYW"],
}
ALL = [(code, exp) for exp, codes in BY_EXPONENT.items() for code in codes]
# Arbitrary integers, well past the 28 digits of Decimal's default context.
ints = st.integers(min_value=-(10**40), max_value=10**40)
currencies = st.sampled_from(ALL)


@pytest.mark.parametrize(("currency", "exponent"), ALL)
def test_iso_exponent_table(currency: str, exponent: int) -> None:
    assert iso_exponent(currency) == exponent
    assert iso_exponent(currency.lower()) == exponent
    assert Money(1, currency).exponent == exponent


@given(ints, currencies)
def test_decimal_round_trip(minor: int, currency_exp: tuple[str, int]) -> None:
    currency, exponent = currency_exp
    money = Money(minor, currency)
    as_decimal = money.to_decimal()
    assert as_decimal == Decimal(f"{minor}E-{exponent}")  # string construction is exact
    assert parse_decimal(as_decimal, currency) == money
    assert parse_decimal(str(as_decimal), currency.lower()) == money
    assert parse_decimal(f" {as_decimal} ", currency) == money


@given(ints, currencies)
def test_to_decimal_keeps_every_digit(minor: int, currency_exp: tuple[str, int]) -> None:
    currency, exponent = currency_exp
    sign, digits, exp = Money(minor, currency).to_decimal().as_tuple()
    assert "".join(map(str, digits)) == str(abs(minor))
    assert exp == -exponent
    assert sign == (1 if minor < 0 else 0)


@given(ints, currencies, st.integers(min_value=0, max_value=6))
def test_rescale_and_to_exponent_are_inverse(minor: int, currency_exp: tuple[str, int], processor_exp: int) -> None:
    currency, iso = currency_exp
    money = Money(minor, currency)
    if processor_exp >= iso:
        # every Money can be written at a wider exponent, and read back
        written = to_exponent(money, processor_exp)
        assert written == minor * 10 ** (processor_exp - iso)
        assert rescale(written, processor_exp, currency) == money
        if processor_exp > iso and minor % 10 != 0:
            with pytest.raises(MoneyError, match="not a whole"):
                rescale(minor, processor_exp, currency)
    else:
        # every integer at a narrower exponent is a Money, and writes back the same
        widened = rescale(minor, processor_exp, currency)
        assert widened.minor == minor * 10 ** (iso - processor_exp)
        assert to_exponent(widened, processor_exp) == minor
        if minor % 10 != 0:
            with pytest.raises(MoneyError, match="cannot be written"):
                to_exponent(money, processor_exp)


@given(ints, currencies)
def test_rescale_at_iso_exponent_is_identity(minor: int, currency_exp: tuple[str, int]) -> None:
    currency, iso = currency_exp
    assert rescale(minor, iso, currency) == Money(minor, currency)
    assert to_exponent(Money(minor, currency), iso) == minor


def test_rescale_refuses_to_lose_precision() -> None:
    assert rescale(15000, 2, "ISK") == Money(150, "ISK")
    with pytest.raises(MoneyError, match="not a whole ISK minor unit"):
        rescale(150 + 1, 2, "ISK")
    assert rescale(1250, 2, "KWD") == Money(12500, "KWD")
    with pytest.raises(MoneyError, match="cannot be written with 2 decimals"):
        to_exponent(Money(1255, "KWD"), 2)
    assert to_exponent(Money(1250, "KWD"), 2) == 125


@given(st.integers(min_value=-(10**12), max_value=10**12).filter(lambda n: n % 10 != 0), currencies)
def test_one_decimal_too_many_is_refused(minor: int, currency_exp: tuple[str, int]) -> None:
    currency, exponent = currency_exp
    text = str(Decimal(minor).scaleb(-(exponent + 1)))
    with pytest.raises(MoneyError, match="decimals"):
        parse_decimal(text, currency)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("10.00", "EUR", 1000),
        ("10.5", "EUR", 1050),
        ("-3.5000", "EUR", -350),
        ("1000", "JPY", 1000),
        ("1000.000", "JPY", 1000),
        ("1.25", "KWD", 1250),
        ("0.0001", "CLF", 1),
        ("1e2", "EUR", 10000),
        ("0", "ISK", 0),
    ],
)
def test_parse_examples(text: str, currency: str, minor: int) -> None:
    assert parse_decimal(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("10.001", "EUR"),
        ("1.5", "JPY"),
        ("1.2345", "KWD"),
        ("0.00001", "CLF"),
        ("1234567890123456789012345678.901", "EUR"),
    ],
)
def test_extra_decimals_are_refused(text: str, currency: str) -> None:
    with pytest.raises(MoneyError, match="decimals"):
        parse_decimal(text, currency)


@pytest.mark.parametrize("text", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "-inf"])
def test_non_finite_is_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="not a finite amount"):
        parse_decimal(text, "EUR")
    with pytest.raises(MoneyError, match="not a finite amount"):
        parse_decimal(Decimal(text), "EUR")


@pytest.mark.parametrize("text", ["", "ten", "1,50", "1.5.0", "0x10", "€1"])
def test_non_numbers_are_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="not a decimal amount"):
        parse_decimal(text, "EUR")


def test_absurd_exponent_is_refused_not_crashed() -> None:
    with pytest.raises(MoneyError):
        parse_decimal("1e999999999999", "EUR")


@pytest.mark.parametrize("amount", [1.5, 0.1, 10.0, float("nan"), True])
def test_float_input_is_refused(amount: object) -> None:
    with pytest.raises(MoneyError):
        parse_decimal(amount, "EUR")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        to_minor(amount, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("minor", [10.0, 1.5, True, "100", Decimal(100)])
def test_money_minor_must_be_an_int(minor: object) -> None:
    with pytest.raises(MoneyError, match="must be an int"):
        Money(minor, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("code", ["", "EU", "EURO", "€UR", "E1R", "12 ", "ÄBC", "eu r"])
def test_bad_currency_codes_are_refused(code: str) -> None:
    with pytest.raises(MoneyError, match="not an ISO 4217 currency code"):
        normalise_currency(code)
    with pytest.raises(MoneyError, match="not an ISO 4217 currency code"):
        parse_decimal("1", code)
    with pytest.raises(MoneyError, match="not an ISO 4217 currency code"):
        Money(1, code)
    with pytest.raises(MoneyError, match="not an ISO 4217 currency code"):
        rescale(1, 2, code)


def test_currency_is_normalised() -> None:
    assert Money(1, " eur ").currency == "EUR"
    assert Money(1, "eur") == Money(1, "EUR")


def test_arithmetic_refuses_mixed_currencies() -> None:
    assert Money(100, "EUR") + Money(50, "EUR") == Money(150, "EUR")
    assert Money(100, "EUR") - Money(150, "EUR") == Money(-50, "EUR")
    assert -Money(5, "JPY") == Money(-5, "JPY")
    with pytest.raises(MoneyError, match="cannot combine EUR and USD"):
        _ = Money(100, "EUR") + Money(100, "USD")
    with pytest.raises(MoneyError, match="cannot combine"):
        _ = Money(100, "EUR") - Money(100, "GBP")


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(1000, "JPY"), "1,000 JPY"),
        (Money(-5, "JPY"), "-5 JPY"),
        (Money(1250, "KWD"), "1.250 KWD"),
        (Money(1, "KWD"), "0.001 KWD"),
        (Money(1050, "EUR"), "10.50 EUR"),
        (Money(-1050, "EUR"), "-10.50 EUR"),
        (Money(-123456789, "EUR"), "-1,234,567.89 EUR"),
        (Money(0, "EUR"), "0.00 EUR"),
        (Money(12345, "CLF"), "1.2345 CLF"),
        (Money(10**30 + 1, "EUR"), "10,000,000,000,000,000,000,000,000,000.01 EUR"),
    ],
)
def test_format(money: Money, text: str) -> None:
    assert money.format() == text


def test_zero() -> None:
    assert Money.zero("kwd") == Money(0, "KWD")
