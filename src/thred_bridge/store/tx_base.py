"""The base of a store transaction: the open connection and the dialect's statement helpers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


class TxBase:
    """One open transaction. Methods are the store's vocabulary; none of them commits."""

    def __init__(self, conn: AsyncConnection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    def _lock(self, stmt: Any) -> Any:
        return stmt.with_for_update(skip_locked=True) if self.dialect == "postgresql" else stmt
