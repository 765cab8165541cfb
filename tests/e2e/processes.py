"""Real bridge processes for end-to-end tests: spawn ``thred-bridge …``, wait for it, and a Thred sandbox that
answers slowly and counts what it is asked to create, per external id."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from thred_bridge import testing
from thred_bridge.store import schema


class Slow:
    """ASGI wrapper: every Thred request takes a little longer, as over a real network; every create (POST
    with an ``external_id``) is counted per kind and external id (``payments:stripe_ch_…``), so a test can tell
    a record sent twice."""

    def __init__(self, app: Any, delay: float) -> None:
        self.app, self.delay = app, delay
        self.creates: collections.Counter[str] = collections.Counter()
        self.first_created: dict[str, float] = {}  # the same keys: when the first create arrived (monotonic)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            if scope["method"] == "POST" and not scope["path"].rstrip("/").endswith("/token"):
                receive = await self._counting(scope["path"], receive)
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)

    async def _counting(self, path: str, receive: Any) -> Any:
        messages = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            external_id = json.loads(body).get("external_id") if body else None
        except (ValueError, AttributeError):
            external_id = None
        if isinstance(external_id, str):
            # an invoice and its payment share the processor's id: what is counted is the kind and the id
            key = f"{path.rstrip('/').rsplit('/', 1)[-1]}:{external_id}"
            self.creates[key] += 1
            self.first_created.setdefault(key, time.monotonic())
        replay = iter(messages)

        async def replayed() -> Any:
            return next(replay, {"type": "http.disconnect"})

        return replayed


def process_env(database_url: str, thred_url: str, **settings: str) -> dict[str, str]:
    """The environment of a bridge process on ``database_url`` that sends to the sandbox at ``thred_url``, with a
    fresh secret key, plus ``settings`` (``BRIDGE_…`` names)."""
    return {
        **os.environ,
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
        "THRED_API_URL": thred_url,
        "THRED_PARTNER_ID": testing.PARTNER[0],
        "THRED_API_KEY": testing.PARTNER[1],
        **settings,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``thred-bridge ARGS``; its log goes to a file beside the test's database."""
    log = cwd / f"{args[0]}-{time.monotonic_ns()}.log"
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "thred_bridge", *args], env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT
        )


async def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode}: {proc.args!r}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(url)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused one must be able to hear SIGTERM
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def payments(client: httpx.AsyncClient, thred_url: str, business_id: str) -> list[dict[str, Any]]:
    state = (await client.get(f"{thred_url}/_sandbox/state")).json()["businesses"]
    found: list[dict[str, Any]] = state.get(business_id, {}).get("payments", [])
    return found


async def freeze(proc: subprocess.Popen[bytes], url: str) -> None:
    """SIGSTOP ``proc`` outside a transaction. On SQLite a process frozen inside a write transaction holds the
    file's only write lock and no other process can write at all; on Postgres one frozen inside a transaction
    holds its row locks until it resumes or dies (docs/decisions/0006 names both limits)."""
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:") else None
    for _ in range(200):
        proc.send_signal(signal.SIGSTOP)
        _wait_stopped(proc.pid)
        if _writable(path) if path is not None else _no_open_transaction(url):
            return
        proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.01)
    raise AssertionError("the process never left its write transactions")


def _wait_stopped(pid: int) -> None:
    """Until the SIGSTOP is delivered, not merely sent: the state letter in /proc is ``T``."""
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
        assert time.monotonic() < deadline, "the process did not stop"
        time.sleep(0.001)


def _no_open_transaction(url: str) -> bool:
    """No backend of the database sits inside a transaction (a process frozen in one holds its row locks, and
    the taker's release of its claims would wait for them)."""
    time.sleep(0.005)  # a statement the freeze interrupted on the wire finishes on the server
    engine = schema.sync_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            ).scalar()
            return not found
    finally:
        engine.dispose()


def _writable(path: str) -> bool:
    with contextlib.closing(sqlite3.connect(path, timeout=0.2, isolation_level=None)) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        conn.execute("ROLLBACK")
        return True


def held_by(url: str, pid: int) -> tuple[str | None, set[int], set[int]]:
    """The registration of the process with ``pid`` that is not ended, and the records and events it holds."""
    engine = schema.sync_engine(url)
    try:
        with engine.connect() as conn:
            process = conn.execute(
                text("SELECT id FROM processes WHERE pid = :pid AND stopped_at IS NULL"), {"pid": pid}
            ).scalar()
            records = conn.execute(
                text("SELECT id FROM records WHERE locked_by = :p AND status = 'pending'"), {"p": process}
            ).scalars()
            events = conn.execute(
                text("SELECT id FROM events WHERE locked_by = :p AND status = 'processing'"), {"p": process}
            ).scalars()
            return process, set(records), set(events)
    finally:
        engine.dispose()


def unfinished(url: str, records: set[int], events: set[int]) -> int:
    engine = schema.sync_engine(url)
    try:
        with engine.connect() as conn:
            left = 0
            if records:
                left += len(
                    conn.execute(
                        text(f"SELECT id FROM records WHERE status != 'sent' AND id IN ({','.join(map(str, records))})")
                    ).all()
                )
            if events:
                left += len(
                    conn.execute(
                        text(f"SELECT id FROM events WHERE status != 'done' AND id IN ({','.join(map(str, events))})")
                    ).all()
                )
            return left
    finally:
        engine.dispose()
