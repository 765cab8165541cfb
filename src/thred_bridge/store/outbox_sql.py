"""Outbox queries: records queued with their parents, claimed when ready, sent, retried or failed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, delete, exists, insert, or_, select, update
from sqlalchemy.engine import Row

from thred_bridge.domain.queue import ClaimedRecord
from thred_bridge.domain.records import Lookup, Record
from thred_bridge.store.tables import connections, events, record_parents, records
from thred_bridge.store.tx_base import TxBase

LOOKUPS = "$lookups"


class OutboxQueries(TxBase):
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


def _stored_body(record: Record) -> dict[str, Any]:
    """The body as stored: Thred's fields, plus the lookups under a key Thred never sees."""
    if not record.lookups:
        return dict(record.body)
    specs = {path: [spec.kind, spec.thred_id, spec.field] for path, spec in record.lookups.items()}
    return {**record.body, LOOKUPS: specs}
