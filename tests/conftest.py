"""Shared fixtures: the anyio backend, and one database fixture run on SQLite and on Postgres.

Postgres is real: BRIDGE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres)
names a server where a throwaway database is created for the test run and dropped after it. When
CI=true and the server cannot be reached, the run fails; elsewhere those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from thred_bridge.store import schema
from thred_bridge.store.sql import SqlStore
from thred_bridge.store.tables import metadata

POSTGRES_ADMIN_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated Postgres database for this test run."""
    try:
        admin = psycopg.connect(_conninfo(POSTGRES_ADMIN_URL), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and Postgres is unreachable at {POSTGRES_ADMIN_URL}: {exc}")
        pytest.skip(f"Postgres unreachable at {POSTGRES_ADMIN_URL} (set CI=true to make this a failure)")
    name = f"thred_bridge_test_{os.getpid()}_{secrets.token_hex(3)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    schema.migrate(url)
    try:
        yield url
    finally:
        with psycopg.connect(_conninfo(POSTGRES_ADMIN_URL), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> str:
    """The run's Postgres database, emptied of every row (the schema stays)."""
    with psycopg.connect(_conninfo(postgres_url), autocommit=True) as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(f"TRUNCATE {names} RESTART IDENTITY")
    return postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a SQLite file, or the run's Postgres database emptied."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bridge.db'}"
        schema.migrate(url)
        return url
    emptied: str = request.getfixturevalue("empty_postgres_url")
    return emptied


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    sql = SqlStore(schema.async_engine(database_url))
    try:
        yield sql
    finally:
        await sql.aclose()
