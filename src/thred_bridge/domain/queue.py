"""The shapes that cross between the service and the store: inbox events, outbox records, connections.

Plain frozen data; the store fills them, the service reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from thred_bridge.domain.records import Lookup

EventStatus = Literal["pending", "processing", "done", "ignored", "failed", "unrouted"]
RecordStatus = Literal["pending", "sent", "failed"]


@dataclass(frozen=True, slots=True)
class Notice:
    """A verified processor event, ready for the inbox. ``handled`` False = stored as ignored."""

    event_id: str
    event_type: str
    object_key: str
    body: bytes
    account: str | None = None
    handled: bool = True


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A serve or worker process as it registers: its id is the owner named by every claim it takes."""

    id: str
    host: str
    pid: int
    role: str  # serve | worker


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """A registered process as the living see it."""

    id: str
    host: str
    pid: int
    role: str
    stale: bool  # its heartbeat is older than the takeover allows
    lock_held: bool | None  # Postgres: whether its session lock is held; None on SQLite


@dataclass(frozen=True, slots=True)
class TakenOver:
    """How many claims of an ended process went back to the queue."""

    events: int
    records: int

    @property
    def total(self) -> int:
        return self.events + self.records


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a processor's list, for the backfill: its objects as inbox notices, and where the next
    page starts (None: the slice is done)."""

    notices: Sequence[Notice]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class Connection:
    """A processor account mapped to one Thred business, with decrypted secrets."""

    id: str
    processor: str
    business_id: str
    account: str | None
    label: str | None
    credentials: Mapping[str, str]
    webhook_secrets: Sequence[str]
    created_at: datetime
    removed_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.removed_at is None

    def __repr__(self) -> str:  # never print secrets
        return f"Connection(id={self.id!r}, processor={self.processor!r}, business_id={self.business_id!r})"


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    id: int
    connection_id: str
    processor: str
    event_id: str
    event_type: str
    object_key: str
    account: str | None
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class ClaimedRecord:
    """An outbox record whose parents are all sent, with their Thred ids resolved."""

    id: int
    connection_id: str
    business_id: str
    kind: str
    external_id: str
    body: Mapping[str, Any]
    resolved: Mapping[str, str]
    parent_id: str | None
    idempotency_key: str | None
    attempts: int
    event_id: int | None
    op: str = "create"
    lookups: Mapping[str, Lookup] = field(default_factory=dict)
    taken_over: bool = False  # its claim was taken from a dead process, which may have sent it already
    excess_cents: int = 0  # a refund payment booked short by this much (its refund was: decision 0007)


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    connection_id: str
    processor: str
    business_id: str
    received: int
    synced: int
    waiting: int
    failed: int
    ignored: int
    records_sent: int
    records_waiting: int
    records_failed: int
    oldest_waiting_at: datetime | None
    failures: Sequence[tuple[str, str, str]]  # (event id, event type, last error)
    unrouted: int = 0  # Connect events for an account no connection maps yet
    records_held: int = 0  # webhook readings waiting for the settlement report to book them (decision 0008)
    notes: Sequence[str] = ()  # what the processor says about the connection (e.g. why payouts are off)
