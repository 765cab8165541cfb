"""Inbox queries: verified events in, claims with per-object leases, and each event's end."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from thred_bridge.domain.queue import ClaimedEvent, Notice
from thred_bridge.store.tables import events, leases
from thred_bridge.store.tx_base import EVENTS_CHANNEL, TxBase

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


class InboxQueries(TxBase):
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
        new = {(r.connection_id, r.event_id) for r in result.all()}
        if new:
            await self.notify(EVENTS_CHANNEL)
        return new

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
            if not await self.take_lease(row.connection_id, row.object_key, owner, now, now + lease):
                continue
            await self.conn.execute(
                update(events)
                .where(events.c.id == row.id)
                .values(status="processing", locked_until=now + lease, locked_by=owner, attempts=events.c.attempts + 1)
            )
            claimed.append(ClaimedEvent(**{**row._asdict(), "attempts": row.attempts + 1}))
        return claimed

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

    async def renew_event(self, event_id: int, owner: str, until: datetime) -> bool:
        """Extend ``owner``'s lease on the event (it is still working on it); False when it lost the lease."""
        row = (
            await self.conn.execute(select(events.c.connection_id, events.c.object_key).where(events.c.id == event_id))
        ).first()
        if row is None:
            return False
        result = await self.conn.execute(
            update(leases)
            .where(
                leases.c.connection_id == row.connection_id,
                leases.c.object_key == row.object_key,
                leases.c.owner == owner,
            )
            .values(expires_at=until)
        )
        if not result.rowcount:
            return False
        await self.conn.execute(
            update(events).where(events.c.id == event_id, events.c.status == "processing").values(locked_until=until)
        )
        return True

    async def unroute_event(self, event_id: int, owner: str, error: str) -> bool:
        """Keep a Connect event for an account no connection maps yet; `requeue_unrouted` wakes it."""
        if not await self._release(event_id, owner):
            return False
        await self.conn.execute(
            update(events)
            .where(events.c.id == event_id)
            .values(status="unrouted", locked_until=None, locked_by=None, last_error=error)
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
            .values(status="pending", next_attempt_at=due, locked_until=None, locked_by=None, last_error=error)
        )
        return True

    async def fail_event(self, event_id: int, owner: str | None, error: str) -> bool:
        if owner is not None and not await self._release(event_id, owner):
            return False
        await self.conn.execute(
            update(events)
            .where(events.c.id == event_id)
            .values(status="failed", locked_until=None, locked_by=None, last_error=error)
        )
        return True
