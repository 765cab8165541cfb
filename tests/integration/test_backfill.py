"""The backfill machinery over a real store: slices, resumable cursors, rate-limit waits, dedupe."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from aiolimiter import AsyncLimiter

from thred_bridge.domain.queue import Connection, HistoryPage, Notice
from thred_bridge.errors import ProcessorUnavailableError
from thred_bridge.service.backfill import Backfill, parts_for, slices
from thred_bridge.store.sql import SqlStore

pytestmark = pytest.mark.anyio
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 2, 1, tzinfo=UTC)
CONN = Connection("conn_bf", "stripe", "biz", None, None, {}, (), SINCE)


class PagedHistory:
    """A processor's list endpoint as the backfill sees it: objects by creation time, pages of ``size``."""

    history_kinds: Sequence[str] = ("charges", "refunds")

    def __init__(self, count: int, size: int = 7) -> None:
        step = (UNTIL - SINCE) / count
        self.objects = {
            kind: [(f"{kind[:2]}_{n}", SINCE + step * n) for n in range(count)] for kind in self.history_kinds
        }
        self.size = size
        self.calls = 0
        self.fail_at: set[int] = set()  # call numbers that answer 429
        self.crash_at: int | None = None  # call number that kills the run

    async def history_page(
        self,
        connection: Connection,  # noqa: ARG002 - one fake source serves one connection
        kind: str,
        since: datetime,
        until: datetime,
        cursor: str | None,
    ) -> HistoryPage:
        self.calls += 1
        if self.calls == self.crash_at:
            raise RuntimeError("the process died here")
        if self.calls in self.fail_at:
            raise ProcessorUnavailableError("rate limited", status=429, retry_after=0.01)
        inside = [o for o, at in self.objects[kind] if since <= at < until]
        start = 0 if cursor is None else inside.index(cursor) + 1
        page = inside[start : start + self.size]
        notices = [Notice(f"bf_{o}", f"backfill.{kind}", o, b"{}") for o in page]
        more = start + self.size < len(inside)
        return HistoryPage(notices, page[-1] if more else None)


async def _stored(store: SqlStore) -> int:
    async with store.transaction() as tx:
        return sum((await tx.event_counts(CONN.id)).values()) - (await tx.event_counts(CONN.id)).get("done_waiting", 0)


async def _add_connection(store: SqlStore) -> None:
    async with store.transaction() as tx:
        row = {"id": CONN.id, "processor": "stripe", "business_id": "biz", "account": None, "label": None}
        await tx.add_connection({**row, "credentials": "x", "webhook_secrets": "x", "created_at": SINCE})


def test_slices_cover_the_range_without_overlap() -> None:
    parts = slices(["charges"], SINCE, UNTIL, parts=5)
    assert parts[0].since == SINCE
    assert parts[-1].until == UNTIL
    assert all(a.until == b.since for a, b in itertools.pairwise(parts))
    with pytest.raises(ValueError, match="empty"):
        slices(["charges"], UNTIL, SINCE, parts=2)


async def test_backfill_stores_every_object_once_and_waits_out_429(store: SqlStore) -> None:
    await _add_connection(store)
    source = PagedHistory(100)
    source.fail_at = {3, 4, 9}
    seen: list[int] = []
    backfill = Backfill(store, source, lambda: UNTIL, AsyncLimiter(1000, 1), parallel=3,
                        on_change=lambda p: seen.append(p.seen))  # fmt: skip
    progress = await backfill.run(CONN, SINCE, UNTIL, parts=4)
    assert progress.seen == progress.stored == 200
    assert progress.waits == 3
    assert progress.slices_done == progress.slices == 8
    assert seen == sorted(seen)
    assert await _stored(store) == 200
    again = await Backfill(store, PagedHistory(100), lambda: UNTIL, AsyncLimiter(1000, 1)).run(
        CONN, SINCE, UNTIL, parts=4
    )
    assert again.requests == 0  # every slice is marked done: nothing is fetched again


async def test_killed_backfill_resumes_where_it_stopped(store: SqlStore) -> None:
    await _add_connection(store)
    first = PagedHistory(60, size=5)
    first.crash_at = 10
    with pytest.raises(BaseExceptionGroup):
        await Backfill(store, first, lambda: UNTIL, AsyncLimiter(1000, 1), parallel=2).run(CONN, SINCE, UNTIL, parts=3)
    before = await _stored(store)
    assert 0 < before < 120
    second = PagedHistory(60, size=5)
    progress = await Backfill(store, second, lambda: UNTIL, AsyncLimiter(1000, 1), parallel=2).run(
        CONN, SINCE, UNTIL, parts=3
    )
    assert await _stored(store) == 120
    assert progress.stored == 120 - before  # nothing stored twice
    assert second.calls < 120 // 5 + 6  # resumed from the saved cursors, not from the start


async def test_endless_outage_gives_up(store: SqlStore) -> None:
    await _add_connection(store)
    source = PagedHistory(10)
    source.fail_at = set(range(1, 100))
    backfill = Backfill(store, source, lambda: UNTIL, AsyncLimiter(1000, 1), parallel=1, max_waits=2)
    with pytest.raises(BaseExceptionGroup) as caught:
        await backfill.run(CONN, SINCE, UNTIL, parts=1)
    assert caught.group_contains(ProcessorUnavailableError)
    assert timedelta(0) < UNTIL - SINCE


class UnslicedHistory(PagedHistory):
    """A list with no date filter (Mollie): every slice would page from the newest, so it asks for none."""

    history_sliceable = False


async def test_a_source_without_a_date_filter_gets_one_slice_per_kind(store: SqlStore) -> None:
    await _add_connection(store)
    assert parts_for(PagedHistory(1), 8) == 8
    assert parts_for(UnslicedHistory(1), 8) == 1
    source = UnslicedHistory(40, size=7)
    progress = await Backfill(store, source, lambda: UNTIL, AsyncLimiter(1000, 1), parallel=4).run(
        CONN, SINCE, UNTIL, parts=8
    )
    assert progress.slices_done == progress.slices == 2  # charges, refunds: one each, whatever `parts` says
    assert progress.seen == progress.stored == 80
    assert source.calls == 2 * 6  # ceil(40 / 7) pages per kind, each read once
