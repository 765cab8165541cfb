"""Mollie decimal-string amounts ↔ Money (processors/mollie/money.py), and the cost rounding of settlements."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.money import Money, MoneyError, iso_exponent
from thred_bridge.processors.mollie.money import (
    COST_DECIMALS,
    MAX_VALUE_CHARS,
    InexactAmountError,
    exact_amount,
    fee_of_deductions,
    parse_amount,
    parse_cost,
    parse_value,
    round_half_even,
    to_mollie,
)
from thred_bridge.processors.mollie.translate_settlements import share_out

# Two, zero and three decimals (ISO 4217): the exponents the bridge books in.
CURRENCIES = ["EUR", "USD", "GBP", "CHF", "JPY", "ISK", "KRW", "KWD", "BHD", "JOD"]
minor_units = st.integers(min_value=-(10**15), max_value=10**15)
currencies = st.sampled_from(CURRENCIES)


def amount(value: object, currency: str = "EUR") -> dict[str, object]:
    return {"currency": currency, "value": value}


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("10.00", "EUR", 1000),
        ("0.01", "EUR", 1),
        ("-35.07", "EUR", -3507),
        ("-0.00", "EUR", 0),
        ("86.1000", "EUR", 8610),  # a settlement period figure whose extra decimals are zeros
        ("1500", "JPY", 1500),
        ("1500.00", "JPY", 1500),
        ("100", "ISK", 100),
        ("1.250", "KWD", 1250),
        ("43.38", "usd", 4338),  # lower-case codes are normalised
    ],
)
def test_exact_parse(value: str, currency: str, minor: int) -> None:
    assert parse_amount(amount(value, currency)) == Money(minor, currency.upper())


@pytest.mark.parametrize(
    ("value", "currency"),
    [("2.5410", "EUR"), ("10.001", "EUR"), ("0.5", "JPY"), ("1.2345", "KWD"), ("100.50", "ISK")],
)
def test_more_decimals_than_the_minor_unit_is_refused(value: str, currency: str) -> None:
    with pytest.raises(InexactAmountError, match="would lose money"):
        parse_amount(amount(value, currency), "settlementAmount")
    assert issubclass(InexactAmountError, MoneyError)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (10.0, "float"),
        (10, "not a decimal string"),
        (Decimal("10.00"), "not a decimal string"),
        (None, "not a decimal string"),
        ("1e3", "not a decimal string like"),
        ("+1.00", "not a decimal string like"),
        (" 1.00", "not a decimal string like"),
        ("1.", "not a decimal string like"),
        (".5", "not a decimal string like"),
        ("NaN", "not a decimal string like"),
        ("Infinity", "not a decimal string like"),
        ("1,00", "not a decimal string like"),
        ("١٠", "not a decimal string like"),  # Arabic-Indic digits: Decimal would take them
        ("1" * (MAX_VALUE_CHARS + 1), "characters long"),
    ],
)
def test_anything_but_decimal_text_is_refused(value: object, reason: str) -> None:
    with pytest.raises(MoneyError, match=reason):
        parse_amount(amount(value))


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("10.00", "not an amount object"),
        ({"value": "10.00"}, "has no currency"),
        ({"currency": "EURO", "value": "10.00"}, "ISO 4217"),
        ({"currency": 978, "value": "10.00"}, "has no currency"),
    ],
)
def test_malformed_amount_objects(given: object, reason: str) -> None:
    with pytest.raises(MoneyError, match=reason):
        parse_amount(given, "amount")


def test_error_names_what_was_read() -> None:
    with pytest.raises(InexactAmountError, match=r"^payment tr_1 amount: "):
        parse_amount(amount("1.234"), "payment tr_1 amount")


@given(minor_units, currencies)
def test_round_trip(minor: int, currency: str) -> None:
    money = Money(minor, currency)
    written = to_mollie(money)
    exponent = iso_exponent(currency)
    assert written["currency"] == currency
    assert written["value"].count(".") == (1 if exponent else 0)
    if exponent:
        assert len(written["value"].split(".")[1]) == exponent
    assert isinstance(written["value"], str)
    assert parse_amount(written) == money


@given(minor_units, currencies, st.integers(min_value=1, max_value=4))
def test_trailing_zeros_change_nothing(minor: int, currency: str, extra: int) -> None:
    value = to_mollie(Money(minor, currency))["value"]
    padded = value + ("" if "." in value else ".") + "0" * extra
    assert parse_amount(amount(padded, currency)) == Money(minor, currency)


@given(st.integers(min_value=-(10**12), max_value=10**12), currencies, st.integers(min_value=1, max_value=2))
def test_a_significant_extra_decimal_is_refused(minor: int, currency: str, extra: int) -> None:
    exponent = iso_exponent(currency) + extra
    scaled = minor * 10 + (1 if minor >= 0 else -1)  # the last digit is never 0
    value = Decimal(scaled).scaleb(-exponent)
    text = format(value, "f")
    with pytest.raises(InexactAmountError):
        parse_amount(amount(text, currency))


@given(st.integers(min_value=-(10**12), max_value=10**12), currencies)
def test_costs_round_half_even(ten_thousandths: int, currency: str) -> None:
    value = Decimal(ten_thousandths).scaleb(-COST_DECIMALS)
    text = format(value, "f")
    exact = value.scaleb(iso_exponent(currency))
    expected = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert parse_cost(amount(text, currency)) == Money(expected, currency)
    assert abs(Decimal(expected) - exact) <= Decimal("0.5")


@pytest.mark.parametrize(
    ("value", "minor"),
    [
        ("2.5410", 254),
        ("0.6050", 60),  # a tie goes to the even cent
        ("0.6150", 62),
        ("2.5450", 254),
        ("2.5350", 254),
        ("-0.6050", -60),
        ("86.1000", 8610),
        ("0.0049", 0),
    ],
)
def test_cost_examples(value: str, minor: int) -> None:
    assert parse_cost(amount(value)) == Money(minor, "EUR")


def test_costs_with_more_than_four_decimals_are_refused() -> None:
    with pytest.raises(InexactAmountError, match="more than 4 decimals"):
        parse_cost(amount("0.60501"))


def test_exact_amount_keeps_every_decimal() -> None:
    assert exact_amount(amount("2.5410")) == (Decimal("2.5410"), "EUR")
    assert parse_value("-43.2000", "EUR") == Decimal("-43.2")
    assert round_half_even(Decimal("3.1460"), "EUR") == Money(315, "EUR")


four_decimal_costs = st.lists(
    st.integers(min_value=-(10**8), max_value=10**8).map(lambda n: Decimal(n).scaleb(-4)), min_size=1, max_size=12
)


@given(four_decimal_costs, st.sampled_from(["EUR", "JPY", "KWD"]))
def test_shared_out_costs_add_up_to_the_rounded_total(costs: list[Decimal], currency: str) -> None:
    shares = share_out(costs, currency)
    exponent = iso_exponent(currency)
    total = sum(costs, Decimal(0))
    assert sum(s.minor for s in shares) == round_half_even(total, currency).minor
    for cost, share in zip(costs, shares, strict=True):
        assert share.currency == currency
        assert abs(Decimal(share.minor) - cost.scaleb(exponent)) < 1


def test_rounding_lines_alone_would_not_tie_out() -> None:
    # Mollie's own settlement example: 86.10 - 43.20 - (2.5410 + 0.6050) = 39.75, i.e. costs of 3.15.
    lines = [Decimal("2.5410"), Decimal("0.6050")]
    assert [parse_cost(amount(str(x))).minor for x in lines] == [254, 60]  # 3.14: a cent short
    assert share_out(lines, "EUR") == [Money(254, "EUR"), Money(61, "EUR")]


@given(minor_units, currencies)
def test_deductions_read_as_the_fee_exactly(minor: int, currency: str) -> None:
    """A balance transaction's ``deductions`` (what Mollie withheld, negative) is the fee, to the minor unit."""
    withheld = to_mollie(Money(-minor, currency))
    assert fee_of_deductions(withheld) == Money(minor, currency)


@given(st.integers(min_value=-(10**12), max_value=10**12), currencies)
def test_deductions_with_more_decimals_than_the_currency_are_refused(minor: int, currency: str) -> None:
    exponent = iso_exponent(currency) + 1
    scaled = minor * 10 + (1 if minor >= 0 else -1)  # one significant decimal too many
    value = Decimal(scaled).scaleb(-exponent)
    with pytest.raises(InexactAmountError, match="deductions"):
        fee_of_deductions(amount(f"{value:f}", currency), "deductions")
