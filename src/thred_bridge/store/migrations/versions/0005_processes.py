"""Processes and claim holders: a dead process's claims are taken over by liveness, not by waiting out a lease.

``processes`` lists every serve and worker process with its heartbeat (and, on Postgres, the key of the
session advisory lock it holds while its connection lives); ``events.locked_by`` and ``records.locked_by``
name the process holding each claim; ``records.taken_over`` marks a record whose claim was taken from a dead
process, which the next sender looks up in Thred before sending.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_HELD = sa.text("locked_by IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "processes",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("lock_key", sa.Integer, nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended", sa.String(20), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_processes"),
    )
    op.create_index("ix_processes_alive", "processes", ["stopped_at"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("locked_by", sa.String(64), nullable=True))
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("locked_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("taken_over", sa.Boolean, nullable=False, server_default=sa.false()))
    for table in ("events", "records"):
        op.create_index(f"ix_{table}_locked_by", table, ["locked_by"], postgresql_where=_HELD, sqlite_where=_HELD)


def downgrade() -> None:
    for table in ("events", "records"):
        op.drop_index(f"ix_{table}_locked_by", table_name=table)
    with op.batch_alter_table("records") as batch:
        batch.drop_column("taken_over")
        batch.drop_column("locked_by")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("locked_by")
    op.drop_index("ix_processes_alive", table_name="processes")
    op.drop_table("processes")
