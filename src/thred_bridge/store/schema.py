"""Engines for both dialects, migrations (Alembic), and the check that the schema is current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from thred_bridge.errors import ConfigError, SchemaOutdatedError

MIGRATIONS = Path(__file__).parent / "migrations"


def dialect_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise ConfigError(f"BRIDGE_DATABASE_URL must be sqlite:///PATH or postgresql://…, got a {name} URL")
    return name


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for in-memory or Postgres)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _driver_url(url: str, *, asynchronous: bool) -> str:
    parsed = make_url(url)
    if dialect_of(url) == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite").render_as_string(
            hide_password=False
        )
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _sqlite_tuning(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: one writer at a time, no deadlocked upgrades
        # between processes sharing the file.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def async_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 5, idle_in_transaction: float | None = None
) -> AsyncEngine:
    """``pool_size`` connections kept, ``max_overflow`` more opened under load (Postgres; SQLite's pool is
    fixed). ``idle_in_transaction`` (Postgres): end a session that sits inside a transaction this many seconds,
    so a frozen process's row locks do not hold up the living that take over its claims."""
    driver = _driver_url(url, asynchronous=True)
    if dialect_of(url) == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # Every use ends its transaction itself (SqlStore), so the pool's rollback-on-return is a wasted
        # round trip to the driver's thread on each transaction: switched off.
        engine = create_async_engine(driver, pool_size=pool_size, max_overflow=0, pool_reset_on_return=None)
        _sqlite_tuning(engine.sync_engine)
        return engine
    connect_args: dict[str, str] = {}
    if idle_in_transaction is not None:
        connect_args["options"] = f"-c idle_in_transaction_session_timeout={int(idle_in_transaction * 1000)}"
    return create_async_engine(
        driver,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_reset_on_return=None,
        connect_args=connect_args,
    )


def sync_engine(url: str) -> Engine:
    engine = create_engine(_driver_url(url, asynchronous=False))
    if dialect_of(url) == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_tuning(engine)
    return engine


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def migrate(url: str) -> tuple[str | None, str]:
    """Create or upgrade the schema; returns (revision before, revision after)."""
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            before = MigrationContext.configure(conn).get_current_revision()
        with engine.begin() as conn:
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return before, head_revision()
    finally:
        engine.dispose()


def move_to(url: str, revision: str, *, down: bool = False) -> None:
    """Upgrade the schema to ``revision`` (downgrade with ``down``): a migration's tests run it on the data of
    the revision before it."""
    engine = sync_engine(url)
    try:
        with engine.begin() as conn:
            cfg = _config()
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def require_current(url: str) -> None:
    """Refuse an old or missing schema, with the command that fixes it."""
    found = current_revision(url)
    head = head_revision()
    if found != head:
        state = "has no schema" if found is None else f"is at revision {found}, this release needs {head}"
        raise SchemaOutdatedError(f"the database {state}: run `thred-bridge migrate`")
