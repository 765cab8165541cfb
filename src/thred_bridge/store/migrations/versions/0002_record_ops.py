"""Records can delete (undo a refund payment) as well as create; backfill checkpoints.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("op", sa.String(10), nullable=False, server_default="create"))
    op.create_table(
        "cursors",
        sa.Column("connection_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("position", sa.Text, nullable=True),
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("seen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "name", name="pk_cursors"),
    )


def downgrade() -> None:
    op.drop_table("cursors")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("op")
