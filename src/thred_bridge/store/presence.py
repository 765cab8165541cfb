"""How a process says it is alive, per dialect, and how it hears that work is waiting.

- :class:`PostgresPresence` keeps one connection of its own for the process's life. On it the process takes a
  session advisory lock as it registers (in the transaction that inserts its row, so no one ever sees the row
  without the lock), beats (``heartbeat_at = now()``: the database's clock, one for every host), and LISTENs on
  the channels the store NOTIFYs when events or records are queued. When the process dies, its backend goes and
  Postgres frees the lock: the living see that at once (see ``liveness_sql``).
- :class:`SqlitePresence` registers and beats through the store; one host shares the file, so a dead process is
  found by its pid or by a stale heartbeat, and other processes' work is found by polling.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

import psycopg
from sqlalchemy.engine import make_url

from thred_bridge.domain.queue import ProcessInfo
from thred_bridge.store.liveness_sql import LOCK_SPACE
from thred_bridge.store.sql import SqlStore
from thred_bridge.store.tx_base import EVENTS_CHANNEL, RECORDS_CHANNEL

_REGISTER = (
    "INSERT INTO processes (id, lock_key, host, pid, role, started_at, heartbeat_at)"
    " VALUES (%s, %s, %s, %s, %s, now(), now())"
)
_BEAT = "UPDATE processes SET heartbeat_at = now() WHERE id = %s AND stopped_at IS NULL"


class SqlitePresence:
    """Registration and heartbeats through the store; no notifications (other processes are polled)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def register(self, process: ProcessInfo, now: datetime) -> None:
        async with self._store.transaction() as tx:
            await tx.register_process(process.id, None, process.host, process.pid, process.role, now)

    async def beat(self, process_id: str, now: datetime) -> bool:
        async with self._store.transaction() as tx:
            return await tx.beat(process_id, now)

    async def wait(self, timeout: float) -> frozenset[str]:
        await asyncio.sleep(timeout)
        return frozenset()

    async def aclose(self) -> None:
        return None


class PostgresPresence:
    """The process's own Postgres session: its advisory lock, its heartbeat, its LISTEN."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def register(self, process: ProcessInfo, now: datetime) -> None:
        """Connect, take a free lock key, insert the row, LISTEN. A new session each time: a process that was
        declared dead registers again under a new id."""
        del now  # the database's clock
        await self.aclose()
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        try:
            while True:
                key = random.randint(1, 2**31 - 1)
                async with conn.transaction():
                    cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_SPACE, key))
                    row = await cur.fetchone()
                    if row is None or not row[0]:
                        continue  # a living process holds that key
                    await conn.execute(_REGISTER, (process.id, key, process.host, process.pid, process.role))
                break
            await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
            await conn.execute(f"LISTEN {RECORDS_CHANNEL}")
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def beat(self, process_id: str, now: datetime) -> bool:
        del now
        cur = await self._session().execute(_BEAT, (process_id,))
        return cur.rowcount == 1

    async def wait(self, timeout: float) -> frozenset[str]:
        """The channels notified within ``timeout`` seconds (returns at the first notification)."""
        channels: set[str] = set()
        async for notice in self._session().notifies(timeout=timeout, stop_after=1):
            channels.add(notice.channel)
        return frozenset(channels)

    def _session(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            raise psycopg.OperationalError("the process's own database session is closed")
        return self._conn

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()  # Postgres frees the lock with the session


def presence_for(store: SqlStore, database_url: str) -> SqlitePresence | PostgresPresence:
    return PostgresPresence(database_url) if store.dialect == "postgresql" else SqlitePresence(store)
