"""The base of a store transaction: the open connection and the dialect's statement helpers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from thred_bridge.store.tables import leases

EVENTS_CHANNEL = "bridge_events"  # NOTIFYed (Postgres) as events are queued; every worker LISTENs on both
RECORDS_CHANNEL = "bridge_records"  # ... and as records are


class TxBase:
    """One open transaction. Methods are the store's vocabulary; none of them commits."""

    def __init__(self, conn: AsyncConnection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self._notified: set[str] = set()

    async def notify(self, channel: str) -> None:
        """Postgres: tell the listening processes, when this transaction commits, that work waits on
        ``channel`` (once per transaction; Postgres folds repeats too). SQLite: nothing, workers poll."""
        if self.dialect != "postgresql" or channel in self._notified:
            return
        self._notified.add(channel)
        await self.conn.execute(select(func.pg_notify(channel, "")))

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    async def take_lease(self, connection_id: str, object_key: str, owner: str, now: datetime, until: datetime) -> bool:
        """Hold the lease on ``object_key`` until ``until`` for ``owner``; False while another holds it unexpired.
        Events take one per object (one event of an object handled at a time), records one per invoice while
        they book money out of it."""
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

    def _lock(self, stmt: Any) -> Any:
        return stmt.with_for_update(skip_locked=True) if self.dialect == "postgresql" else stmt
