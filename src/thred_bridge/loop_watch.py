"""How calm the event loop is: a timer's lateness, measured all the time in ``serve`` and ``worker``.

The loop answers webhooks and drives the dispatch; CPU-heavy work (planning a settlement report) runs in a
thread. Two things still delay the loop: its own long steps, and the GIL, which a busy thread hands back only
every switch interval (CPython's default is 5 ms). Each wait for the GIL costs up to one interval, and a
webhook's database statement crosses threads several times, so :func:`calm_gil` shortens the interval
(``BRIDGE_GIL_SWITCH_MS``, 1 ms). :func:`watch_loop` times a short sleep over and over: the overshoot goes to
``bridge_event_loop_lag_seconds``, and a stall over ``STALL_S`` is logged with its length.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Final

import structlog

from thred_bridge.observe import Metrics

log = structlog.get_logger("thred_bridge.loop")

TICK_S: Final = 0.05
STALL_S: Final = 0.1


def calm_gil(switch_ms: float) -> None:
    """Make a thread holding the GIL hand it to the loop's thread after ``switch_ms`` instead of 5 ms."""
    sys.setswitchinterval(switch_ms / 1000)


async def watch_loop(metrics: Metrics, *, tick: float = TICK_S, stall: float = STALL_S) -> None:
    """Until cancelled: sleep ``tick``, and record how much later than asked the loop woke."""
    while True:
        asked = time.perf_counter()
        await asyncio.sleep(tick)
        late = max(0.0, time.perf_counter() - asked - tick)
        metrics.loop_lag.observe(late)
        if late > stall:
            log.warning("loop.stalled", ms=round(late * 1000))
