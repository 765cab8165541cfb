"""Connections: add, look up (with a short cache for the webhook path), list, remove; status and replay."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from thred_bridge.domain.queue import Connection, ConnectionStatus
from thred_bridge.errors import ConfigError, UnknownConnectionError
from thred_bridge.service.ports import Clock, Secrets, Store

PROCESSORS = ("stripe", "adyen", "mollie")


def new_connection_id() -> str:
    return "conn_" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Rotation:
    """What ``secrets rotate`` did: connections re-encrypted under the current key, those already under it,
    and those changed by someone else meanwhile (left for the next run)."""

    rotated: int
    current: int
    changed_meanwhile: int

    @property
    def done(self) -> bool:
        return self.changed_meanwhile == 0


@dataclass(frozen=True, slots=True)
class NewConnection:
    processor: str
    business_id: str
    credentials: Mapping[str, str]
    webhook_secrets: Sequence[str]
    account: str | None = None
    label: str | None = None


class Connections:
    """Reads and writes connections; decrypts secrets only in memory."""

    def __init__(
        self,
        store: Store,
        vault: Secrets,
        clock: Clock,
        *,
        cache_ttl: float = 2.0,
        notes: Callable[[Connection], Sequence[str]] | None = None,
    ) -> None:
        self._notes = notes
        self._store = store
        self._vault = vault
        self._clock = clock
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[float, Connection | None]] = {}

    async def add(self, new: NewConnection) -> Connection:
        if new.processor not in PROCESSORS:
            raise ConfigError(f"unknown processor {new.processor!r}; expected one of {', '.join(PROCESSORS)}")
        if not new.business_id.strip():
            raise ConfigError("a connection needs a Thred business id")
        row = {
            "id": new_connection_id(),
            "processor": new.processor,
            "business_id": new.business_id.strip(),
            "account": new.account,
            "label": new.label,
            "credentials": self._vault.encrypt(orjson.dumps(dict(new.credentials)).decode()),
            "webhook_secrets": self._vault.encrypt(orjson.dumps(list(new.webhook_secrets)).decode()),
            "created_at": self._clock(),
        }
        async with self._store.transaction() as tx:
            await tx.add_connection(row)
            if new.account:
                await tx.requeue_unrouted(new.processor, new.account, self._clock())
        return self._decode(row)

    async def for_account(self, processor: str, account: str) -> Connection | None:
        """The connection that books a Connect account's activity, if one maps it."""
        async with self._store.transaction() as tx:
            row = await tx.connection_for_account(processor, account)
        return None if row is None else self._decode(row._asdict())

    def _decode(self, row: Mapping[str, Any]) -> Connection:
        return Connection(
            id=row["id"],
            processor=row["processor"],
            business_id=row["business_id"],
            account=row["account"],
            label=row["label"],
            credentials=orjson.loads(self._vault.decrypt(row["credentials"])),
            webhook_secrets=tuple(orjson.loads(self._vault.decrypt(row["webhook_secrets"]))),
            created_at=row["created_at"],
            removed_at=row.get("removed_at"),
        )

    async def get(self, connection_id: str, *, include_removed: bool = False) -> Connection:
        async with self._store.transaction() as tx:
            row = await tx.connection_row(connection_id)
        if row is None or (row.removed_at is not None and not include_removed):
            raise UnknownConnectionError(f"no active connection {connection_id!r}")
        return self._decode(row._asdict())

    async def active(self, connection_id: str) -> Connection:
        """The webhook path's lookup: cached for a moment so a burst of deliveries costs one query."""
        now = time.monotonic()
        hit = self._cache.get(connection_id)
        if hit is None or now - hit[0] > self._ttl:
            try:
                found: Connection | None = await self.get(connection_id)
            except UnknownConnectionError:
                found = None
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = (now, found)
            self._cache[connection_id] = hit
        if hit[1] is None:
            raise UnknownConnectionError(f"no active connection {connection_id!r}")
        return hit[1]

    async def all(self, *, include_removed: bool = False) -> list[Connection]:
        async with self._store.transaction() as tx:
            rows = await tx.connection_rows(include_removed=include_removed)
        return [self._decode(r._asdict()) for r in rows]

    async def remove(self, connection_id: str) -> None:
        async with self._store.transaction() as tx:
            removed = await tx.remove_connection(connection_id, self._clock())
        self._cache.pop(connection_id, None)
        if not removed:
            raise UnknownConnectionError(f"no active connection {connection_id!r}")

    async def rotate_secrets(self) -> Rotation:
        """Re-encrypt every connection's stored secrets (removed ones too) under the current key.

        One transaction per connection, each a compare-and-set: stopped at any point, every row still
        decrypts under the current key or a previous one, and running it again finishes the work."""
        async with self._store.transaction() as tx:
            rows = await tx.connection_rows(include_removed=True)
        rotated = current = changed = 0
        for row in rows:
            was = {"credentials": row.credentials, "webhook_secrets": row.webhook_secrets}
            now = {name: self._vault.rotate(token) or token for name, token in was.items()}
            if now == was:
                current += 1
                continue
            async with self._store.transaction() as tx:
                if await tx.replace_connection_secrets(row.id, was, now):
                    rotated += 1
                else:
                    changed += 1
        self._cache.clear()
        return Rotation(rotated, current, changed)

    async def status(self, connection: Connection) -> ConnectionStatus:
        async with self._store.snapshot() as tx:  # one moment: counts and failures agree
            ev = await tx.event_counts(connection.id)
            rec = await tx.record_counts(connection.id)
            oldest = await tx.oldest_waiting(connection.id)
            failures = await tx.failures(connection.id)
        done_waiting = ev.get("done_waiting", 0)
        return ConnectionStatus(
            connection_id=connection.id,
            processor=connection.processor,
            business_id=connection.business_id,
            received=sum(v for k, v in ev.items() if k != "done_waiting"),
            synced=ev.get("done", 0) - done_waiting,
            waiting=ev.get("pending", 0) + ev.get("processing", 0) + done_waiting,
            failed=ev.get("failed", 0),
            ignored=ev.get("ignored", 0),
            records_sent=rec.get("sent", 0),
            records_waiting=rec.get("pending", 0),
            records_failed=rec.get("failed", 0),
            oldest_waiting_at=oldest,
            failures=failures,
            unrouted=ev.get("unrouted", 0),
            records_held=rec.get("held", 0),
            notes=tuple(self._notes(connection)) if self._notes is not None else (),
        )

    async def replay(self, connection_id: str, *, event_id: str | None, failed_only: bool) -> int:
        await self.get(connection_id, include_removed=True)
        async with self._store.transaction() as tx:
            return await tx.replay(connection_id, self._clock(), event_id=event_id, failed_only=failed_only)

    async def mapping(self, connection_id: str) -> list[dict[str, Any]]:
        async with self._store.transaction() as tx:
            rows = await tx.mapping(connection_id)
        return [dict(r._asdict()) for r in rows]


def age_seconds(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else max(0.0, (now - since).total_seconds())
