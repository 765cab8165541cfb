"""Verified delivery → inbox, committed before the caller acknowledges.

Deliveries arriving together share one transaction (group commit): each request waits for the
commit that holds its rows, so nothing is acknowledged before it is durable, and a burst costs one
commit instead of one per request. A failed commit fails every request in it (the processor retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from thred_bridge.domain.queue import Notice
from thred_bridge.service.ports import Clock, Store, Wakeup


@dataclass(slots=True)
class _Pending:
    connection_id: str
    processor: str
    notices: Sequence[Notice]
    done: asyncio.Future[int]


class Inbox:
    """Adds verified notices to the inbox, batching concurrent callers into one commit."""

    def __init__(self, store: Store, clock: Clock, wakeup: Wakeup | None = None, *, max_batch: int = 256) -> None:
        self._store = store
        self._clock = clock
        self._wakeup = wakeup
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None

    async def add(self, connection_id: str, processor: str, notices: Sequence[Notice]) -> int:
        """Store ``notices``; returns how many were new (duplicates are no-ops). Durable on return."""
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._commit_loop(self._queue), name="inbox-group-commit")
        assert self._queue is not None
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(connection_id, processor, notices, done))
        return await done

    async def _commit_loop(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                counts = await self._commit(batch)
            except Exception as exc:  # every waiter gets the failure; the loop goes on
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                continue
            for item, count in zip(batch, counts, strict=True):
                if not item.done.done():
                    item.done.set_result(count)
            if self._wakeup is not None and any(counts):
                self._wakeup.set()

    async def _commit(self, batch: Sequence[_Pending]) -> list[int]:
        now = self._clock()
        new = await self._store.add_event_batches([(p.connection_id, p.processor, p.notices) for p in batch], now)
        counts = []
        for p in batch:  # a duplicate within one batch counts once, for the first delivery that carried it
            mine = {(p.connection_id, n.event_id) for n in p.notices} & new
            new -= mine
            counts.append(len(mine))
        return counts

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
