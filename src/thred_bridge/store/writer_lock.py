"""SQLite's one writer, shared in-process: the webhook path goes first.

SQLite lets one transaction write at a time, so the process queues its writers instead of spinning on
SQLITE_BUSY. A plain FIFO lock put a webhook's insert behind every worker transaction already queued
(claims, retries, a settlement report's outbox parts), and a processor's delivery waited seconds for work
that can wait. Here an ``urgent`` holder (the inbox's group commit) is handed the lock as soon as the current
holder lets go, ahead of every ordinary waiter; ordinary waiters keep their order among themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class WriterLock:
    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @property
    def locked(self) -> bool:
        return self._held

    @contextlib.asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if not self._held and not self._urgent and not self._normal:
            self._held = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append(future)
        try:
            await future  # the lock is handed over held: ``_held`` stays True for this caller
        except BaseException:
            if future.done() and not future.cancelled():
                self._release()  # handed the lock as it gave up: pass it on
            raise

    def _release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                future = queue.popleft()
                if not future.done():  # a waiter cancelled meanwhile is skipped
                    future.set_result(None)
                    return
        self._held = False
