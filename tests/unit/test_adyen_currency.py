"""Adyen's exponent table and exact conversions, and the settlement report's decimal text (adyen/currency.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from thred_bridge.domain.money import Money, MoneyError, iso_exponent
from thred_bridge.processors.adyen.currency import (
    ADYEN_CURRENCIES,
    adyen_exponent,
    from_adyen,
    parse_report_amount,
    parse_report_decimal,
    to_adyen,
)

ZERO_DECIMAL = ["CVE", "DJF", "GNF", "IDR", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
THREE_DECIMAL = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
TWO_DECIMAL_UNLIKE_ISO = ["CLP", "ISK"]  # ISO 4217: 0 decimals
ZERO_DECIMAL_UNLIKE_ISO = ["CVE", "IDR"]  # ISO 4217: 2 decimals
TWO_DECIMAL = ["EUR", "USD", "GBP", "HUF", "TWD", "CHF", "SEK", "INR", "BRL", "MXN", "CNH"]
ALL = sorted(ADYEN_CURRENCIES)
values = st.integers(min_value=-(10**15), max_value=10**15)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        *((c, 0) for c in ZERO_DECIMAL),
        *((c, 3) for c in THREE_DECIMAL),
        *((c, 2) for c in [*TWO_DECIMAL, *TWO_DECIMAL_UNLIKE_ISO]),
    ],
)
def test_exponent_table(currency: str, exponent: int) -> None:
    assert adyen_exponent(currency) == exponent
    assert adyen_exponent(currency.lower()) == exponent


def test_the_table_differs_from_iso_exactly_where_adyen_says() -> None:
    differing = sorted(c for c in ADYEN_CURRENCIES if adyen_exponent(c) != iso_exponent(c))
    assert differing == ["CLP", "CVE", "IDR", "ISK"]


@pytest.mark.parametrize("currency", ["XXX", "BIF", "BYR", "GHC", "UYI", "CLF", "ABC"])
def test_unknown_currencies_are_refused(currency: str) -> None:
    with pytest.raises(MoneyError, match="not in Adyen's currency table"):
        adyen_exponent(currency)
    with pytest.raises(MoneyError):
        from_adyen(100, currency)


@pytest.mark.parametrize("currency", ["EURO", "", "E1R", "€UR"])
def test_malformed_currency_codes_are_refused(currency: str) -> None:
    with pytest.raises(MoneyError):
        from_adyen(100, currency)


def test_worked_examples() -> None:
    assert from_adyen(1130, "EUR") == Money(1130, "EUR")
    assert from_adyen(1000, "JPY") == Money(1000, "JPY")
    assert from_adyen(1250, "KWD") == Money(1250, "KWD")
    assert from_adyen(15000, "CLP") == Money(150, "CLP")  # Adyen 150.00 CLP
    assert from_adyen(15000, "ISK") == Money(150, "ISK")
    assert from_adyen(150, "CVE") == Money(15000, "CVE")  # Adyen 150 CVE = 150.00 in ISO minor units
    assert from_adyen(150, "IDR") == Money(15000, "IDR")
    assert to_adyen(Money(150, "CLP")) == 15000
    assert to_adyen(Money(15000, "IDR")) == 150


@pytest.mark.parametrize(("value", "currency"), [(150, "CLP"), (1, "ISK"), (-99, "CLP")])
def test_values_below_the_iso_unit_are_refused(value: int, currency: str) -> None:
    with pytest.raises(MoneyError, match="not a whole"):
        from_adyen(value, currency)


@pytest.mark.parametrize("money", [Money(150, "CVE"), Money(1, "IDR")])
def test_amounts_adyen_cannot_write_are_refused(money: Money) -> None:
    with pytest.raises(MoneyError):
        to_adyen(money)


@given(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ALL))
def test_a_float_is_never_coerced(value: float, currency: str) -> None:
    with pytest.raises(MoneyError, match="must be an integer"):
        from_adyen(value, currency)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, False, "1000", Decimal(1000), None])
def test_non_integers_are_refused(value: object) -> None:
    with pytest.raises(MoneyError):
        from_adyen(value, "EUR")  # type: ignore[arg-type]


@given(values, st.sampled_from(ALL))
def test_the_major_unit_value_is_preserved_or_refused(value: int, currency: str) -> None:
    """Whatever the exponent class, Adyen's value means the same amount in ISO minor units, or is refused."""
    meant = Decimal(value).scaleb(-adyen_exponent(currency))
    try:
        money = from_adyen(value, currency)
    except MoneyError:
        assert adyen_exponent(currency) > iso_exponent(currency)
        assert value % 10 ** (adyen_exponent(currency) - iso_exponent(currency)) != 0
        return
    assert isinstance(money.minor, int)
    assert money.currency == currency
    assert money.to_decimal() == meant


@given(values, st.sampled_from([c for c in ALL if adyen_exponent(c) <= iso_exponent(c)]))
def test_round_trip_from_adyen(value: int, currency: str) -> None:
    assert to_adyen(from_adyen(value, currency)) == value


@given(values, st.sampled_from(TWO_DECIMAL_UNLIKE_ISO))
def test_round_trip_where_adyen_has_more_decimals(value: int, currency: str) -> None:
    whole = value * 100
    assert to_adyen(from_adyen(whole, currency)) == whole
    assume(value % 100)
    with pytest.raises(MoneyError):
        from_adyen(value, currency)


@given(values, st.sampled_from([c for c in ALL if adyen_exponent(c) >= iso_exponent(c)]))
def test_round_trip_from_money(minor: int, currency: str) -> None:
    money = Money(minor, currency)
    assert from_adyen(to_adyen(money), currency) == money


@given(values, st.sampled_from(ZERO_DECIMAL_UNLIKE_ISO))
def test_round_trip_from_money_where_adyen_has_fewer_decimals(minor: int, currency: str) -> None:
    money = Money(minor * 100, currency)
    assert from_adyen(to_adyen(money), currency) == money


@given(values, st.sampled_from([c for c in ALL if adyen_exponent(c) == iso_exponent(c)]))
def test_where_adyen_agrees_with_iso_nothing_is_rescaled(value: int, currency: str) -> None:
    assert from_adyen(value, currency) == Money(value, currency)


# --- the settlement report's decimal text ---------------------------------------------------------


def test_report_amount_examples() -> None:
    assert parse_report_amount("10.00", "EUR") == Money(1000, "EUR")
    assert parse_report_amount("-1.23", "EUR") == Money(-123, "EUR")
    assert parse_report_amount(".11", "USD") == Money(11, "USD")
    assert parse_report_amount("52", "USD") == Money(5200, "USD")
    assert parse_report_amount(" 1.000 ", "USD") == Money(100, "USD")
    assert parse_report_amount("1500", "JPY") == Money(1500, "JPY")
    assert parse_report_amount("1500.00", "CLP") == Money(1500, "CLP")  # ISO exponent, not Adyen's
    assert parse_report_amount("1.250", "KWD") == Money(1250, "KWD")
    assert parse_report_amount("+0.5", "EUR") == Money(50, "EUR")
    assert parse_report_amount("0.", "EUR") == Money(0, "EUR")


@pytest.mark.parametrize("text", ["", "   ", "\t"])
def test_a_blank_cell_is_none(text: str) -> None:
    assert parse_report_amount(text, "EUR") is None
    assert parse_report_decimal(text) is None


@pytest.mark.parametrize(
    "text", ["1,000.00", "1e3", "1.2302025304E+022", "NaN", "Infinity", "abc", "--1", "1.2.3", "."]
)
def test_text_that_is_not_a_plain_decimal_is_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="not a decimal amount"):
        parse_report_amount(text, "EUR")


@pytest.mark.parametrize(("text", "currency"), [("0.011", "USD"), ("1.5", "JPY"), ("0.0001", "KWD"), ("1.01", "CLP")])
def test_report_amounts_that_would_lose_precision_are_refused(text: str, currency: str) -> None:
    with pytest.raises(MoneyError, match="more than"):
        parse_report_amount(text, currency)


def test_a_float_cell_is_refused() -> None:
    with pytest.raises(MoneyError):
        parse_report_decimal(1.5)  # type: ignore[arg-type]


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from(["EUR", "JPY", "KWD", "CLP", "ISK", "USD"]),
    st.sampled_from(["plain", "padded", "signed", "no-leading-zero"]),
)
def test_report_decimal_text_round_trips(minor: int, currency: str, style: str) -> None:
    exponent = iso_exponent(currency)
    text = format(Decimal(minor).scaleb(-exponent), "f")
    if style == "padded" and exponent:
        text += "000"
    elif style == "signed" and minor >= 0:
        text = "+" + text
    elif style == "no-leading-zero" and text.startswith("0."):
        text = text[1:]
    assert parse_report_amount(text, currency) == Money(minor, currency)


@given(
    st.integers(min_value=1, max_value=9),
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_a_digit_beyond_the_exponent_is_refused(digit: int, whole: int, currency: str) -> None:
    text = f"{whole}." + "0" * iso_exponent(currency) + str(digit)
    with pytest.raises(MoneyError):
        parse_report_amount(text, currency)
