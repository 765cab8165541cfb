"""Group commit: work that finishes together is written together.

Each caller hands in its item and waits; one flush at a time takes every item handed in meanwhile and writes
them in one transaction. Under load a flush takes many items (a round trip and a commit shared by all), when
idle it takes one, so nobody waits for a batch to fill. A failed flush fails each of its callers with the error,
who handle it as they would their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class GroupCommit(Generic[In, Out]):
    """``flush(items)`` returns one result per item, in order."""

    def __init__(self, flush: Callable[[Sequence[In]], Awaitable[Sequence[Out]]], *, max_items: int = 256) -> None:
        self._flush = flush
        self._max_items = max_items
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.flushes = 0  # how many transactions: items ÷ flushes is the batch the load made

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._run())
        return await asyncio.shield(future)  # a caller cancelled after handing in still has its item written

    async def settled(self) -> None:
        """Wait until everything handed in has been flushed."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max_items], self._waiting[self._max_items :]
                self.flushes += 1
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled: so are its callers, rather than waiting for ever
                    for _, future in [*batch, *self._waiting]:
                        future.cancel()
                    self._waiting = []
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flusher = None
