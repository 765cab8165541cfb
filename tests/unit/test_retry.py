"""Retry schedule (domain/retry.py): exponential backoff with jitter, a cap, and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.retry import BASE_S, CAP_S, backoff, next_due

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True, allow_nan=False)
attempts = st.integers(min_value=1, max_value=10_000)


def test_without_jitter_spread_the_wait_doubles() -> None:
    # jitter 0.5 is the midpoint: exactly base * 2**(attempts-1)
    assert [backoff(n, 0.5) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]


@given(st.integers(min_value=1, max_value=8), jitters)
def test_backoff_grows_exponentially(n: int, jitter: float) -> None:
    # below the cap, one more failure doubles the wait for the same jitter
    assert backoff(n + 1, jitter) == pytest.approx(2 * backoff(n, jitter))


@given(attempts, jitters)
def test_backoff_is_capped(n: int, jitter: float) -> None:
    assert 0.0 < backoff(n, jitter) <= CAP_S


def test_cap_is_reached_and_held() -> None:
    assert backoff(30, 0.5) == CAP_S
    assert backoff(10_000, 0.0) == CAP_S / 2  # 0.5x of the capped wait
    assert backoff(10_000, 0.999) == CAP_S
    assert backoff(5, 0.5, cap=10.0) == 10.0
    assert backoff(3, 0.5, base=3.0) == 12.0


@given(attempts, jitters)
def test_jitter_stays_within_half_and_one_and_a_half(n: int, jitter: float) -> None:
    nominal = min(CAP_S, BASE_S * 2 ** min(n - 1, 32))
    wait = backoff(n, jitter)
    assert 0.5 * nominal <= wait <= min(CAP_S, 1.5 * nominal)
    assert wait == pytest.approx(min(CAP_S, nominal * (0.5 + jitter)))


def test_jitter_bounds_are_exact() -> None:
    assert backoff(4, 0.0) == 4.0
    assert backoff(4, 0.999999) == pytest.approx(12.0, rel=1e-5)
    assert backoff(4, 0.999999) < 12.0


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 1.5])
def test_jitter_out_of_range_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        backoff(1, jitter)


@pytest.mark.parametrize("n", [0, -1, -100])
def test_no_failures_no_wait(n: int) -> None:
    assert backoff(n, 0.5) == 0.0
    assert next_due(n, NOW, 0.5) == NOW


def test_next_due_is_now_plus_backoff() -> None:
    assert next_due(3, NOW, 0.5) == NOW + timedelta(seconds=4)
    assert next_due(100, NOW, 0.5) == NOW + timedelta(seconds=CAP_S)
    assert next_due(100, NOW, 0.5, cap=60.0) == NOW + timedelta(seconds=60)


def test_retry_after_is_honoured_when_longer() -> None:
    assert next_due(1, NOW, 0.5, retry_after=30.0) == NOW + timedelta(seconds=30)
    assert next_due(0, NOW, 0.5, retry_after=7.0) == NOW + timedelta(seconds=7)


def test_retry_after_shorter_than_backoff_is_ignored() -> None:
    assert next_due(5, NOW, 0.5, retry_after=1.0) == NOW + timedelta(seconds=16)
    assert next_due(5, NOW, 0.5, retry_after=0.0) == NOW + timedelta(seconds=16)


def test_retry_after_is_capped_at_an_hour() -> None:
    assert next_due(1, NOW, 0.5, retry_after=86_400.0) == NOW + timedelta(hours=1)
    assert next_due(1, NOW, 0.5, retry_after=3600.0) == NOW + timedelta(hours=1)
    # the hour is above the normal cap: a long Retry-After may wait longer than backoff ever would
    assert next_due(1, NOW, 0.5, retry_after=2000.0) == NOW + timedelta(seconds=2000)


@given(attempts, jitters, st.one_of(st.none(), st.floats(min_value=0, max_value=10**7, allow_nan=False)))
def test_next_due_is_never_before_now_nor_past_an_hour(n: int, jitter: float, retry_after: float | None) -> None:
    due = next_due(n, NOW, jitter, retry_after)
    assert NOW < due <= NOW + timedelta(hours=1)
