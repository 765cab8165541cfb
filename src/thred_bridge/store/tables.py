"""The schema, in SQLAlchemy Core. Alembic migrations are written from it; both dialects share it.

- ``connections``: a merchant's processor account, mapped to one Thred business.
- ``events``: the inbox and the queue. One row per verified processor event, unique per connection.
- ``records``: the outbox and the mapping. One row per Thred record (kind, external id), with the
  Thred id once sent.
- ``cursors``: backfill checkpoints, one per time slice, so a killed backfill resumes.
- ``leases``: which worker holds which processor object, so events about one object never run at once.
- ``processes``: every serve and worker process alive (or once alive) on this database, with its heartbeat;
  each claim names its holder (``locked_by``), so a dead holder's claims are taken over by liveness.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.sql.expression import false
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both dialects (SQLite stores them naive; this restores the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_HELD = text("locked_by IS NOT NULL")  # the claim indexes list only rows a process holds
_Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only

connections = Table(
    "connections",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("processor", String(20), nullable=False),
    Column("business_id", String(100), nullable=False),
    Column("account", String(100), nullable=True),
    Column("label", String(200), nullable=True),
    Column("credentials", Text, nullable=False),  # encrypted JSON object
    Column("webhook_secrets", Text, nullable=False),  # encrypted JSON list; several during rotation
    Column("created_at", UTCDateTime(), nullable=False),
    Column("removed_at", UTCDateTime(), nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("connection_id", String(40), nullable=False),
    Column("processor", String(20), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("object_key", String(255), nullable=False),
    Column("account", String(100), nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("status", String(20), nullable=False),  # pending processing done ignored failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("locked_until", UTCDateTime(), nullable=True),
    Column("locked_by", String(64), nullable=True),  # the process holding the claim (processes.id)
    Column("last_error", Text, nullable=True),
    Column("processed_at", UTCDateTime(), nullable=True),
    UniqueConstraint("connection_id", "event_id"),
    Index("ix_events_due", "status", "next_attempt_at"),
    Index("ix_events_object", "connection_id", "object_key"),
    Index("ix_events_locked_by", "locked_by", postgresql_where=_HELD, sqlite_where=_HELD),
)

records = Table(
    "records",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("connection_id", String(40), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("body", Text, nullable=False),  # JSON, Thred field names, parent ids left out
    Column("parents", Text, nullable=False),  # JSON {body path: [kind, external id]}
    Column("parent_path", Text, nullable=True),  # JSON [kind, external id] of a URL parent
    Column("idempotency_key", String(255), nullable=True),
    Column("op", String(10), nullable=False, server_default="create"),  # create | delete | adopt
    Column("status", String(20), nullable=False),  # pending sent failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("locked_until", UTCDateTime(), nullable=True),
    Column("locked_by", String(64), nullable=True),  # the process holding the claim (processes.id)
    # True once a claim on it was taken over from a dead process, which may have sent it before dying: the next
    # sender looks it up in Thred first instead of sending it a second time.
    Column("taken_over", Boolean, nullable=False, server_default=false()),
    Column("last_error", Text, nullable=True),
    Column("thred_id", String(100), nullable=True),
    # Money out booked short because it was beyond what the payment left refundable (a refund and its refund
    # payment; decision 0007): the payout that settles it carries this much as additional refunds.
    Column("excess_cents", BigInteger, nullable=True),
    Column("event_id", BigInteger, nullable=True),  # the inbox row that first asked for it
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    UniqueConstraint("connection_id", "kind", "external_id"),
    Index("ix_records_due", "status", "next_attempt_at", "id"),  # claims walk it in due order
    Index("ix_records_event", "event_id"),
    Index("ix_records_locked_by", "locked_by", postgresql_where=_HELD, sqlite_where=_HELD),
)

# One row per path of a record's body that takes a parent's Thred id (``payment_ids.17``), per ordering-only
# parent (``~payment``) and for the parent in its URL (:data:`URL_PARENT`): a claim reads the Thred ids it
# fills in from here, path by path, and a record sent finds what waits on it by the parent index.
record_parents = Table(
    "record_parents",
    metadata,
    Column("record_id", BigInteger, primary_key=True),
    Column("path", String(255), primary_key=True),
    Column("connection_id", String(40), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("external_id", String(255), nullable=False),
    Index("ix_record_parents_parent", "connection_id", "kind", "external_id"),
)
URL_PARENT = "/"  # the path of the parent named in a record's URL (a refund payment's refund)

cursors = Table(
    "cursors",
    metadata,
    Column("connection_id", String(40), primary_key=True),
    Column("name", String(255), primary_key=True),  # e.g. "charges:2026-01-01T00:00:00Z" (one slice)
    Column("position", Text, nullable=True),  # the processor's paging cursor, resumable
    Column("done", Boolean, nullable=False, server_default=false()),
    Column("seen", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime(), nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("connection_id", String(40), primary_key=True),
    Column("object_key", String(255), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)
MONEY_OUT_KEYS = "money-out/%"  # the leases that are an invoice's money-out turn (decision 0007), as a LIKE

processes = Table(
    "processes",
    metadata,
    Column("id", String(64), primary_key=True),  # host:pid:random, the owner every claim of it names
    Column(
        "lock_key", Integer, nullable=True
    ),  # Postgres: the key of the session advisory lock it holds (unique by the lock)
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("role", String(20), nullable=False),  # serve | worker
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("stopped_at", UTCDateTime(), nullable=True),
    Column("ended", String(20), nullable=True),  # stopped (it said so) | dead (taken over by another)
    Index("ix_processes_alive", "stopped_at"),
)
