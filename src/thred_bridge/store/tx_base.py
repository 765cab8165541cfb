"""The base of a store transaction: the open connection and the dialect's statement helpers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

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

    def _lock(self, stmt: Any) -> Any:
        return stmt.with_for_update(skip_locked=True) if self.dialect == "postgresql" else stmt
