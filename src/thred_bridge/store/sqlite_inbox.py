"""The webhook path's insert on SQLite, run on the event loop with the standard-library driver.

A WAL commit with ``synchronous=NORMAL`` takes microseconds, less than one hop to a driver thread, so
the group commit of deliveries writes directly. It never blocks the loop on a lock: the connection
has no busy timeout, and a database held by another process (a separate worker) is waited for with
``asyncio.sleep``. In-process writers share the store's lock, which hands itself to this insert first.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from thred_bridge.domain.queue import Notice
from thred_bridge.errors import StoreError
from thred_bridge.store.writer_lock import WriterLock

INSERT = (
    "INSERT INTO events (connection_id, processor, event_id, event_type, object_key, account, body, received_at,"
    " status, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)"
    " ON CONFLICT (connection_id, event_id) DO NOTHING RETURNING connection_id, event_id"
)


def sqlite_timestamp(at: datetime) -> str:
    """The text SQLAlchemy stores for a UTC datetime on SQLite, so both writers' rows compare alike."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class SqliteInboxWriter:
    """Inserts verified events in one short transaction per group commit."""

    def __init__(self, path: Path, lock: WriterLock, *, wait_limit: float = 10.0) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=0")
        # Leave WAL checkpoints (page copies, an fsync) to the worker's connections, which checkpoint at
        # SQLite's default 1,000 pages off the loop; this one only past 10,000, when nothing else writes.
        self._conn.execute("PRAGMA wal_autocheckpoint=10000")
        self._lock = lock
        self._wait_limit = wait_limit

    async def add_event_batches(
        self, batches: Sequence[tuple[str, str, Sequence[Notice]]], now: datetime
    ) -> set[tuple[str, str]]:
        at = sqlite_timestamp(now)
        rows = [
            (cid, proc, n.event_id, n.event_type, n.object_key, n.account, n.body, at,
             "pending" if n.handled else "ignored", at)
            for cid, proc, notices in batches
            for n in notices
        ]  # fmt: skip
        deadline = time.monotonic() + self._wait_limit
        delay = 0.0005
        async with self._lock.hold(urgent=True):  # a processor is waiting for the answer: before the worker
            while True:
                try:
                    return self._insert(rows)
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise StoreError(f"the inbox insert failed: {exc}") from exc
                    if time.monotonic() > deadline:
                        raise StoreError(f"the database stayed locked for {self._wait_limit:.0f} s") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _insert(self, rows: Sequence[tuple[object, ...]]) -> set[tuple[str, str]]:
        cursor = self._conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            new: set[tuple[str, str]] = set()
            for row in rows:
                found = cursor.execute(INSERT, row).fetchone()
                if found is not None:
                    new.add((found[0], found[1]))
            cursor.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()
        return new

    def close(self) -> None:
        self._conn.close()
