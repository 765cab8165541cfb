"""What every simulated processor shares: a clock that ticks at every reading, and a queued fault."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass


def ticking_clock(start: int, step: int = 1) -> Callable[[], int]:
    """A world clock that moves ``step`` seconds at every reading, from ``start``: every object and event the
    world makes is then later than the one before, so ``created`` ranges split its history cleanly."""
    readings = itertools.count(start, step)
    return lambda: next(readings)


@dataclass
class Fault:
    """The next ``remaining`` requests whose path contains ``path_contains`` are answered ``status``."""

    path_contains: str
    status: int
    remaining: int
    retry_after: int | None
