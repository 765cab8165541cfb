"""Migrations on the data of the revision before them, on SQLite and on a Postgres database of their own."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from thred_bridge.store import schema

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema yet: a SQLite file, or a Postgres database made for the test and dropped."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    postgres_url: str = request.getfixturevalue("postgres_url")  # the run's database: its server, not its schema
    admin = make_url(postgres_url).set(drivername="postgresql", database="postgres")
    name = f"thred_bridge_migration_{os.getpid()}_{secrets.token_hex(3)}"
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _record(rid: int, kind: str, ext: str, status: str, parents: dict[str, list[str]],
            parent_path: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    at = NOW.replace(tzinfo=None)
    return {
        "id": rid, "connection_id": "conn_a", "kind": kind, "external_id": ext, "body": "{}",
        "parents": orjson.dumps(parents).decode(),
        "parent_path": orjson.dumps(parent_path).decode() if parent_path else None,
        "op": "create", "status": status, "attempts": 0, "next_attempt_at": at, "created_at": at,
    }  # fmt: skip


def test_parent_links_get_their_paths_and_lose_them_again(blank_url: str) -> None:
    """0004 rebuilds the links of records still waiting, one per path (a parent at two paths twice, the URL
    parent under "/"); a sent record's links go. Downgraded, the links are one per parent again."""
    schema.move_to(blank_url, "0003")
    waiting = {"payment_ids.0": ["payment", "p0"], "payment_ids.1": ["payment", "p1"], "~first": ["payment", "p0"]}
    rows = [
        _record(1, "payout", "po_1", "pending", waiting),
        _record(2, "refund_payment", "re_1", "failed", {}, ["refund", "re_1"]),
        _record(3, "invoice", "in_1", "sent", {"customer_id": ["customer", "cus_1"]}),
    ]
    old_links = [(1, "payment", "p0"), (1, "payment", "p1"), (2, "refund", "re_1"), (3, "customer", "cus_1")]
    engine = schema.sync_engine(blank_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.table("records", *(sa.column(k) for k in rows[0])).insert(), rows)
            columns = ("record_id", "connection_id", "kind", "external_id")
            links = sa.table("record_parents", *(sa.column(k) for k in columns))
            values = [dict(zip(columns, (r, "conn_a", k, e), strict=True)) for r, k, e in old_links]
            conn.execute(links.insert(), values)
        schema.move_to(blank_url, "0004")
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT record_id, path, kind, external_id FROM record_parents")).all()
        assert sorted(tuple(r) for r in got) == [
            (1, "payment_ids.0", "payment", "p0"), (1, "payment_ids.1", "payment", "p1"),
            (1, "~first", "payment", "p0"), (2, "/", "refund", "re_1"),
        ]  # fmt: skip
        schema.move_to(blank_url, "0003", down=True)
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT record_id, kind, external_id FROM record_parents")).all()
        assert sorted(tuple(r) for r in got) == [(1, "payment", "p0"), (1, "payment", "p1"), (2, "refund", "re_1")]
        assert schema.migrate(blank_url) == ("0003", schema.head_revision())
    finally:
        engine.dispose()
