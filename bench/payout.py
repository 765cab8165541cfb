"""Payout benchmark: one Stripe ``payout.paid`` event that must pull in every charge it paid out.

    .venv/bin/python bench/payout.py --transactions 10000 --db sqlite --concurrency 16

Everything runs on 127.0.0.1 and stops by itself.

1. A **server process** (this script with ``--servers``, so its memory and CPU are not the bridge's)
   builds a simulated Stripe (:class:`~thred_bridge.simulators.stripe_api.StripeWorld`) holding N EUR
   charges (about 90 % walk-in, 10 % with a Stripe customer from a pool of N/25, a few partial refunds)
   and one automatic ``paid`` payout sweeping them all, and serves it next to the Thred sandbox (in
   memory), both with ``serve_in_background``, each behind an ASGI meter of this script's (request counts
   per route, handler seconds, first and last request times at ``/_bench/stats``). It prints one JSON line
   (URLs, the payout, its signed-to-be event, what it holds) and serves until its stdin closes.
2. The **measured process** (this script) makes a fresh database (a SQLite file in a temp dir, or a
   throwaway Postgres database on ``--pg-admin-url``, dropped at the end), opens the bridge with
   ``open_bridge`` (Thred = the sandbox, Stripe = the simulator), adds a Stripe connection, starts
   ``bridge.worker(concurrency=…)``, then verifies and stores ONE signed ``payout.paid`` delivery through
   the Stripe processor and the bridge's :class:`Inbox` — no charge webhooks, so the payout has to bring in
   every charge (customer → invoice → payment) before the Thred payout can list them — and polls
   ``bridge.connections.status`` until nothing is waiting.
3. It measures the wall time from the event to the payout in Thred, split with the database's own
   timestamps (``events.processed_at``, ``records.sent_at``) and a timing wrapper around the Stripe
   processor: waiting to be claimed, Stripe fetches + translation, planning + committing the outbox,
   dispatching the records; the Stripe and Thred requests; the records created (and sent more than once);
   the measured process's CPU, peak RSS (``ru_maxrss``) and its RSS every 100 ms from ``/proc/self/statm``
   (a thread, so a blocked event loop still gets sampled); with ``--tracemalloc`` the Python heap's peak
   (slower); with ``--profile`` a py-spy profile of this process during the run.
4. It checks that the Thred payout lists N payments (and every refund's refund payment) and that its
   ``amount_variance_cents`` is 0, prints a table and a Markdown row, and writes
   ``bench/results/payout-<db>.json``.

The server process, the measured process and Postgres share the machine's cores: on a small machine the
figures are for the whole box (the JSON has each one's CPU seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from thred_bridge import testing
from thred_bridge.bootstrap import Bridge, open_bridge
from thred_bridge.domain.movements import Movement
from thred_bridge.domain.queue import ClaimedEvent, Connection, ConnectionStatus, Notice
from thred_bridge.observe import configure_logging
from thred_bridge.processors.base import MovementStream, Processor
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import run as run_loop
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.stripe_api import StripeWorld
from thred_bridge.simulators.stripe_api import create_app as create_stripe
from thred_bridge.store import schema
from thred_bridge.store.tables import events, records

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
HOST = "127.0.0.1"
STATS_PATH = "/_bench/stats"
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
STRIPE_PAGE = 100  # the bridge lists a payout's balance transactions 100 at a time

console = Console(highlight=False, soft_wrap=True, width=max(shutil.get_terminal_size().columns, 160))


# --- the server process: simulated Stripe + Thred sandbox, metered -----------------------------------------

_ID_SEGMENT = re.compile(r"^(?:[a-z]{2,5}_[A-Za-z0-9]{8,}|[0-9a-fA-F-]{32,36})$")


def route_of(path: str) -> str:
    """``/v1/charges/ch_3Sx…`` → ``/v1/charges/{id}``: one name per route, not per object."""
    return "/".join("{id}" if _ID_SEGMENT.match(part) else part for part in path.split("/"))


class Metered:
    """ASGI middleware: counts requests per method and route, sums the seconds spent answering them, keeps
    the wall-clock time of each route's first and last request; ``GET /_bench/stats`` reports, ``DELETE``
    resets."""

    def __init__(self, app: ASGIApp, *, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.app = app
        self.extra = extra
        self.counts: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def stats(self) -> dict[str, Any]:
        return {
            "requests": sum(self.counts.values()),
            "by_route": dict(sorted(self.counts.items())),
            "handler_s": round(sum(self.seconds.values()), 3),
            "handler_s_by_route": {k: round(v, 3) for k, v in sorted(self.seconds.items())},
            "first_at": self.first,
            "last_at": self.last,
            **(self.extra() if self.extra else {}),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == STATS_PATH:
            if scope["method"] == "DELETE":
                self.counts.clear()
                self.seconds.clear()
                self.first.clear()
                self.last.clear()
            body = orjson.dumps(self.stats())
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        key = f"{scope['method']} {route_of(path.rstrip('/') or '/')}"
        now = time.time()
        self.first.setdefault(key, now)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.seconds[key] += time.perf_counter() - started
            self.counts[key] += 1
            self.last[key] = time.time()


def build_world(n: int, seed: int) -> tuple[StripeWorld, dict[str, Any]]:
    """N EUR charges (≈10 % with a Stripe customer from a pool of N/25, the rest walk-in), a few partial
    refunds, and one automatic ``paid`` payout sweeping them all; returns the world and what it holds."""
    rng = random.Random(seed)
    world = StripeWorld(seed=seed)
    pool = [
        world.add_customer(name=f"Customer {i}", email=f"customer{i}@example.com")["id"] for i in range(max(1, n // 25))
    ]
    charges: list[tuple[str, int]] = []
    with_customer: set[str] = set()
    for i in range(n):
        amount = rng.randrange(500, 50_000)
        customer = None
        if rng.random() < 0.10:
            customer = {"id": rng.choice(pool)}
            with_customer.add(customer["id"])
        charge = world.add_charge(amount, "eur", customer=customer, description=f"Order {i + 1}")
        charges.append((charge["id"], amount))
    refunds = [world.refund(cid, amount // 2) for cid, amount in rng.sample(charges, max(1, n // 500))]
    payout = world.payout(currency="eur")
    held = {
        "charges": n,
        "walk_in_charges": sum(1 for o in world.listed("charge") if o.get("customer") is None),
        "stripe_customers_used": len(with_customer),
        "refunds": len(refunds),
        "balance_transactions": n + len(refunds) + 1,  # + the payout's own
        "payout_amount_cents": payout["amount"],
    }
    return world, {"payout": payout, "event": world.event("payout.paid", payout), "held": held}


def servers_main(spec_json: str) -> int:
    """The ``--servers`` process: build the world, serve Stripe and Thred, print their URLs, serve until
    stdin closes (the measured process exits or closes it)."""
    spec = orjson.loads(spec_json)

    async def serve() -> None:
        started = time.perf_counter()
        world, built = build_world(int(spec["transactions"]), int(spec["seed"]))
        build_s = time.perf_counter() - started
        stripe_app = Metered(
            create_stripe(world, api_key=testing.STRIPE_KEY), extra=lambda: {"world_requests": len(world.requests)}
        )
        thred_app = Metered(create_sandbox(partners=dict([testing.PARTNER])))
        async with (
            serve_in_background(stripe_app, host=HOST) as stripe_url,
            serve_in_background(thred_app, host=HOST) as thred_url,
        ):
            line = {"stripe_url": stripe_url, "thred_url": thred_url, "build_s": round(build_s, 2), **built}
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)

    run_loop(serve())
    return 0


class Servers:
    """The server process, started and stopped (stdin closed, then TERM, then KILL) by the measured one."""

    def __init__(self, transactions: int, seed: int, log: Path) -> None:
        self.log = log
        spec = orjson.dumps({"transactions": transactions, "seed": seed}).decode()
        with log.open("wb") as err:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--servers", spec],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            )  # fmt: skip

    def ready(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise RuntimeError(f"the server process exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
        info: dict[str, Any] = orjson.loads(line)
        return info

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# --- measuring ------------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def vm_hwm_bytes() -> int:
    """The kernel's peak RSS of this process so far (``VmHWM``): catches what 100 ms samples miss."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class RssSampler:
    """This process's RSS every ``interval`` s, from a thread (sampled even while the event loop is busy)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter(), rss_bytes()))
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def between(self, start: float, end: float) -> list[int]:
        return [rss for t, rss in self.samples if start <= t <= end]


class TimedProcessor:
    """Wraps the Stripe processor: records when each ``movements`` call (the Stripe fetches and the
    translation) starts and ends, and how many movements it returned."""

    def __init__(self, inner: Processor) -> None:
        self.inner = inner
        self.calls: list[tuple[float, float, int]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def media_types(self) -> frozenset[str]:
        return self.inner.media_types

    def verify(
        self, body: bytes, headers: Mapping[str, str], connection: Connection, now: datetime
    ) -> Sequence[Notice]:
        return self.inner.verify(body, headers, connection, now)

    async def movements(self, event: ClaimedEvent, connection: Connection) -> Sequence[Movement] | MovementStream:
        """(A stream's movements are counted as -1: they are read later, in the worker's thread.)"""
        started = time.perf_counter()
        moved: Sequence[Movement] | MovementStream = []
        try:
            moved = await self.inner.movements(event, connection)
            return moved
        finally:
            self.calls.append((started, time.perf_counter(), -1 if isinstance(moved, MovementStream) else len(moved)))

    async def aclose(self) -> None:
        await self.inner.aclose()


class FinishTimes:
    """When each ``finish_event`` transaction (the event's outbox rows + "event done") starts and commits, from
    the engine's events: it starts with the lease's ``DELETE FROM leases`` and marks the event done with the
    only ``UPDATE events`` that sets ``processed_at``; ``processed_at`` itself is the time it started."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.finishes: list[tuple[float, float | None, str]] = []  # (started, ended, "commit" | "rollback")
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        event.listen(self.engine, "rollback", self._rollback)

    def _statement(self, conn: SyncConnection, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("DELETE FROM leases"):
            conn.info["bench_finish_started"] = time.perf_counter()
        elif statement.startswith("UPDATE events SET") and "processed_at" in statement:
            conn.info["bench_finishing"] = True

    def _end(self, conn: SyncConnection, how: str) -> None:
        started = conn.info.pop("bench_finish_started", None)
        if conn.info.pop("bench_finishing", False) or (started is not None and how == "rollback"):
            self.finishes.append((started or math.nan, time.perf_counter(), how))

    def _commit(self, conn: SyncConnection) -> None:
        self._end(conn, "commit")

    def _rollback(self, conn: SyncConnection) -> None:
        self._end(conn, "rollback")

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)
        event.remove(self.engine, "rollback", self._rollback)


class SqlStats:
    """Statements the bridge's engine ran (by their first 100 characters): how many, and the seconds from
    ``before_cursor_execute`` to ``after_cursor_execute`` (with aiosqlite: including the wait for its thread)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.count: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)

    def _before(self, conn: SyncConnection, *_args: object) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn: SyncConnection, _cursor: object, statement: str, *_args: object) -> None:
        started = conn.info["bench_started"].pop()
        key = re.sub(r"\s+", " ", statement).strip()[:100]
        self.count[key] += 1
        self.seconds[key] += time.perf_counter() - started

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    def summary(self, top: int = 15) -> dict[str, Any]:
        ranked = sorted(self.seconds.items(), key=lambda kv: -kv[1])[:top]
        return {
            "statements": sum(self.count.values()),
            "seconds": round(sum(self.seconds.values()), 2),
            "top_by_seconds": [
                {
                    "sql": k,
                    "count": self.count[k],
                    "seconds": round(v, 2),
                    "ms_each": round(1000 * v / self.count[k], 2),
                }
                for k, v in ranked
            ],
        }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_cpu() -> dict[int, float]:
    """CPU so far of every process named ``postgres`` (the server and its backends), by pid."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def wait_quiet(timeout: float, threshold: float = 15.0) -> float:
    """Wait (at most ``timeout`` s) until the machine is idle (busy < ``threshold`` %); returns the last busy %."""
    deadline = time.monotonic() + timeout
    while True:
        busy0 = machine_busy()
        time.sleep(0.5)
        busy1 = machine_busy()
        pct = 100 * (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
        if pct < threshold or time.monotonic() >= deadline:
            return round(pct, 1)


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Profiler:
    """``py-spy record`` attached to this process (all threads, raw collapsed stacks), stopped with SIGINT."""

    def __init__(self, out: Path, rate: int = 100) -> None:
        self.out = out
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        self.proc = subprocess.Popen(
            [py_spy, "record", "--pid", str(os.getpid()), "--rate", str(rate), "--threads", "--nonblocking",
             "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` → ``func (to/module.py)``: one name per function, not per line."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})" if path else name


def summarise_profile(path: Path, top: int = 30) -> dict[str, Any]:
    """py-spy raw stacks (with ``--threads``) → samples per thread, and by function (self and inclusive)."""
    if not path.exists():
        return {"file": str(path), "error": "no profile written"}
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if frames and frames[0].startswith(("thread (", "process ")):
            thread = frames.pop(0)
            threads[thread] += count
        names = [_frame_name(f) for f in frames]
        if not names:
            continue
        total += count
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    pct = 100 / max(total, 1)
    return {
        "file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "samples": total,
        "threads": [(k, round(v * pct, 1)) for k, v in threads.most_common(8)],
        "self_pct": [(k, round(v * pct, 1)) for k, v in own.most_common(top)],
        "inclusive_pct": [(k, round(v * pct, 1)) for k, v in inclusive.most_common(top * 2)],
    }


# --- databases ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, tmp: Path, admin_url: str) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file in ``tmp``, or a throwaway Postgres database (dropped)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'bridge.db'}"
        schema.migrate(url)
        yield url
        return
    name = f"thred_bench_payout_{os.getpid()}_{secrets.token_hex(3)}"
    created = False
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            created = True
        parts = psycopg.conninfo.conninfo_to_dict(admin_url)
        auth = str(parts.get("user", "postgres"))
        if parts.get("password"):
            auth += f":{parts['password']}"
        url = f"postgresql://{auth}@{parts.get('host', HOST)}:{parts.get('port', 5432)}/{name}"
        schema.migrate(url)
        yield url
    finally:
        if created:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def postgres_version(admin_url: str) -> str | None:
    with contextlib.suppress(psycopg.Error), psycopg.connect(admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return None if row is None else str(row[0])
    return None


def machine_facts(db: str, admin_url: str) -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("uvicorn", "starlette", "httpx", "stripe", "sqlalchemy", "psycopg", "aiosqlite", "uvloop"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }
    if db == "postgres":
        facts["postgres"] = postgres_version(admin_url)
    return facts


# --- the run -------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """What the poll loop saw, and when (seconds after the event)."""

    polls: int = 0
    last: ConnectionStatus | None = None
    finished_seen_s: float | None = None
    stalled_s: float | None = None  # no record sent or failed for ``--stall`` s after the event was processed
    timed_out: bool = False
    log: list[dict[str, Any]] = field(default_factory=list)
    crashes: Counter[str] = field(default_factory=Counter)  # exceptions of tasks nobody awaited


async def event_done(bridge: Bridge, connection_id: str) -> bool:
    """Every event of the connection is processed (``done``, ``failed`` or ``ignored``)."""
    async with bridge.store.engine.connect() as conn:
        busy = await conn.scalar(
            select(func.count()).where(
                events.c.connection_id == connection_id, events.c.status.in_(("pending", "processing"))
            )
        )
        await conn.rollback()
    return not busy


async def watch(
    bridge: Bridge,
    connection: Connection,
    args: argparse.Namespace,
    t0: float,
    progress: Progress,
    n: int,
) -> None:
    """Poll ``connections.status`` until nothing waits, the timeout, or a stall: the event is processed (its
    row says ``done``) and no record was sent or failed for ``args.stall`` s (by default longer than one
    record lease, so a retry would show).

    ``status.waiting`` counts the event until its records are sent too (``done_waiting``), so it says
    nothing about the processing being over: the event's own status does."""
    deadline, next_report = t0 + args.timeout, t0 + 10
    moved_at, last_key = t0, (-1, -1)
    while True:
        await asyncio.sleep(args.poll)
        status = await bridge.connections.status(connection)
        now = time.perf_counter()
        progress.polls += 1
        progress.last = status
        if status.received >= 1 and status.waiting == 0 and status.records_waiting == 0:
            progress.finished_seen_s = round(now - t0, 3)
            return
        key = (status.records_sent, status.records_failed)
        if key != last_key or not await event_done(bridge, connection.id):
            moved_at, last_key = now, key
        if now >= next_report:
            next_report += 10
            snap = {
                "t_s": round(now - t0, 1),
                "events_waiting": status.waiting,
                "records_sent": status.records_sent,
                "records_waiting": status.records_waiting,
                "records_failed": status.records_failed,
                "rss_mb": round(rss_bytes() / 2**20, 1),
            }
            progress.log.append(snap)
            console.print(f"[dim]{args.db} N={n}: {snap}[/dim]")
        if now - moved_at >= args.stall:
            gc.collect()  # a crashed task's exception is reported when the task is collected
            progress.stalled_s = round(now - t0, 1)
            console.print(f"[red]stalled: nothing sent or failed for {args.stall:.0f} s: {status}[/red]")
            return
        if now >= deadline:
            progress.timed_out = True
            console.print(f"[red]timeout after {args.timeout:.0f} s: {status}[/red]")
            return


async def http_json(url: str, method: str = "GET") -> Any:
    import httpx

    async with httpx.AsyncClient(timeout=60) as client:
        answer = await client.request(method, url)
        answer.raise_for_status()
        return answer.json() if answer.content else None


def _since(at: datetime | None, wall0: datetime) -> float | None:
    return None if at is None else round((at - wall0).total_seconds(), 3)


async def db_facts(bridge: Bridge, connection_id: str, wall0: datetime) -> dict[str, Any]:
    """From the bridge's own tables: when the event was processed, the records by kind (count, sent,
    attempts), when each kind was first and last sent, records per second of dispatch."""
    async with bridge.store.engine.connect() as conn:
        ev = (
            await conn.execute(
                select(events.c.status, events.c.processed_at, events.c.attempts).where(
                    events.c.connection_id == connection_id
                )
            )
        ).all()
        rows = (
            await conn.execute(
                select(records.c.kind, records.c.status, records.c.attempts, records.c.sent_at, records.c.thred_id)
                .where(records.c.connection_id == connection_id)
                .order_by(records.c.id)
            )
        ).all()
        created = (
            await conn.execute(
                select(func.min(records.c.created_at), func.max(records.c.created_at)).where(
                    records.c.connection_id == connection_id
                )
            )
        ).one()
        stuck = (
            await conn.execute(
                select(
                    records.c.kind, records.c.external_id, records.c.attempts, records.c.locked_until,
                    records.c.last_error,
                )
                .where(records.c.connection_id == connection_id, records.c.status == "pending")
                .order_by(records.c.attempts.desc())
                .limit(5)
            )
        ).all()  # fmt: skip
        await conn.rollback()
    by_kind: dict[str, dict[str, Any]] = {}
    sent_times: list[float] = []
    payout_thred_id = None
    for row in rows:
        entry = by_kind.setdefault(
            row.kind, {"records": 0, "sent": 0, "failed": 0, "attempts": 0, "first_sent_s": None, "last_sent_s": None}
        )
        entry["records"] += 1
        entry["attempts"] += row.attempts
        entry[row.status] = entry.get(row.status, 0) + 1
        if row.sent_at is not None:
            at = (row.sent_at - wall0).total_seconds()
            sent_times.append(at)
            entry["first_sent_s"] = round(min(at, entry["first_sent_s"] or math.inf), 3)
            entry["last_sent_s"] = round(max(at, entry["last_sent_s"] or -math.inf), 3)
        if row.kind == "payout":
            payout_thred_id = row.thred_id
    per_second: Counter[int] = Counter(int(t) for t in sent_times)
    span = range(min(per_second, default=0), max(per_second, default=-1) + 1)
    return {
        "events": [
            {"status": e.status, "attempts": e.attempts, "processed_s": _since(e.processed_at, wall0)} for e in ev
        ],
        "records_created_s": [_since(created[0], wall0), _since(created[1], wall0)],
        "records": by_kind,
        "records_total": len(rows),
        "sent_per_s": [per_second.get(s, 0) for s in span],
        "sent_per_s_from": span.start if span else None,
        "payout_thred_id": payout_thred_id,
        "pending_records": [
            {
                "kind": r.kind,
                "external_id": r.external_id,
                "attempts": r.attempts,
                "locked_until_s": _since(r.locked_until, wall0),
                "last_error": r.last_error,
            }
            for r in stuck
        ],
    }


async def measure(args: argparse.Namespace, info: dict[str, Any], db_url: str, server_pid: int) -> dict[str, Any]:
    held = info["held"]
    secret = "whsec_" + secrets.token_hex(16)
    config = Settings.model_validate(
        {
            "BRIDGE_DATABASE_URL": db_url,
            "THRED_API_URL": info["thred_url"],
            "THRED_PARTNER_ID": testing.PARTNER[0],
            "THRED_API_KEY": testing.PARTNER[1],
            "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
            "BRIDGE_STRIPE_API_BASE": info["stripe_url"],
            "BRIDGE_LOG_LEVEL": args.log_level,
            **({"BRIDGE_LEASE_SECONDS": args.lease_seconds} if args.lease_seconds else {}),
        }
    )
    result: dict[str, Any] = {}
    async with open_bridge(config) as bridge:
        business_id = str(uuid.uuid4())
        connection = await bridge.connections.add(
            NewConnection("stripe", business_id, {"api_key": testing.STRIPE_KEY}, (secret,))
        )
        timed = TimedProcessor(bridge.processors["stripe"])
        bridge.processors["stripe"] = timed
        delivery = testing.stripe_delivery(info["event"], secret)
        for base in (info["stripe_url"], info["thred_url"]):
            await http_json(base + STATS_PATH, "DELETE")
        await http_json(info["thred_url"] + "/_sandbox/requests/count", "DELETE")

        sql_stats = SqlStats(bridge.store.engine) if args.sql_stats else None
        finishes = FinishTimes(bridge.store.engine)
        sampler = RssSampler(args.rss_interval)
        sampler.start()
        await asyncio.sleep(0.3)  # a baseline
        stop = asyncio.Event()
        worker = asyncio.create_task(bridge.worker(concurrency=args.concurrency).run(stop))
        await asyncio.sleep(0.2)
        if args.tracemalloc:
            tracemalloc.start()
        profiler = Profiler(RESULTS / f"profile-payout-{args.db}.txt") if args.profile else None
        cpu0, server_cpu0, pg_cpu0, busy0 = self_cpu(), cpu_seconds(server_pid), postgres_cpu(), machine_busy()
        progress = Progress()

        def on_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            said = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}" if exc else ""
            progress.crashes[f"{context.get('message')}: {said}"[:400]] += 1

        asyncio.get_running_loop().set_exception_handler(on_loop_error)
        try:
            t0, wall0 = time.perf_counter(), datetime.now(UTC)
            headers = {k.lower(): v for k, v in delivery.headers.items()}  # as the web app's request has them
            notices = timed.verify(delivery.body, headers, connection, datetime.now(UTC))
            stored = await bridge.inbox.add(connection.id, "stripe", notices)
            t_stored = time.perf_counter()
            await watch(bridge, connection, args, t0, progress, held["charges"])
            t_end = time.perf_counter()
        finally:
            if profiler is not None:
                profiler.stop()
            cpu = self_cpu() - cpu0
            server_cpu = cpu_seconds(server_pid) - server_cpu0
            pg_cpu = sum(max(c - pg_cpu0.get(p, 0.0), 0.0) for p, c in postgres_cpu().items())
            busy1 = machine_busy()
            heap = tracemalloc.get_traced_memory() if args.tracemalloc else None
            if args.tracemalloc:
                tracemalloc.stop()
            stop.set()
            await worker
            gc.collect()
            finishes.close()
            if sql_stats is not None:
                sql_stats.close()
            sampler.stop()

        facts = await db_facts(bridge, connection.id, wall0)
        stripe = await http_json(info["stripe_url"] + STATS_PATH)
        thred = await http_json(info["thred_url"] + STATS_PATH)
        thred_counts: dict[str, int] = await http_json(info["thred_url"] + "/_sandbox/requests/count")
        thred_payout: dict[str, Any] | None = None
        if facts["payout_thred_id"]:
            assert bridge.thred is not None
            thred_payout = await bridge.thred.get(business_id, "payout", facts["payout_thred_id"])

    # --- timings ---
    calls = [(a - t0, b - t0, n) for a, b, n in timed.calls]
    ends = [(a - t0, b - t0 if b is not None else None, how) for a, b, how in finishes.finishes]
    committed = [e for e in ends if e[2] == "commit"]
    # The event is processed when its outbox commits; that transaction began after the movements call
    # whose records it holds (the last one to end before it began).
    processed_s = committed[0][1] if committed else None
    finish_started = committed[0][0] if committed else None
    before = [c for c in calls if finish_started is None or c[1] <= finish_started]
    started, fetched, movements = (before or calls or [(math.nan, math.nan, 0)])[-1]
    payout_sent_s = facts["records"].get("payout", {}).get("last_sent_s")
    settled = [facts["records"].get(k, {}).get("last_sent_s") for k in ("payment", "refund_payment")]
    last_child_s = max((s for s in settled if s is not None), default=None)
    listing = (
        stripe["first_at"].get("GET /v1/balance_transactions"),
        stripe["last_at"].get("GET /v1/balance_transactions"),
    )
    wall0_ts = wall0.timestamp()
    result["timings_s"] = {
        "total_to_payout_in_thred": payout_sent_s,
        "until_status_idle_seen": progress.finished_seen_s,
        "ingest_verify_and_store": round(t_stored - t0, 4),
        "until_claimed": round(calls[0][0], 3) if calls else None,
        "stripe_fetch_and_translate": round(fetched - started, 3),
        "stripe_listing_window": (
            [round(listing[0] - wall0_ts, 3), round(listing[1] - wall0_ts, 3)] if listing[0] and listing[1] else None
        ),
        "plan_records": round(finish_started - fetched, 3) if finish_started is not None else None,
        "store_outbox_transaction": (
            round(processed_s - finish_started, 3) if processed_s is not None and finish_started is not None else None
        ),
        "plan_and_commit_outbox": round(processed_s - fetched, 3) if processed_s is not None else None,
        "event_processed": round(processed_s, 3) if processed_s is not None else None,
        "event_processed_at_column": facts["events"][0]["processed_s"] if facts["events"] else None,
        "dispatch": round(payout_sent_s - processed_s, 3) if payout_sent_s and processed_s else None,
        "dispatch_until_last_payment": round(last_child_s - processed_s, 3) if last_child_s and processed_s else None,
        "payout_post_after_last_payment": round(payout_sent_s - last_child_s, 3)
        if payout_sent_s and last_child_s
        else None,
        "measurement_window": round(t_end - t0, 3),
    }
    result["movements"] = movements
    result["outbox_transactions"] = [
        {"start_s": round(a, 3), "end_s": round(b, 3) if b is not None else None, "ended": how} for a, b, how in ends
    ]
    result["processing_calls"] = [{"start_s": round(a, 3), "end_s": round(b, 3), "movements": n} for a, b, n in calls]
    result["progress"] = {
        "polls": progress.polls,
        "log": progress.log,
        "stored_new": stored,
        "stalled_at_s": progress.stalled_s,
        "timed_out": progress.timed_out,
        "unretrieved_task_exceptions": dict(progress.crashes),
    }
    result["status"] = _status_dict(progress.last)
    result["db"] = facts
    result["requests"] = {
        "stripe": {k: stripe[k] for k in ("requests", "by_route", "handler_s", "handler_s_by_route", "world_requests")},
        "thred": {
            "requests": sum(thred_counts.values()),
            "by_route": thred_counts,
            "handler_s": thred["handler_s"],
            "handler_s_by_route": thred["handler_s_by_route"],
        },
    }
    result["cpu_s"] = {
        "measured_process": round(cpu, 2),
        "server_process": round(server_cpu, 2),
        **({"postgres": round(pg_cpu, 2)} if args.db == "postgres" else {}),
    }
    window = t_end - t0
    busy_s, all_s = (busy1[0] - busy0[0]) / CLK_TCK, (busy1[1] - busy0[1]) / CLK_TCK
    ours = cpu + server_cpu + (pg_cpu if args.db == "postgres" else 0.0)
    result["cpu_s"]["machine_busy_pct"] = round(100 * busy_s / max(all_s, 1e-9), 1)
    result["cpu_s"]["other_processes_pct"] = round(100 * max(busy_s - ours, 0.0) / max(all_s, 1e-9), 1)
    result["cpu_s"]["measured_pct_of_one_cpu"] = round(100 * cpu / window, 1) if window else None
    result["cpu_s"]["server_pct_of_one_cpu"] = round(100 * server_cpu / window, 1) if window else None
    result["memory"] = _memory(sampler, t0, t_end, processed_s, heap)
    result["thred_payout"] = _payout_check(thred_payout, held)
    if sql_stats is not None:
        result["sql"] = sql_stats.summary()
    if profiler is not None:
        result["profile"] = summarise_profile(profiler.out)
    return result


def _status_dict(status: ConnectionStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    keep = ("received", "synced", "waiting", "failed", "records_sent", "records_waiting", "records_failed")
    out: dict[str, Any] = {k: getattr(status, k) for k in keep}
    out["failures"] = [list(f) for f in status.failures][:5]
    return out


def _memory(
    sampler: RssSampler,
    t0: float,
    t_end: float,
    processed_s: float | None,
    heap: tuple[int, int] | None,
    hwm_at_end: int | None = None,
) -> dict[str, Any]:
    """RSS before, during and after; ``hwm_at_end``: the kernel's peak when the run ended, before the checks
    (the Thred payout read back whole to check it is the benchmark's, not the bridge's)."""
    mb = 2**20
    before = sampler.between(t0 - 1.0, t0) or [rss_bytes()]
    during = sampler.between(t0, t_end) or before
    cut = t0 + processed_s if processed_s is not None else t_end
    processing = sampler.between(t0, cut) or before
    dispatching = sampler.between(cut, t_end) or processing
    series = [(round(t - t0, 1), round(rss / mb, 1)) for t, rss in sampler.samples if t >= t0 - 0.5]
    # One point a second in the JSON (the 100 ms samples are summarised above it).
    thinned = [p for i, p in enumerate(series) if i % max(1, round(1 / sampler.interval)) == 0]
    out: dict[str, Any] = {
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_event_mb": round(statistics.median(before) / mb, 1),
        "rss_peak_mb": round(max(during) / mb, 1),
        "rss_peak_processing_mb": round(max(processing) / mb, 1),
        "rss_peak_dispatching_mb": round(max(dispatching) / mb, 1),
        "rss_end_mb": round(during[-1] / mb, 1),
        "rss_samples": len(during),
        "rss_interval_s": sampler.interval,
        "rss_series_1s": thinned,
    }
    if hwm_at_end is not None:
        out["vm_hwm_at_end_mb"] = round(hwm_at_end / mb, 1)
    if heap is not None:
        out["tracemalloc_peak_mb"] = round(heap[1] / mb, 1)
        out["tracemalloc_end_mb"] = round(heap[0] / mb, 1)
    return out


def _payout_check(payout: dict[str, Any] | None, held: dict[str, Any]) -> dict[str, Any]:
    if payout is None:
        return {"found": False, "ok": False}
    payments = len(payout.get("payment_ids") or [])
    refund_payments = len(payout.get("refund_payment_ids") or [])
    variance = payout.get("amount_variance_cents")
    out = {
        "found": True,
        "payment_ids": payments,
        "refund_payment_ids": refund_payments,
        "payment_count": payout.get("payment_count"),
        "paid_out_amount_cents": payout.get("paid_out_amount_cents"),
        "expected_net_amount_cents": payout.get("expected_net_amount_cents"),
        "amount_variance_cents": variance,
        "fee_cents": payout.get("fee_cents"),
        "memo": payout.get("memo"),
    }
    out["ok"] = (
        payments == held["charges"]
        and refund_payments == held["refunds"]
        and variance == 0
        and payout.get("paid_out_amount_cents") == held["payout_amount_cents"]
    )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    configure_logging(args.log_level)
    report: dict[str, Any] = {
        "machine": machine_facts(args.db, args.pg_admin_url),
        "settings": {
            "db": args.db,
            "transactions": args.transactions,
            "concurrency": args.concurrency,
            "lease_seconds": args.lease_seconds or Settings.model_fields["lease_seconds"].default,
            "seed": args.seed,
            "poll_s": args.poll,
            "log_level": args.log_level,
            "tracemalloc": args.tracemalloc,
            "profile": args.profile,
            "sql_stats": args.sql_stats,
            "stripe_page_size": STRIPE_PAGE,
        },
        "note": (
            f"{os.cpu_count()} CPUs shared by the measured process, the server process (Stripe simulator + Thred "
            f"sandbox, one event loop){' and Postgres' if args.db == 'postgres' else ''}: whole-machine figures."
        ),
    }
    tmp = Path(tempfile.mkdtemp(prefix="thred-bench-payout-"))
    servers: Servers | None = None
    try:
        with database(args.db, tmp, args.pg_admin_url) as db_url:
            console.print(f"[dim]{args.db}: building a Stripe world of {args.transactions:,} charges …[/dim]")
            servers = Servers(args.transactions, args.seed, tmp / "servers.log")
            info = servers.ready()
            report["world"] = {**info["held"], "build_s": info["build_s"], "payout_id": info["payout"]["id"]}
            report["background_busy_pct_before"] = wait_quiet(args.quiet_timeout)
            console.print(f"[dim]{args.db}: one payout.paid event for {info['payout']['id']} …[/dim]")
            report["result"] = run_loop(measure(args, info, db_url, servers.proc.pid))
    finally:
        if servers is not None:
            servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report


# --- output --------------------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def render(report: dict[str, Any]) -> str:
    s, r = report["settings"], report["result"]
    t, mem, req, db = r["timings_s"], r["memory"], r["requests"], r["db"]
    check = r["thred_payout"]
    m = report["machine"]
    table = Table(title=f"payout, {s['db']}, N={s['transactions']:,}, concurrency {s['concurrency']}, "
                        f"lease {s['lease_seconds']:g} s ({m['nproc']} CPUs, {m['cpu_model']})")  # fmt: skip
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("event → payout in Thred", f"{_fmt(t['total_to_payout_in_thred'])} s"),
        ("  ingest (verify + inbox commit)", f"{_fmt(t['ingest_verify_and_store'], '.3f')} s"),
        ("  until the worker claimed it", f"{_fmt(t['until_claimed'], '.2f')} s"),
        ("  times the event was processed (Stripe listed)", f"{len(r['processing_calls'])}"),
        ("  Stripe fetches + translate", f"{_fmt(t['stripe_fetch_and_translate'])} s"),
        ("  plan the records", f"{_fmt(t['plan_records'], '.2f')} s"),
        ("  store the outbox (one transaction)", f"{_fmt(t['store_outbox_transaction'])} s"),
        ("  outbox transactions rolled back", f"{sum(1 for x in r['outbox_transactions'] if x['ended'] != 'commit')}"),
        ("  = event processed at", f"{_fmt(t['event_processed'])} s"),
        ("  dispatch (records → Thred)", f"{_fmt(t['dispatch'])} s"),
        ("    … until the last payment", f"{_fmt(t['dispatch_until_last_payment'])} s"),
        ("    … then the payout POST", f"{_fmt(t['payout_post_after_last_payment'], '.2f')} s"),
        ("Stripe requests (by route)", f"{req['stripe']['requests']:,} {req['stripe']['by_route']}"),
        ("Stripe simulator answering", f"{req['stripe']['handler_s']:.1f} s"),
        ("Thred requests", f"{req['thred']['requests']:,}"),
        ("Thred sandbox answering", f"{req['thred']['handler_s']:.1f} s"),
        ("records (by kind: records/sent/attempts)", f"{db['records_total']:,} "
         + ", ".join(f"{k} {v['records']}/{v['sent']}/{v['attempts']}" for k, v in db["records"].items())),
        ("peak RSS ru_maxrss", f"{mem['ru_maxrss_mb']:.0f} MB"),
        ("RSS before / peak processing / peak dispatching / end",
         f"{mem['rss_before_event_mb']:.0f} / {mem['rss_peak_processing_mb']:.0f} / "
         f"{mem['rss_peak_dispatching_mb']:.0f} / {mem['rss_end_mb']:.0f} MB"),
        ("CPU s: measured / server" + (" / postgres" if s["db"] == "postgres" else ""),
         " / ".join(f"{v}" for k, v in r["cpu_s"].items() if "pct" not in k)),
        ("machine busy / other processes",
         f"{r['cpu_s']['machine_busy_pct']} % / {r['cpu_s']['other_processes_pct']} %"),
        ("Thred payout: payments / refund payments / variance",
         f"{check.get('payment_ids')} / {check.get('refund_payment_ids')} / {check.get('amount_variance_cents')}"),
        ("check", "OK" if check["ok"] else "FAILED"),
    ]  # fmt: skip
    if "tracemalloc_peak_mb" in mem:
        rows.insert(16, ("Python heap peak (tracemalloc)", f"{mem['tracemalloc_peak_mb']:.0f} MB"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"[yellow]{report['note']}[/yellow]")
    if r["cpu_s"]["other_processes_pct"] > 10:
        console.print(f"[red]other processes used {r['cpu_s']['other_processes_pct']} % of the machine meanwhile[/red]")
    if r["progress"]["stalled_at_s"] is not None:
        console.print(f"[red]stalled at {r['progress']['stalled_at_s']} s; pending: {r['db']['pending_records']}[/red]")
    for text, n in r["progress"]["unretrieved_task_exceptions"].items():
        console.print(f"[red]{n} × {text}[/red]")
    if r["status"] and (r["status"]["failed"] or r["status"]["records_failed"]):
        console.print(f"[red]failures: {r['status']['failures']}[/red]")
    header = (
        "| DB | N | conc. | lease s | event → payout in Thred s | times processed | Stripe fetch + translate s "
        "| plan + commit s | dispatch s "
        "| Stripe req. | Thred req. | records | ru_maxrss MB | RSS before → peak → end MB | payout check |\n"
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    )
    row = (
        f"| {s['db']} | {s['transactions']:,} | {s['concurrency']} | {s['lease_seconds']:g} "
        f"| {_fmt(t['total_to_payout_in_thred'])} | {len(r['processing_calls'])} "
        f"| {_fmt(t['stripe_fetch_and_translate'])} | {_fmt(t['plan_and_commit_outbox'])} | {_fmt(t['dispatch'])} "
        f"| {req['stripe']['requests']:,} | {req['thred']['requests']:,} | {db['records_total']:,} "
        f"| {mem['ru_maxrss_mb']:.0f} | {mem['rss_before_event_mb']:.0f} → {mem['rss_peak_mb']:.0f} → "
        f"{mem['rss_end_mb']:.0f} | {'OK' if check['ok'] else 'FAILED'} |"
    )
    return header + "\n" + row


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Payout benchmark: one payout.paid event pulls in N charges.")
    parser.add_argument("--transactions", type=int, default=10_000, help="charges in the payout")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=16, help="bridge.worker(concurrency=…)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--lease-seconds", type=float, default=None, help="BRIDGE_LEASE_SECONDS (default: the bridge's)"
    )
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between connections.status polls")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--stall", type=float, default=90.0, help="give up when nothing is sent for this long")
    parser.add_argument("--rss-interval", type=float, default=0.1)
    parser.add_argument("--log-level", default="warning", help="the bridge's log level (info: a line per record)")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap's peak (slower)")
    parser.add_argument("--profile", action="store_true", help="py-spy this process during the run (slower)")
    parser.add_argument("--sql-stats", action="store_true", help="count and time the bridge's SQL statements")
    parser.add_argument("--quiet-timeout", type=float, default=120.0, help="max wait for an idle machine first")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", type=Path, default=None, help="default: bench/results/payout-<db>.json")
    parser.add_argument("--servers", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _terminated(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # SIGTERM: unwind, so the ``finally`` blocks stop the servers and drop the database


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.servers is not None:
        return servers_main(args.servers)
    signal.signal(signal.SIGTERM, _terminated)
    started = time.monotonic()
    report = run(args)
    report["wall_s"] = round(time.monotonic() - started, 1)
    output = args.output or RESULTS / f"payout-{args.db}.json"
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    markdown = render(report)
    console.print(f"\nMarkdown row (results in {output}):\n")
    print(markdown)
    return 0 if report["result"]["thred_payout"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
