"""When to try a transient failure again: exponential backoff with full jitter, capped.

Durable: the due time is stored with the event or record, so a restarted worker keeps the schedule.
"""

from __future__ import annotations

from datetime import datetime, timedelta

BASE_S = 1.0
CAP_S = 15 * 60.0


def backoff(attempts: int, jitter: float, *, base: float = BASE_S, cap: float = CAP_S) -> float:
    """Seconds to wait after ``attempts`` failures; ``jitter`` in [0, 1) spreads retries (0.5x to 1.5x)."""
    if attempts < 1:
        return 0.0
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter must be in [0, 1)")
    exp = min(cap, base * float(2 ** min(attempts - 1, 32)))
    return min(cap, exp * (0.5 + jitter))


def next_due(
    attempts: int, now: datetime, jitter: float, retry_after: float | None = None, *, cap: float = CAP_S
) -> datetime:
    """The next attempt time; a processor's or Thred's ``Retry-After`` is honoured when it is longer."""
    wait = backoff(attempts, jitter, cap=cap)
    if retry_after is not None and retry_after > wait:
        wait = min(retry_after, 3600.0)
    return now + timedelta(seconds=wait)
