"""Money out beyond what was paid: ``records.excess_cents``.

A refund or chargeback larger than what its payment still has refundable in Thred is booked for what is
refundable; the rest is kept here, on the refund and its refund payment, and the payout that settles the refund
payment carries it as additional refunds (decision 0007).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("excess_cents", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.drop_column("excess_cents")
