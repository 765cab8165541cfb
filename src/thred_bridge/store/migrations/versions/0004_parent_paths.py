"""Parent links by body path, so a claim reads each path's Thred id instead of parsing the record's parents.

A payout names every payment it settles; claiming one of 50,000 parsed its parents (a JSON object of 50,000
paths) and looked the Thred ids up in a second map: ~37 MB of Python objects at the peak. With the path on
each link, the claim streams ``(path, thred_id)`` rows. The links are rebuilt from ``records.parents`` and
``records.parent_path`` for the records not yet sent (a sent record's links are never read again: it waits
for nothing, and what waited on it was found when it was sent).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

URL_PARENT = "/"
BATCH = 1_000
_records = sa.table(
    "records",
    sa.column("id", sa.BigInteger),
    sa.column("connection_id", sa.String),
    sa.column("parents", sa.Text),
    sa.column("parent_path", sa.Text),
    sa.column("status", sa.String),
)


def _create(with_path: bool) -> sa.Table:
    """``record_parents`` keyed by path (this revision), or by parent (the one before)."""
    key = ("record_id", "path") if with_path else ("record_id", "connection_id", "kind", "external_id")
    table = op.create_table(
        "record_parents",
        sa.Column("record_id", sa.BigInteger, nullable=False),
        *([sa.Column("path", sa.String(255), nullable=False)] if with_path else []),
        sa.Column("connection_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint(*key, name="pk_record_parents"),
    )
    op.create_index("ix_record_parents_parent", "record_parents", ["connection_id", "kind", "external_id"])
    assert table is not None
    return table


def _links(row: Any) -> list[dict[str, Any]]:
    links = [
        {"record_id": row.id, "path": path, "connection_id": row.connection_id, "kind": kind, "external_id": ext}
        for path, (kind, ext) in json.loads(row.parents).items()
    ]
    if row.parent_path:
        kind, ext = json.loads(row.parent_path)
        links.append(
            {"record_id": row.id, "path": URL_PARENT, "connection_id": row.connection_id, "kind": kind,
             "external_id": ext}
        )  # fmt: skip
    return links


def upgrade() -> None:
    op.drop_table("record_parents")
    table = _create(with_path=True)
    conn = op.get_bind()
    waiting = (
        sa.select(_records.c.id, _records.c.connection_id, _records.c.parents, _records.c.parent_path)
        .where(_records.c.status != "sent")
        .order_by(_records.c.id)
    )
    after = 0
    while True:  # keyset pages: memory stays flat however many records wait
        rows = conn.execute(waiting.where(_records.c.id > after).limit(BATCH)).all()
        if not rows:
            return
        links = [link for row in rows for link in _links(row)]
        if links:
            conn.execute(table.insert(), links)
        after = rows[-1].id


def downgrade() -> None:
    conn = op.get_bind()
    old = sa.table(
        "record_parents",
        sa.column("record_id", sa.BigInteger),
        sa.column("connection_id", sa.String),
        sa.column("kind", sa.String),
        sa.column("external_id", sa.String),
    )
    kept = conn.execute(sa.select(old).distinct()).all()
    op.drop_table("record_parents")
    table = _create(with_path=False)
    for at in range(0, len(kept), BATCH):
        conn.execute(table.insert(), [row._asdict() for row in kept[at : at + BATCH]])
