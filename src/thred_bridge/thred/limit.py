"""How many calls the Thred client has in flight: an adaptive limit (AIMD), so Thred's own limit is found, not
configured.

Thred refuses calls beyond what it allows (429, or 503 when overloaded), and what it allows is not documented
(../shared/thred/CONTRACT.md). A fixed limit is either below it (throughput left unused) or above it (a
stream of refusals, each a record retried later). So, as TCP does with a congestion window:

- **slow start**: from ``initial``, each success adds one (the limit doubles every round trip) until the first
  refusal;
- then **additive increase**: each success adds ``1 / limit`` (one more per round trip's worth of successes);
- **multiplicative decrease**: a refusal multiplies the limit by ``backoff`` (0.9), once per window: the other
  calls refused with it were sent under the same limit and say nothing new.

With ``backoff`` 0.9 the limit saws between 90 % and 100 % of what Thred allows, so the bridge keeps about 95 %
of Thred's throughput while only one call in several hundred is refused. ``ceiling`` bounds it from above (the
connection pool's size).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Final

REFUSALS: Final = frozenset({429, 503})


class AdaptiveLimit:
    def __init__(self, ceiling: int, *, initial: int = 8, backoff: float = 0.9) -> None:
        if ceiling < 1 or not 0 < backoff < 1:
            raise ValueError("ceiling must be at least 1 and backoff between 0 and 1")
        self.ceiling = ceiling
        self.limit = float(min(initial, ceiling))
        self.backoff = backoff
        self.in_flight = 0
        self.refusals = 0
        self.decreases = 0
        self._slow_start = True
        self._window = 0  # counts decreases: a call refused under an older window does not decrease again
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def window(self) -> int:
        """The current window: the number of decreases so far."""
        return self._window

    async def acquire(self) -> int:
        """Wait for room; returns the window the call goes out in (hand it back to :meth:`release`)."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return self._window
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future  # the slot is counted for this caller when it is handed over
        except BaseException:
            if future.done() and not future.cancelled():
                self.in_flight -= 1  # handed a slot as it gave up: give it on
                self._hand_over()
            else:
                future.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(future)
            raise
        return self._window

    def release(self, window: int, status: int | None) -> None:
        """A call is done, answered with ``status`` (None: no answer, e.g. a timeout, which changes nothing)."""
        self.in_flight -= 1
        if status in REFUSALS:
            self.refusals += 1
            if window == self._window:
                self.limit = max(1.0, self.limit * self.backoff)
                self._slow_start = False
                self._window += 1
                self.decreases += 1
        elif status is not None:
            step = 1.0 if self._slow_start else 1.0 / self.limit
            self.limit = min(float(self.ceiling), self.limit + step)
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            future = self._waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)
