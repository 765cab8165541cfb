"""SqlStore: every query, for SQLite and Postgres, in SQLAlchemy Core.

The inbox (``events``) and the outbox (``records``) are queues. A claim is one transaction:
``SELECT … FOR UPDATE SKIP LOCKED`` on Postgres (SQLite has one writer at a time, taken with
``BEGIN IMMEDIATE``), then a lease. Events about one processor object are serialised by a row in
``leases`` whose primary key is the object; a worker that dies leaves leases that expire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from thred_bridge.domain.queue import ClaimedEvent, ClaimedRecord, Notice
from thred_bridge.domain.records import Lookup, Record, Ref
from thred_bridge.store.sqlite_inbox import SqliteInboxWriter
from thred_bridge.store.tables import connections, cursors, events, leases, record_parents, records

_ADD_EVENTS: dict[str, Any] = {}

EVENT_COLUMNS = (
    events.c.id,
    events.c.connection_id,
    events.c.processor,
    events.c.event_id,
    events.c.event_type,
    events.c.object_key,
    events.c.account,
    events.c.body,
    events.c.attempts,
)


class SqlStore:
    """The store over one engine. ``transaction()`` is the only way in."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite allows one writer: queue writers in-process instead of spinning on SQLITE_BUSY.
        self._writer = asyncio.Lock() if self.dialect == "sqlite" else None
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
                yield SqlTx(conn, self.dialect)
            return
        async with self._writer, self.engine.begin() as conn:
            yield SqlTx(conn, self.dialect)

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


class SqlTx:
    """One open transaction. Methods are the store's vocabulary; none of them commits."""

    def __init__(self, conn: AsyncConnection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    def _lock(self, stmt: Any) -> Any:
        return stmt.with_for_update(skip_locked=True) if self.dialect == "postgresql" else stmt

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

    # --- inbox ----------------------------------------------------------------------------------------

    async def add_events(self, connection_id: str, processor: str, notices: Sequence[Notice], now: datetime) -> int:
        """Insert verified events; a duplicate event id is a no-op. Returns how many were new."""
        new = await self.add_event_batches([(connection_id, processor, notices)], now)
        return len(new)

    async def add_event_batches(
        self, batches: Sequence[tuple[str, str, Sequence[Notice]]], now: datetime
    ) -> set[tuple[str, str]]:
        """Insert many deliveries' events in one statement (group commit); returns the (connection id,
        event id) pairs that were new. The statement is built once, so its compiled form is cached."""
        rows = [
            {
                "connection_id": connection_id,
                "processor": processor,
                "event_id": n.event_id,
                "event_type": n.event_type,
                "object_key": n.object_key,
                "account": n.account,
                "body": n.body,
                "received_at": now,
                "status": "pending" if n.handled else "ignored",
                "attempts": 0,
                "next_attempt_at": now,
            }
            for connection_id, processor, notices in batches
            for n in notices
        ]
        if not rows:
            return set()
        stmt = self._add_events_stmt()
        result = await self.conn.execute(stmt, rows)
        return {(r.connection_id, r.event_id) for r in result.all()}

    def _add_events_stmt(self) -> Any:
        stmt = _ADD_EVENTS.get(self.dialect)
        if stmt is None:
            stmt = (
                self._insert(events)
                .on_conflict_do_nothing(index_elements=["connection_id", "event_id"])
                .returning(events.c.connection_id, events.c.event_id)
            )
            _ADD_EVENTS[self.dialect] = stmt
        return stmt

    async def claim_events(self, owner: str, now: datetime, limit: int, lease: timedelta) -> list[ClaimedEvent]:
        """Due events, at most one per processor object, leased to ``owner``."""
        due = or_(
            and_(events.c.status == "pending", events.c.next_attempt_at <= now),
            and_(events.c.status == "processing", events.c.locked_until < now),
        )
        stmt = self._lock(select(*EVENT_COLUMNS).where(due).order_by(events.c.id).limit(limit * 4))
        candidates = (await self.conn.execute(stmt)).all()
        claimed: list[ClaimedEvent] = []
        for row in candidates:
            if len(claimed) >= limit:
                break
            if not await self._take_lease(row.connection_id, row.object_key, owner, now, now + lease):
                continue
            await self.conn.execute(
                update(events)
                .where(events.c.id == row.id)
                .values(status="processing", locked_until=now + lease, attempts=events.c.attempts + 1)
            )
            claimed.append(ClaimedEvent(**{**row._asdict(), "attempts": row.attempts + 1}))
        return claimed

    async def _take_lease(
        self, connection_id: str, object_key: str, owner: str, now: datetime, until: datetime
    ) -> bool:
        if self.dialect == "postgresql":
            # Never wait on another claimer's uncommitted lease (that waits, and can deadlock): a
            # transaction-scoped advisory lock on the object says "someone is taking it right now".
            key = f"{connection_id}/{object_key}"
            if not await self.conn.scalar(select(func.pg_try_advisory_xact_lock(func.hashtext(key)))):
                return False
        stmt = (
            self._insert(leases)
            .values(connection_id=connection_id, object_key=object_key, owner=owner, expires_at=until)
            .on_conflict_do_update(
                index_elements=["connection_id", "object_key"],
                set_={"owner": owner, "expires_at": until},
                where=leases.c.expires_at < now,
            )
            .returning(leases.c.owner)
        )
        return (await self.conn.execute(stmt)).first() is not None

    async def _release(self, event_id: int, owner: str) -> bool:
        """Drop the event's lease; False when ``owner`` no longer holds it (it expired and moved on)."""
        row = (
            await self.conn.execute(select(events.c.connection_id, events.c.object_key).where(events.c.id == event_id))
        ).first()
        if row is None:
            return False
        result = await self.conn.execute(
            delete(leases).where(
                leases.c.connection_id == row.connection_id,
                leases.c.object_key == row.object_key,
                leases.c.owner == owner,
            )
        )
        return bool(result.rowcount)

    async def finish_event(
        self, event_id: int, owner: str, now: datetime, planned: Sequence[Record], connection_id: str
    ) -> bool:
        """Event done; its records join the outbox (a record already there is kept as it is)."""
        if not await self._release(event_id, owner):
            return False
        await self.add_records(connection_id, planned, event_id, now)
        await self.conn.execute(
            update(events)
            .where(events.c.id == event_id)
            .values(status="done", processed_at=now, locked_until=None, last_error=None)
        )
        return True

    async def unroute_event(self, event_id: int, owner: str, error: str) -> bool:
        """Keep a Connect event for an account no connection maps yet; `requeue_unrouted` wakes it."""
        if not await self._release(event_id, owner):
            return False
        await self.conn.execute(
            update(events).where(events.c.id == event_id).values(status="unrouted", locked_until=None, last_error=error)
        )
        return True

    async def requeue_unrouted(self, processor: str, account: str, now: datetime) -> int:
        """A connection now maps ``account``: its waiting Connect events are processed."""
        result = await self.conn.execute(
            update(events)
            .where(events.c.processor == processor, events.c.account == account, events.c.status == "unrouted")
            .values(status="pending", next_attempt_at=now, last_error=None)
            .returning(events.c.id)
        )
        return len(result.all())

    async def retry_event(self, event_id: int, owner: str, due: datetime, error: str) -> bool:
        if not await self._release(event_id, owner):
            return False
        await self.conn.execute(
            update(events)
            .where(events.c.id == event_id)
            .values(status="pending", next_attempt_at=due, locked_until=None, last_error=error)
        )
        return True

    async def fail_event(self, event_id: int, owner: str | None, error: str) -> bool:
        if owner is not None and not await self._release(event_id, owner):
            return False
        await self.conn.execute(
            update(events).where(events.c.id == event_id).values(status="failed", locked_until=None, last_error=error)
        )
        return True

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

    # --- outbox -------------------------------------------------------------------------------------

    async def add_records(
        self, connection_id: str, planned: Iterable[Record], event_id: int | None, now: datetime
    ) -> None:
        """Queue records. One already there is kept as it is, unless it is updatable (a payout) and the new
        body differs: then the new body replaces it and it is sent again."""
        for record in planned:
            values = {
                "connection_id": connection_id,
                "kind": record.kind,
                "external_id": record.external_id,
                "body": orjson.dumps(_stored_body(record), option=orjson.OPT_SORT_KEYS).decode(),
                "parents": orjson.dumps({k: [r.kind, r.external_id] for k, r in record.parents.items()}).decode(),
                "parent_path": (
                    orjson.dumps([record.parent_path.kind, record.parent_path.external_id]).decode()
                    if record.parent_path
                    else None
                ),
                "idempotency_key": record.idempotency_key,
                "op": record.op,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "event_id": event_id,
                "created_at": now,
            }
            stmt = self._insert(records).values(**values)
            if record.updatable:
                excluded = stmt.excluded
                stmt = stmt.on_conflict_do_update(
                    index_elements=["connection_id", "kind", "external_id"],
                    set_={
                        "body": excluded.body,
                        "parents": excluded.parents,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": excluded.next_attempt_at,
                        "last_error": None,
                        "event_id": excluded.event_id,
                    },
                    where=records.c.body != excluded.body,
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=["connection_id", "kind", "external_id"])
            inserted = (await self.conn.execute(stmt.returning(records.c.id))).first()
            if inserted is None:
                continue
            refs = {(r.kind, r.external_id) for r in record.parents.values()}
            if record.parent_path:
                refs.add((record.parent_path.kind, record.parent_path.external_id))
            await self.conn.execute(delete(record_parents).where(record_parents.c.record_id == inserted.id))
            if refs:
                await self.conn.execute(
                    insert(record_parents),
                    [
                        {"record_id": inserted.id, "connection_id": connection_id, "kind": k, "external_id": e}
                        for k, e in sorted(refs)
                    ],
                )

    def _ready(self) -> Any:
        """No parent of the record is missing or unsent."""
        parent = records.alias("parent")
        unsent_parent = (
            select(record_parents.c.record_id)
            .select_from(
                record_parents.outerjoin(
                    parent,
                    and_(
                        parent.c.connection_id == record_parents.c.connection_id,
                        parent.c.kind == record_parents.c.kind,
                        parent.c.external_id == record_parents.c.external_id,
                    ),
                )
            )
            .where(
                record_parents.c.record_id == records.c.id,
                # A delete of something never queued has nothing to wait for: it is a no-op.
                or_(and_(parent.c.id.is_(None), records.c.op != "delete"), parent.c.status != "sent"),
            )
        )
        return ~exists(unsent_parent)

    async def claim_records(
        self, owner: str, now: datetime, limit: int, lease: timedelta, *, ids: Sequence[int] | None = None
    ) -> list[ClaimedRecord]:
        """Due records whose parents are all sent, leased until ``now + lease``.

        ``owner`` is accepted for symmetry with events; a record's lease is its ``locked_until``.
        """
        del owner
        free = or_(records.c.locked_until.is_(None), records.c.locked_until < now)
        where = [records.c.status == "pending", records.c.next_attempt_at <= now, free, self._ready()]
        if ids is not None:
            where.append(records.c.id.in_(ids))
        stmt = self._lock(select(records.c.id).where(*where).order_by(records.c.id).limit(limit))
        picked = [r.id for r in (await self.conn.execute(stmt)).all()]
        if not picked:
            return []
        await self.conn.execute(
            update(records)
            .where(records.c.id.in_(picked))
            .values(locked_until=now + lease, attempts=records.c.attempts + 1)
        )
        rows = (
            await self.conn.execute(
                select(records, connections.c.business_id)
                .join(connections, connections.c.id == records.c.connection_id)
                .where(records.c.id.in_(picked))
                .order_by(records.c.id)
            )
        ).all()
        return [await self._claimed(row) for row in rows]

    async def _claimed(self, row: Row[Any]) -> ClaimedRecord:
        parents: dict[str, list[str]] = orjson.loads(row.parents)
        body = orjson.loads(row.body)
        lookups = {path: Lookup(*spec) for path, spec in body.pop(LOOKUPS, {}).items()}
        parent_path = orjson.loads(row.parent_path) if row.parent_path else None
        wanted = {(k, e) for k, e in parents.values()}
        if parent_path:
            wanted.add((parent_path[0], parent_path[1]))
        ids = await self._thred_ids(row.connection_id, wanted)
        return ClaimedRecord(
            id=row.id,
            connection_id=row.connection_id,
            business_id=row.business_id,
            kind=row.kind,
            external_id=row.external_id,
            body=body,
            lookups=lookups,
            resolved={path: ids[(k, e)] for path, (k, e) in parents.items() if (k, e) in ids},
            parent_id=ids.get((parent_path[0], parent_path[1])) if parent_path else None,
            idempotency_key=row.idempotency_key,
            op=row.op,
            attempts=row.attempts + 1,
            event_id=row.event_id,
        )

    async def _thred_ids(self, connection_id: str, refs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        if not refs:
            return {}
        cond = or_(*(and_(records.c.kind == k, records.c.external_id == e) for k, e in refs))
        rows = (
            await self.conn.execute(
                select(records.c.kind, records.c.external_id, records.c.thred_id).where(
                    records.c.connection_id == connection_id, records.c.status == "sent", cond
                )
            )
        ).all()
        return {(r.kind, r.external_id): r.thred_id for r in rows}

    async def record_sent(self, record_id: int, thred_id: str | None, now: datetime) -> list[int]:
        """Mark sent; returns the ids of children that became ready."""
        row = (
            await self.conn.execute(
                update(records)
                .where(records.c.id == record_id)
                .values(status="sent", thred_id=thred_id, sent_at=now, locked_until=None, last_error=None)
                .returning(records.c.connection_id, records.c.kind, records.c.external_id)
            )
        ).first()
        if row is None:
            return []
        children = await self.conn.execute(
            select(record_parents.c.record_id).where(
                record_parents.c.connection_id == row.connection_id,
                record_parents.c.kind == row.kind,
                record_parents.c.external_id == row.external_id,
            )
        )
        return [c.record_id for c in children.all()]

    async def retry_record(self, record_id: int, due: datetime, error: str) -> None:
        await self.conn.execute(
            update(records)
            .where(records.c.id == record_id)
            .values(next_attempt_at=due, locked_until=None, last_error=error)
        )

    async def fail_record(self, record_id: int, error: str) -> None:
        """The record failed for good, and so does every record waiting on it (they cannot be sent),
        each with the event that asked for it, so `status` shows them and `replay` requeues them."""
        queue: list[tuple[int, str]] = [(record_id, error)]
        while queue:
            current, message = queue.pop()
            row = (
                await self.conn.execute(
                    update(records)
                    .where(records.c.id == current, records.c.status != "sent")
                    .values(status="failed", locked_until=None, last_error=message)
                    .returning(records.c.event_id, records.c.connection_id, records.c.kind, records.c.external_id)
                )
            ).first()
            if row is None:
                continue
            if row.event_id is not None:  # an event keeps its first (root-cause) error
                await self.conn.execute(
                    update(events)
                    .where(events.c.id == row.event_id, events.c.status != "failed")
                    .values(status="failed", locked_until=None, last_error=message)
                )
            children = await self.conn.execute(
                select(record_parents.c.record_id).where(
                    record_parents.c.connection_id == row.connection_id,
                    record_parents.c.kind == row.kind,
                    record_parents.c.external_id == row.external_id,
                )
            )
            blocked = f"waiting on {row.kind} {row.external_id}, which failed: {error}"
            queue.extend((child.record_id, blocked) for child in children.all())

    async def release_record(self, record_id: int) -> None:
        """Give back a claim without counting an attempt (the worker is stopping)."""
        await self.conn.execute(
            update(records).where(records.c.id == record_id).values(locked_until=None, attempts=records.c.attempts - 1)
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
        return len(ids)

    async def event_counts(self, connection_id: str) -> dict[str, int]:
        rows = await self.conn.execute(
            select(events.c.status, func.count())
            .where(events.c.connection_id == connection_id)
            .group_by(events.c.status)
        )
        counts = {str(status): int(n) for status, n in rows.all()}
        unsent = exists(select(records.c.id).where(records.c.event_id == events.c.id, records.c.status != "sent"))
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
        """Every record of a connection: kind, external id, status, Thred id (for `show` and tests)."""
        rows = await self.conn.execute(
            select(
                records.c.kind,
                records.c.external_id,
                records.c.status,
                records.c.thred_id,
                records.c.last_error,
            )
            .where(records.c.connection_id == connection_id)
            .order_by(records.c.id)
        )
        return rows.all()


LOOKUPS = "$lookups"


def _stored_body(record: Record) -> dict[str, Any]:
    """The body as stored: Thred's fields, plus the lookups under a key Thred never sees."""
    if not record.lookups:
        return dict(record.body)
    specs = {path: [spec.kind, spec.thred_id, spec.field] for path, spec in record.lookups.items()}
    return {**record.body, LOOKUPS: specs}


__all__ = ["Ref", "SqlStore", "SqlTx"]
