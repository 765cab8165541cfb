"""SqlStore: every query, for SQLite and Postgres, in SQLAlchemy Core (inbox and outbox queries in their
own modules).

The inbox (``events``) and the outbox (``records``) are queues. A claim is one transaction:
``SELECT … FOR UPDATE SKIP LOCKED`` on Postgres (SQLite has one writer at a time, taken with
``BEGIN IMMEDIATE``), then a lease. Events about one processor object are serialised by a row in
``leases`` whose primary key is the object; a worker that dies leaves leases that expire.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import exists, func, insert, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from thred_bridge.domain.queue import Notice
from thred_bridge.domain.records import Record
from thred_bridge.store.inbox_sql import InboxQueries
from thred_bridge.store.liveness_sql import LivenessQueries
from thred_bridge.store.outbox_sql import OutboxQueries
from thred_bridge.store.sqlite_inbox import SqliteInboxWriter
from thred_bridge.store.tables import connections, cursors, events, records
from thred_bridge.store.tx_base import EVENTS_CHANNEL
from thred_bridge.store.writer_lock import WriterLock

_ADD_EVENTS: dict[str, Any] = {}
log = structlog.get_logger("thred_bridge.store")
# A Postgres transaction that queued at least this many records checks the outbox's planner statistics after
# it commits (see ``SqlStore._refresh_outbox_stats``).
ANALYZE_AFTER = 1_000
_OUTBOX_STATS = (
    "SELECT c.reltuples, s.n_mod_since_analyze FROM pg_class c"
    " JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = 'records'::regclass"
)


class SqlStore:
    """The store over one engine. ``transaction()`` is the only way in."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite allows one writer: queue writers in-process instead of spinning on SQLITE_BUSY.
        self._writer = WriterLock() if self.dialect == "sqlite" else None
        self._inbox_writer: SqliteInboxWriter | None = None

    async def add_event_batches(
        self, batches: Sequence[tuple[str, str, Sequence[Notice]]], now: datetime
    ) -> set[tuple[str, str]]:
        """Store verified deliveries durably, in one transaction; returns the new (connection, event) ids."""
        if self._writer is not None and self.engine.url.database not in (None, "", ":memory:"):
            if self._inbox_writer is None:
                self._inbox_writer = SqliteInboxWriter(Path(str(self.engine.url.database)), self._writer)
            return await self._inbox_writer.add_event_batches(batches, now)
        async with self.transaction() as tx:
            return await tx.add_event_batches(batches, now)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTx]:
        if self._writer is None:
            async with self.engine.begin() as conn:
                tx = SqlTx(conn, self.dialect)
                yield tx
            if tx.queued >= ANALYZE_AFTER:
                await self._refresh_outbox_stats(tx.queued)
            return
        async with self._writer.hold(), self.engine.begin() as conn:
            yield SqlTx(conn, self.dialect)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[SqlTx]:
        """A read-only transaction whose statements all see one moment. On Postgres each statement of a
        READ COMMITTED transaction sees its own, so a status read of events, then records, then failures
        could count an event as done in one and list it as failed in the next (a worker committed between
        them); REPEATABLE READ READ ONLY takes one snapshot for the whole read and never blocks a writer.
        SQLite's transactions (one writer at a time, ``BEGIN IMMEDIATE``) already see one moment."""
        if self._writer is not None:
            async with self.transaction() as tx:
                yield tx
            return
        async with self.engine.begin() as conn:
            await conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield SqlTx(conn, self.dialect)

    async def _refresh_outbox_stats(self, queued: int) -> None:
        """ANALYZE ``records`` and ``record_parents`` when a large plan made their statistics stale: never
        analysed, or changed by half since. Without statistics (autovacuum off, or not yet round: a report
        of 100,000 records is queued in under a minute) Postgres planned each claim's pick as a hash
        anti-join over every parent link and the due window as a bitmap scan of the whole queue: ~200 ms a
        claim at 100,000 pending records instead of ~10 ms, and dispatch ran at a fifth of its speed.
        Its own short transaction, after the commit: the large one holds no ANALYZE lock. Best effort."""
        try:
            async with self.engine.begin() as conn:
                row: Any = (await conn.exec_driver_sql(_OUTBOX_STATS)).first()
                if row is not None and row[0] > 0 and row[1] + queued < row[0] / 2:
                    return
                await conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # e.g. behind autovacuum
                await conn.exec_driver_sql("ANALYZE records, record_parents")
        except DBAPIError as exc:
            log.warning("store.analyze_failed", error=str(exc).splitlines()[0])

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
            await conn.rollback()  # the pool does not reset connections (see schema.async_engine)

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None: no schema yet)."""
        async with self.engine.connect() as conn:
            try:
                row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
            except DBAPIError:
                return None
            finally:
                await conn.rollback()
        return None if row is None else str(row[0])

    async def aclose(self) -> None:
        if self._inbox_writer is not None:
            self._inbox_writer.close()
        await self.engine.dispose()


class SqlTx(InboxQueries, OutboxQueries, LivenessQueries):
    """One open transaction over every table."""

    async def finish_event(
        self, event_id: int, owner: str, now: datetime, planned: Iterable[Record], connection_id: str
    ) -> bool:
        """Event done; its records join the outbox (a record already there is kept as it is)."""
        if not await self._release(event_id, owner):
            return False
        await self.add_records(connection_id, planned, event_id, now)
        await self.conn.execute(
            update(events)
            .where(events.c.id == event_id)
            .values(status="done", processed_at=now, locked_until=None, locked_by=None, last_error=None)
        )
        return True

    # --- connections -------------------------------------------------------------------------------

    async def add_connection(self, row: Mapping[str, Any]) -> None:
        await self.conn.execute(insert(connections).values(**row))

    async def connection_row(self, connection_id: str) -> Row[Any] | None:
        result = await self.conn.execute(select(connections).where(connections.c.id == connection_id))
        return result.first()

    async def connection_for_account(self, processor: str, account: str) -> Any:
        """The active connection that maps a Connect account, if any (the newest wins)."""
        stmt = (
            select(connections)
            .where(
                connections.c.processor == processor,
                connections.c.account == account,
                connections.c.removed_at.is_(None),
            )
            .order_by(connections.c.created_at.desc())
            .limit(1)
        )
        return (await self.conn.execute(stmt)).first()

    async def connection_rows(self, *, include_removed: bool = False) -> Sequence[Any]:
        stmt = select(connections).order_by(connections.c.created_at)
        if not include_removed:
            stmt = stmt.where(connections.c.removed_at.is_(None))
        return (await self.conn.execute(stmt)).all()

    async def remove_connection(self, connection_id: str, now: datetime) -> bool:
        result = await self.conn.execute(
            update(connections)
            .where(connections.c.id == connection_id, connections.c.removed_at.is_(None))
            .values(removed_at=now)
        )
        return bool(result.rowcount)

    async def replace_connection_secrets(
        self, connection_id: str, was: Mapping[str, str], now: Mapping[str, str]
    ) -> bool:
        """Set the encrypted ``credentials`` and ``webhook_secrets`` to ``now`` if they still are ``was``."""
        result = await self.conn.execute(
            update(connections)
            .where(
                connections.c.id == connection_id,
                connections.c.credentials == was["credentials"],
                connections.c.webhook_secrets == was["webhook_secrets"],
            )
            .values(credentials=now["credentials"], webhook_secrets=now["webhook_secrets"])
        )
        return bool(result.rowcount)

    # --- backfill cursors ----------------------------------------------------------------------------

    async def cursor(self, connection_id: str, name: str) -> tuple[str | None, bool]:
        """Where a backfill slice stopped, and whether it is done."""
        row = (
            await self.conn.execute(
                select(cursors.c.position, cursors.c.done).where(
                    cursors.c.connection_id == connection_id, cursors.c.name == name
                )
            )
        ).first()
        return (None, False) if row is None else (row.position, bool(row.done))

    async def save_cursor(self, connection_id: str, name: str, position: str | None, seen: int, now: datetime) -> None:
        stmt = self._insert(cursors).values(
            connection_id=connection_id, name=name, position=position, done=position is None, seen=seen, updated_at=now
        )
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["connection_id", "name"],
                set_={
                    "position": position,
                    "done": position is None,
                    "seen": cursors.c.seen + seen,
                    "updated_at": now,
                },
            )
        )

    # --- operations ----------------------------------------------------------------------------------

    async def replay(self, connection_id: str, now: datetime, *, event_id: str | None, failed_only: bool) -> int:
        """Queue events again (and unstick their failed records). Returns how many events were queued."""
        cond = [events.c.connection_id == connection_id]
        if event_id is not None:
            cond.append(events.c.event_id == event_id)
        if failed_only or event_id is None:
            cond.append(events.c.status == "failed")
        ids = [r.id for r in (await self.conn.execute(select(events.c.id).where(*cond))).all()]
        if not ids:
            return 0
        await self.conn.execute(
            update(events)
            .where(events.c.id.in_(ids))
            .values(status="pending", next_attempt_at=now, locked_until=None, attempts=0)
        )
        await self.conn.execute(
            update(records)
            .where(records.c.event_id.in_(ids), records.c.status == "failed")
            .values(status="pending", next_attempt_at=now, locked_until=None, attempts=0, last_error=None)
        )
        await self.notify(EVENTS_CHANNEL)
        return len(ids)

    async def event_counts(self, connection_id: str) -> dict[str, int]:
        rows = await self.conn.execute(
            select(events.c.status, func.count())
            .where(events.c.connection_id == connection_id)
            .group_by(events.c.status)
        )
        counts = {str(status): int(n) for status, n in rows.all()}
        # a held record waits for another event (the settlement report), not for this one
        unsent = exists(
            select(records.c.id).where(records.c.event_id == events.c.id, records.c.status.not_in(("sent", "held")))
        )
        waiting_done = await self.conn.scalar(
            select(func.count()).where(events.c.connection_id == connection_id, events.c.status == "done", unsent)
        )
        counts["done_waiting"] = int(waiting_done or 0)
        return counts

    async def record_counts(self, connection_id: str) -> dict[str, int]:
        rows = await self.conn.execute(
            select(records.c.status, func.count())
            .where(records.c.connection_id == connection_id)
            .group_by(records.c.status)
        )
        return {str(status): int(n) for status, n in rows.all()}

    async def oldest_waiting(self, connection_id: str) -> datetime | None:
        oldest_event = await self.conn.scalar(
            select(func.min(events.c.received_at)).where(
                events.c.connection_id == connection_id, events.c.status.in_(("pending", "processing"))
            )
        )
        oldest_record = await self.conn.scalar(
            select(func.min(records.c.created_at)).where(
                records.c.connection_id == connection_id, records.c.status == "pending"
            )
        )
        found = [t for t in (oldest_event, oldest_record) if t is not None]
        return min(found) if found else None

    async def failures(self, connection_id: str, limit: int = 20) -> list[tuple[str, str, str]]:
        rows = await self.conn.execute(
            select(events.c.event_id, events.c.event_type, events.c.last_error)
            .where(events.c.connection_id == connection_id, events.c.status == "failed")
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        return [(r.event_id, r.event_type, r.last_error or "") for r in rows.all()]

    async def mapping(self, connection_id: str) -> Sequence[Any]:
        """Every record of a connection: kind, external id, status, Thred id, last error and what was beyond
        the refundable (for `show`, `reconcile` and tests)."""
        rows = await self.conn.execute(
            select(
                records.c.kind,
                records.c.external_id,
                records.c.status,
                records.c.thred_id,
                records.c.last_error,
                records.c.excess_cents,
            )
            .where(records.c.connection_id == connection_id)
            .order_by(records.c.id)
        )
        return rows.all()


__all__ = ["SqlStore", "SqlTx"]
