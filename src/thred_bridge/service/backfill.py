"""Backfill: a processor's history → the inbox, the same path as webhooks (same dedupe, same records).

The range is cut into time slices per kind of object (charges, refunds, disputes, payouts, …); slices run
side by side, every API page through one shared rate limit. After each page the slice's cursor is saved,
so a killed backfill resumes where it stopped; a page fetched twice only re-offers events the inbox
already holds (their ids are stable: ``bf_<object id>``). A 429 or an outage waits (honouring
``Retry-After``) and tries the same page again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from thred_bridge.domain.queue import Connection, HistoryPage
from thred_bridge.domain.retry import backoff
from thred_bridge.errors import TRANSIENT, BridgeError, retry_after_of
from thred_bridge.service.ports import Clock, Store

log = structlog.get_logger("thred_bridge.backfill")


class HistorySource(Protocol):
    """A processor that can list its history page by page.

    Optionally it sets ``history_sliceable = False`` when its lists cannot be filtered by date (Mollie: newest
    first, no date filter, so every time slice would page from the newest again): each kind is then one
    slice over the whole range, whatever ``parts`` the caller asks for (:func:`parts_for`)."""

    history_kinds: Sequence[str]

    async def history_page(
        self, connection: Connection, kind: str, since: datetime, until: datetime, cursor: str | None
    ) -> HistoryPage: ...


class Limiter(Protocol):
    """A shared rate limit (aiolimiter's AsyncLimiter): each page waits for a slot."""

    async def __aenter__(self) -> None: ...
    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Slice:
    kind: str
    since: datetime
    until: datetime

    @property
    def name(self) -> str:
        return f"{self.kind}:{_stamp(self.since)}:{_stamp(self.until)}"


@dataclass
class Progress:
    """What the backfill has done so far; ``on_change`` is called after every page."""

    slices: int = 0
    slices_done: int = 0
    seen: int = 0
    stored: int = 0
    requests: int = 0
    waits: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%SZ")


def parts_for(source: object, parts: int) -> int:
    """``parts`` for a source that lists by date; 1 for one that declares ``history_sliceable = False``."""
    return parts if getattr(source, "history_sliceable", True) else 1


def slices(kinds: Sequence[str], since: datetime, until: datetime, *, parts: int) -> list[Slice]:
    """Each kind's range cut into ``parts`` equal time slices (at least one second each)."""
    if until <= since:
        raise ValueError("the range is empty: --until must be after --since")
    step = max((until - since) / max(parts, 1), timedelta(seconds=1))
    out = []
    for kind in kinds:
        start = since
        while start < until:
            end = min(start + step, until)
            out.append(Slice(kind, start, end))
            start = end
    return out


class Backfill:
    """Runs the slices of one connection's backfill, resumably."""

    def __init__(
        self,
        store: Store,
        source: HistorySource,
        clock: Clock,
        limiter: Limiter,
        *,
        parallel: int = 4,
        max_waits: int = 20,
        on_change: Callable[[Progress], None] = lambda _p: None,
    ) -> None:
        self._store = store
        self._source = source
        self._clock = clock
        self._limiter = limiter
        self._parallel = parallel
        self._max_waits = max_waits
        self._on_change = on_change
        self.progress = Progress()

    async def run(self, connection: Connection, since: datetime, until: datetime, *, parts: int = 8) -> Progress:
        todo = slices(self._source.history_kinds, since, until, parts=parts_for(self._source, parts))
        self.progress.slices = len(todo)
        queue: asyncio.Queue[Slice] = asyncio.Queue()
        for piece in todo:
            queue.put_nowait(piece)

        async def lane() -> None:
            while not queue.empty():
                await self._slice(connection, queue.get_nowait())

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._parallel, len(todo))):
                group.create_task(lane())
        return self.progress

    async def _slice(self, connection: Connection, piece: Slice) -> None:
        async with self._store.transaction() as tx:
            cursor, done = await tx.cursor(connection.id, piece.name)
        if done:
            self._finished(piece)
            return
        while True:
            page = await self._page(connection, piece, cursor)
            new = await self._store.add_event_batches(
                [(connection.id, connection.processor, page.notices)], self._clock()
            )
            cursor = page.cursor
            async with self._store.transaction() as tx:
                await tx.save_cursor(connection.id, piece.name, cursor, len(page.notices), self._clock())
            self.progress.seen += len(page.notices)
            self.progress.stored += len(new)
            self.progress.by_kind[piece.kind] = self.progress.by_kind.get(piece.kind, 0) + len(page.notices)
            self._on_change(self.progress)
            if cursor is None:
                self._finished(piece)
                return

    def _finished(self, piece: Slice) -> None:
        self.progress.slices_done += 1
        self._on_change(self.progress)
        log.info("backfill.slice_done", slice=piece.name)

    async def _page(self, connection: Connection, piece: Slice, cursor: str | None) -> HistoryPage:
        waits = 0
        while True:
            async with self._limiter:
                self.progress.requests += 1
                try:
                    return await self._source.history_page(connection, piece.kind, piece.since, piece.until, cursor)
                except TRANSIENT as exc:
                    failure: BridgeError = exc
            waits += 1
            self.progress.waits += 1
            if waits > self._max_waits:
                raise failure
            delay = max(retry_after_of(failure) or 0.0, backoff(waits, random.random(), cap=60.0))
            log.info("backfill.wait", slice=piece.name, seconds=round(delay, 2), error=str(failure))
            await asyncio.sleep(delay)
