"""Connections, the events inbox, the records outbox and mapping, object leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("processor", sa.String(20), nullable=False),
        sa.Column("business_id", sa.String(100), nullable=False),
        sa.Column("account", sa.String(100), nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("credentials", sa.Text, nullable=False),
        sa.Column("webhook_secrets", sa.Text, nullable=False),
        sa.Column("created_at", _Ts, nullable=False),
        sa.Column("removed_at", _Ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_connections"),
    )
    op.create_table(
        "events",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("connection_id", sa.String(40), nullable=False),
        sa.Column("processor", sa.String(20), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("object_key", sa.String(255), nullable=False),
        sa.Column("account", sa.String(100), nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("received_at", _Ts, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _Ts, nullable=False),
        sa.Column("locked_until", _Ts, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("processed_at", _Ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("connection_id", "event_id", name="uq_events_connection_id_event_id"),
    )
    op.create_index("ix_events_due", "events", ["status", "next_attempt_at"])
    op.create_index("ix_events_object", "events", ["connection_id", "object_key"])
    op.create_table(
        "records",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("connection_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("parents", sa.Text, nullable=False),
        sa.Column("parent_path", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _Ts, nullable=False),
        sa.Column("locked_until", _Ts, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("thred_id", sa.String(100), nullable=True),
        sa.Column("event_id", sa.BigInteger, nullable=True),
        sa.Column("created_at", _Ts, nullable=False),
        sa.Column("sent_at", _Ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.UniqueConstraint("connection_id", "kind", "external_id", name="uq_records_connection_id_kind_external_id"),
    )
    op.create_index("ix_records_due", "records", ["status", "next_attempt_at"])
    op.create_index("ix_records_event", "records", ["event_id"])
    op.create_table(
        "record_parents",
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("connection_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("record_id", "connection_id", "kind", "external_id", name="pk_record_parents"),
    )
    op.create_index("ix_record_parents_parent", "record_parents", ["connection_id", "kind", "external_id"])
    op.create_table(
        "leases",
        sa.Column("connection_id", sa.String(40), nullable=False),
        sa.Column("object_key", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", _Ts, nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "object_key", name="pk_leases"),
    )


def downgrade() -> None:
    for table in ("leases", "record_parents", "records", "events", "connections"):
        op.drop_table(table)
