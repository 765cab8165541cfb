"""The Thred client's adaptive limit: slow start, additive increase, one decrease per window of refusals, and
callers queued for room get it in order. Driven against a simulated Thred that refuses beyond its own limit."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thred_bridge.thred.limit import AdaptiveLimit

pytestmark = pytest.mark.anyio


def test_slow_start_doubles_per_round_until_the_first_refusal_then_grows_by_one_per_round() -> None:
    limit = AdaptiveLimit(1000, initial=4)
    for _ in range(4):  # one round: four calls answered
        limit.in_flight += 1
        limit.release(0, 201)
    assert limit.limit == 8
    limit.in_flight += 1
    limit.release(0, 429)
    assert limit.limit == pytest.approx(7.2)
    before = limit.limit
    for _ in range(7):
        limit.in_flight += 1
        limit.release(1, 200)
    assert limit.limit == pytest.approx(before + 1, abs=0.1), "about one more per round after the first refusal"


def test_refusals_of_one_window_decrease_once_and_a_timeout_changes_nothing() -> None:
    limit = AdaptiveLimit(64, initial=40)
    for _ in range(10):
        limit.in_flight += 1
        limit.release(0, 429)
    assert limit.limit == pytest.approx(36)
    assert (limit.refusals, limit.decreases) == (10, 1)
    limit.in_flight += 1
    limit.release(1, 503)
    assert limit.limit == pytest.approx(32.4)
    limit.in_flight += 1
    limit.release(2, None)
    assert limit.limit == pytest.approx(32.4)


async def test_callers_beyond_the_limit_wait_and_get_room_in_order() -> None:
    limit = AdaptiveLimit(2, initial=2)
    first, second = await limit.acquire(), await limit.acquire()
    order: list[int] = []

    async def third() -> None:
        await limit.acquire()
        order.append(3)

    waiting = asyncio.create_task(third())
    await asyncio.sleep(0)
    assert not order
    assert limit.in_flight == 2
    limit.release(first, 200)
    await waiting
    assert order == [3]
    assert limit.in_flight == 2
    limit.release(second, 200)


async def test_a_caller_cancelled_while_waiting_takes_no_room() -> None:
    limit = AdaptiveLimit(1, initial=1)
    held = await limit.acquire()
    waiting = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    limit.release(held, 200)
    assert limit.in_flight == 0
    await limit.acquire()
    assert limit.in_flight == 1


@settings(max_examples=30, deadline=None)
@given(allowed=st.integers(4, 80), initial=st.integers(1, 64))
def test_against_a_thred_that_refuses_beyond_its_limit_it_keeps_most_of_it(allowed: int, initial: int) -> None:
    """Rounds of calls: each round sends ``limit`` calls; Thred answers ``allowed`` of them and refuses the
    rest. After a short start the calls answered per round stay at 85 % or more of what Thred allows."""
    limit = AdaptiveLimit(256, initial=initial)
    answered_late: list[int] = []
    for rounds in range(1, 301):
        window = limit.window  # the window this round goes out in
        batch = int(limit.limit)
        answered = min(batch, allowed)
        limit.in_flight += batch
        for n in range(batch):
            limit.release(window, 201 if n < answered else 429)
        if rounds > 40:
            answered_late.append(answered)
    assert sum(answered_late) / len(answered_late) >= 0.85 * allowed
    assert limit.limit <= allowed * 1.15 + 2, "it does not run away above what Thred allows"
