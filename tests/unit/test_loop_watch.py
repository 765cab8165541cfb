"""The loop watch: a stalled event loop shows in ``bridge_event_loop_lag_seconds`` and in the log."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
import structlog

from thred_bridge.loop_watch import calm_gil, watch_loop
from thred_bridge.observe import Metrics


def _lag(metrics: Metrics, bucket: str) -> float:
    value = metrics.registry.get_sample_value("bridge_event_loop_lag_seconds_bucket", {"le": bucket})
    assert value is not None
    return value


def test_a_stall_is_measured_and_logged() -> None:
    metrics = Metrics()

    async def main() -> None:
        watch = asyncio.create_task(watch_loop(metrics, tick=0.01, stall=0.1))
        await asyncio.sleep(0.05)  # calm ticks
        time.sleep(0.3)  # noqa: ASYNC251 - the stall itself: the loop's thread busy, nothing else runs
        await asyncio.sleep(0.05)
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(main())
    total = metrics.registry.get_sample_value("bridge_event_loop_lag_seconds_count")
    assert total is not None
    assert total >= 4
    assert total - _lag(metrics, "0.25") >= 1  # the tick the stall held up was late by more than 250 ms
    stalls = [entry["ms"] for entry in logs if entry["event"] == "loop.stalled"]
    assert stalls
    assert max(stalls) >= 250


@pytest.mark.parametrize("ms", [0.5, 1.0, 5.0])
def test_calm_gil_sets_the_switch_interval(ms: float) -> None:
    before = sys.getswitchinterval()
    try:
        calm_gil(ms)
        assert sys.getswitchinterval() == pytest.approx(ms / 1000)
    finally:
        sys.setswitchinterval(before)
