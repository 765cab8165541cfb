"""Dispatch benchmark (issue 14): records already in the outbox → Thred, against a rate-limited Thred stand-in.

    .venv/bin/python -m bench.dispatch --db sqlite --records 10000 --latency-ms 50 --concurrency 32 --json

The command line and the JSON's first fields (``records``, ``seconds``, ``records_per_s``, ``bound_per_s``,
``cpu_ms_per_record``, ``peak_rss_mb``, ``order_violations``, ``duplicates``) are pinned: other tools run it.
Everything runs on 127.0.0.1 and stops by itself.

1. The **Thred stand-in** runs in another process (this script with ``--serve-thred``): the Thred sandbox (in
   memory) behind an ASGI middleware of this script's. For each ``/v1/`` call it refuses with 429 and
   ``Retry-After`` when ``--concurrency`` calls are in flight already, else waits ``--latency-ms`` and passes the
   call on. It checks each create as it arrives (an invoice whose customer, a payment whose customer or invoice
   Thred has not created yet, is an order violation) and counts creates per (kind, external id) that the
   sandbox answered 2xx (sent more than once = a duplicate). ``GET /_bench/stats`` reports (in flight at most and
   on average, 429s, statuses, routes, its own CPU); ``DELETE`` resets.
2. The **measured process** (this script) makes a fresh database (a SQLite file in a temp dir, or a throwaway
   Postgres database, dropped at the end), opens the bridge with ``open_bridge`` (Thred = the stand-in), adds a
   Stripe connection and queues the records of about N/2 Stripe charges in the outbox, in one transaction, with
   the product's own functions (``Charge`` movements → ``records_for`` → ``tx.add_records``): 90 % walk-in
   charges (one walk-in customer for all of them), 10 % charges of Stripe customers from a pool of one per 25
   charges, each charge an invoice and an invoice payment, the customers first. Then, on an idle machine
   (``wait_quiet``), it starts the clock, its CPU (``getrusage``), an RSS sampler and the product's worker
   (``bridge.worker(dispatch_concurrency=…)``), and polls ``bridge.connections.status`` until no record waits.
3. Figures: records sent (status ``sent`` in the database), the seconds from the worker's start to the last
   record's ``sent_at``, records/s and the bound C ÷ L, the bridge process's user+sys CPU per record, its peak
   RSS during the send (VmHWM reset before it, and 100 ms samples), order violations (the stand-in's checks, and
   a child whose ``sent_at`` is before its parent's in the database) and duplicates; beside them the 429s, the
   stand-in's and Postgres's CPU, the machine's busy share and what other processes used.

``--json`` prints the JSON object alone on stdout (everything else goes to stderr); the JSON is always written
to ``bench/results/dispatch-<db>-<N>-<L>ms-c<C>.json``. ``--profile`` runs py-spy on the measured process during
the send and adds its top frames to the JSON (a profiled run's figures are slower: do not quote them).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: import ``bench.*`` from the repository root, and keep bench/ off the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import contextlib
import gc
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from sqlalchemy import and_, func, or_, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench.payout import (
    CLK_TCK,
    HOST,
    STATS_PATH,
    Profiler,
    RssSampler,
    Servers,
    SqlStats,
    cpu_seconds,
    database,
    http_json,
    machine_busy,
    machine_facts,
    postgres_cpu,
    route_of,
    self_cpu,
    summarise_profile,
    vm_hwm_bytes,
    wait_quiet,
)
from thred_bridge import testing
from thred_bridge.bootstrap import Bridge, open_bridge
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Charge, Party
from thred_bridge.domain.records import Record, records_for
from thred_bridge.malloc import return_large_blocks
from thred_bridge.observe import configure_logging
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.connections import NewConnection
from thred_bridge.serving import run as run_loop
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.store.tables import record_parents, records

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MB = 2**20
WALK_IN_SHARE = 0.90
CHARGES_PER_POOL_CUSTOMER = 25
RECORD_MIX = (
    "Stripe charges, each an invoice and an invoice payment (customer → invoice → payment): 90 % walk-in (one "
    "walk-in customer shared by all), 10 % of Stripe customers from a pool of one per 25 charges; built with "
    "records_for(Charge movements) and queued with tx.add_records in one transaction before the clock starts"
)

console = Console(stderr=True, highlight=False, soft_wrap=True)


# --- the Thred stand-in (another process) ------------------------------------------------------------------------

_BUSINESS_PREFIX = "/v1/platform/businesses/"
_KINDS_BY_TAIL = {
    "customers": "customer",
    "invoices": "invoice",
    "invoices/payments": "payment",
    "invoices/refunds": "refund",
    "payouts": "payout",
}


def create_kind(path: str) -> str | None:
    """The record kind a POST to ``path`` creates (``…/businesses/{id}/invoices/payments/`` → payment), else None."""
    if not path.startswith(_BUSINESS_PREFIX):
        return None
    _business, _, tail = path[len(_BUSINESS_PREFIX) :].strip("/").partition("/")
    parts = tail.split("/")
    if len(parts) == 4 and parts[:2] == ["invoices", "refunds"] and parts[3] == "payments":
        return "refund_payment"
    return _KINDS_BY_TAIL.get(tail)


def parents_named(kind: str, body: dict[str, Any], path: str) -> list[tuple[str, Any]]:
    """The Thred ids a create names that must exist before it: (what, id)."""
    named: list[tuple[str, Any]] = []
    if kind in ("invoice", "payment") and body.get("customer_id") is not None:
        named.append(("customer_id", body["customer_id"]))
    if kind == "payment":
        for n, alloc in enumerate(body.get("allocations") or []):
            if isinstance(alloc, dict):
                named.append((f"allocations.{n}.invoice_id", alloc.get("invoice_id")))
    if kind == "refund":
        named.append(("invoice_id", body.get("invoice_id")))
    if kind == "refund_payment":
        named.append(("refund (URL)", path.strip("/").split("/")[-2]))
    return named


def created_id(kind: str, answer: Any) -> str | None:
    if not isinstance(answer, dict):
        return None
    if kind == "payment" and isinstance(answer.get("payment"), dict):
        answer = answer["payment"]
    value = answer.get("id")
    return value if isinstance(value, str) else None


class ThredStandIn:
    """ASGI middleware in front of the sandbox: a concurrency limit (429 + Retry-After beyond it), a fixed
    latency, and the order and duplicate checks of every create."""

    def __init__(self, app: ASGIApp, *, latency_s: float, limit: int, retry_after: str) -> None:
        self.app = app
        self.latency_s = latency_s
        self.limit = limit
        self.retry_after = retry_after.encode()
        self.reset()

    def reset(self) -> None:
        self.in_flight = 0
        self.in_flight_max = 0
        self._area = 0.0  # ∫ in_flight dt
        self._changed = time.perf_counter()
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.refused = 0
        self.routes: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.sent: Counter[tuple[str, str]] = Counter()  # (kind, external id) → creates answered 2xx
        self.created: Counter[tuple[str, str]] = Counter()  # … answered 201
        self.known: set[str] = set()  # Thred ids created so far
        self.order_violations = 0
        self.violation_samples: list[str] = []
        self.cpu0 = _own_cpu()

    def _level(self, delta: int) -> None:
        now = time.perf_counter()
        self._area += self.in_flight * (now - self._changed)
        self._changed = now
        self.in_flight += delta
        self.in_flight_max = max(self.in_flight_max, self.in_flight)

    def stats(self) -> dict[str, Any]:
        self._level(0)
        span = (self.last_at - self.first_at) if self.first_at is not None and self.last_at is not None else 0.0
        by_kind: Counter[str] = Counter(kind for kind, _ in self.sent)
        return {
            "limit": self.limit,
            "latency_ms": round(self.latency_s * 1000, 3),
            "in_flight_max": self.in_flight_max,
            "in_flight_mean": round(self._area / span, 2) if span > 0 else None,
            "active_span_s": round(span, 3),
            "refused_429": self.refused,
            "requests_admitted": sum(self.routes.values()),
            "by_route": dict(sorted(self.routes.items())),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "error_samples": self.error_samples,
            "records_created": len(self.sent),
            "records_created_by_kind": dict(sorted(by_kind.items())),
            "duplicates": sum(1 for n in self.sent.values() if n > 1),
            "duplicate_samples": [f"{k} {e}" for (k, e), n in self.sent.items() if n > 1][:10],
            "created_201_more_than_once": sum(1 for n in self.created.values() if n > 1),
            "order_violations": self.order_violations,
            "violation_samples": self.violation_samples,
            "cpu_s": round(_own_cpu() - self.cpu0, 3),
        }

    async def _answer(self, send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == STATS_PATH:
            if scope["method"] == "DELETE":
                self.reset()
            await self._answer(send, 200, orjson.dumps(self.stats()), [])
            return
        if not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        now = time.perf_counter()
        self.first_at = self.first_at if self.first_at is not None else now
        self.last_at = now
        if self.in_flight >= self.limit:
            self.refused += 1
            self.statuses[429] += 1
            body = orjson.dumps({"error": "Too many requests.", "error_code": "throttled", "details": {}})
            await self._answer(send, 429, body, [(b"retry-after", self.retry_after)])
            return
        self._level(+1)
        try:
            await self._admitted(scope, receive, send, path)
        finally:
            self._level(-1)
            self.last_at = time.perf_counter()

    async def _admitted(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        method: str = scope["method"]
        self.routes[f"{method} {route_of(path.rstrip('/'))}"] += 1
        kind = create_kind(path) if method == "POST" else None
        raw = b""
        if kind is not None:  # read the body to check it, then hand it on
            more = True
            while more:
                message = await receive()
                raw += message.get("body", b"")
                more = bool(message.get("more_body", False))
            self._check_order(kind, raw, path)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if kind is None:
            status = await self._pass(scope, receive, send, None)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        chunks: list[bytes] = []
        status = await self._pass(scope, replay, send, chunks)
        self._record(kind, raw, status, b"".join(chunks))

    async def _pass(self, scope: Scope, receive: Receive, send: Send, chunks: list[bytes] | None) -> int:
        status = 0

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif chunks is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        self.statuses[status] += 1
        if status >= 400:
            self.errors[f"{scope['method']} {route_of(scope['path'].rstrip('/'))} {status}"] += 1
        return status

    def _check_order(self, kind: str, raw: bytes, path: str) -> None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict):
            return
        for what, thred_id in parents_named(kind, body, path):
            if thred_id not in self.known:
                self.order_violations += 1
                if len(self.violation_samples) < 10:
                    self.violation_samples.append(f"{kind} {body.get('external_id')}: {what} {thred_id} not created")

    def _record(self, kind: str, raw: bytes, status: int, answer: bytes) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(raw)
            ext = body.get("external_id") if isinstance(body, dict) else None
            if 200 <= status < 300:
                thred_id = created_id(kind, orjson.loads(answer))
                if thred_id is not None:
                    self.known.add(thred_id)
                if isinstance(ext, str):
                    self.sent[(kind, ext)] += 1
                    if status == 201:
                        self.created[(kind, ext)] += 1
            elif len(self.error_samples) < 10:
                self.error_samples.append(f"{kind} {ext}: {status} {answer[:200].decode(errors='replace')}")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve_thred_main(spec_json: str) -> int:
    """The ``--serve-thred`` process: the sandbox behind the stand-in middleware; prints its URL as one JSON
    line, serves until stdin closes."""
    spec = orjson.loads(spec_json)

    async def serve() -> None:
        app = ThredStandIn(
            create_sandbox(partners=dict([testing.PARTNER])),
            latency_s=float(spec["latency_ms"]) / 1000,
            limit=int(spec["limit"]),
            retry_after=str(spec["retry_after"]),
        )
        async with serve_in_background(app, host=HOST) as url:
            sys.stdout.write(orjson.dumps({"thred_url": url, "pid": os.getpid()}).decode() + "\n")
            sys.stdout.flush()
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)

    run_loop(serve())
    return 0


class StandInServer(Servers):
    """The stand-in's process, stopped as ``bench.payout.Servers`` stops its own (stdin closed, TERM, KILL)."""

    def __init__(self, spec: dict[str, Any], log: Path) -> None:  # its own command line; stop() is inherited
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve-thred", orjson.dumps(spec).decode()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            )  # fmt: skip


# --- the records -------------------------------------------------------------------------------------------------


def plan(n: int, seed: int) -> tuple[list[Record], dict[str, Any]]:
    """At least ``n`` records (at most two more): Stripe charges booked as the product books them."""
    rng = random.Random(seed)
    pool = [
        Party(key=f"cus_bench{seed:02d}{i:08d}", name=f"Customer {i}", email=f"customer{i}@example.com")
        for i in range(max(1, n // (2 * CHARGES_PER_POOL_CUSTOMER)))
    ]
    walk_in = Party("walkin")
    used: set[str] = set()
    charges: list[Charge] = []
    count = 0
    start = datetime(2026, 12, 1, tzinfo=UTC)
    while count < n:
        i = len(charges)
        party = walk_in if rng.random() < WALK_IN_SHARE else rng.choice(pool)
        count += 2 + (party.key not in used)
        used.add(party.key)
        cents = rng.randrange(500, 50_000)
        charge_id = f"ch_bench{seed:02d}{i:010d}"
        intent = f"pi_bench{seed:02d}{i:010d}"
        charges.append(
            Charge(
                processor="stripe", object_id=charge_id, amount=Money(cents, "EUR"),
                fee=Money(round(cents * 0.015) + 25, "EUR"), occurred_at=start + timedelta(seconds=i),
                customer=party, description=f"Order {i + 1}", method="card", reference=intent,
                metadata={"stripe_charge_id": charge_id, "stripe_balance_transaction": f"txn_bench{seed:02d}{i:010d}",
                          "stripe_payment_intent": intent},
            )
        )  # fmt: skip
    planned = records_for(charges)
    mix = {
        "description": RECORD_MIX,
        "charges": len(charges),
        "walk_in_charges": sum(1 for c in charges if c.customer.key == "walkin"),
        "customers": len(used),
        "records": len(planned),
        "by_kind": dict(Counter(r.kind for r in planned)),
    }
    return planned, mix


# --- the measured process ---------------------------------------------------------------------------------------


def _histogram(bridge: Bridge, name: str) -> dict[str, float]:
    """A histogram of the bridge's metrics: how many observations, and their mean."""
    count = bridge.metrics.registry.get_sample_value(f"{name}_count") or 0.0
    total = bridge.metrics.registry.get_sample_value(f"{name}_sum") or 0.0
    return {"count": count, "mean": round(total / count, 2) if count else 0.0}


def spawn_worker(config: Settings, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """Another worker process (``thred-bridge worker``) on the same database and Thred stand-in."""
    env = {
        **os.environ,
        "BRIDGE_DATABASE_URL": config.database_url,
        "THRED_API_URL": config.thred_api_url or "",
        "THRED_PARTNER_ID": config.thred_partner_id or "",
        "THRED_API_KEY": config.thred_api_key.get_secret_value() if config.thred_api_key else "",
        "BRIDGE_SECRET_KEY": config.secret_key.get_secret_value() if config.secret_key else "",
        "BRIDGE_LOG_LEVEL": args.log_level,
        "BRIDGE_DISPATCH_CONCURRENCY": str(args.worker_concurrency),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "thred_bridge", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr
    )


def thread_cpu() -> dict[str, float]:
    """user+sys CPU seconds of each thread of this process, by thread name (``/proc/self/task``; Linux)."""
    out: dict[str, float] = {}
    tasks = Path("/proc/self/task")
    if not tasks.exists():
        return out
    for task in tasks.iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of stat
            key = name if name not in out else f"{name} ({task.name})"
            out[key] = seconds
    return out


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (``clear_refs`` 5), so VmHWM is the peak of what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def db_facts(bridge: Bridge, connection_id: str, wall0: datetime) -> dict[str, Any]:
    """From the outbox: records by kind and status, attempts, when they were sent, and children sent before
    their parents (``sent_at``)."""
    child, parent = records.alias("child"), records.alias("parent")
    early = (
        select(func.count())
        .select_from(
            record_parents.join(child, child.c.id == record_parents.c.record_id).outerjoin(
                parent,
                and_(
                    parent.c.connection_id == record_parents.c.connection_id,
                    parent.c.kind == record_parents.c.kind,
                    parent.c.external_id == record_parents.c.external_id,
                ),
            )
        )
        .where(
            child.c.connection_id == connection_id,
            child.c.status == "sent",
            or_(parent.c.sent_at.is_(None), child.c.sent_at < parent.c.sent_at),
        )
    )
    async with bridge.store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(records.c.kind, records.c.status, records.c.attempts, records.c.sent_at).where(
                    records.c.connection_id == connection_id
                )
            )
        ).all()
        before_parent = int(await conn.scalar(early) or 0)
        errors = (
            await conn.execute(
                select(records.c.kind, records.c.status, records.c.last_error)
                .where(records.c.connection_id == connection_id, records.c.status != "sent")
                .limit(5)
            )
        ).all()
        await conn.rollback()
    by_kind: dict[str, Counter[str]] = {}
    sent_s: list[float] = []
    attempts: Counter[int] = Counter()
    for row in rows:
        by_kind.setdefault(row.kind, Counter())[row.status] += 1
        attempts[row.attempts] += 1
        if row.sent_at is not None:
            sent_s.append((row.sent_at - wall0).total_seconds())
    sent_s.sort()
    per_second: Counter[int] = Counter(int(t) for t in sent_s)
    return {
        "total": len(rows),
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "attempts": {str(k): v for k, v in sorted(attempts.items())},
        "sent_s": sent_s,
        "sent_per_s": [per_second.get(s, 0) for s in range(int(sent_s[-1]) + 1)] if sent_s else [],
        "sent_before_parent": before_parent,
        "not_sent_samples": [f"{r.kind} {r.status}: {r.last_error}" for r in errors],
    }


async def measure(args: argparse.Namespace, thred_url: str, standin_pid: int, db_url: str) -> dict[str, Any]:
    return_large_blocks()  # as ``thred-bridge worker`` does at start
    config = Settings.model_validate(
        {
            "BRIDGE_DATABASE_URL": db_url,
            "THRED_API_URL": thred_url,
            "THRED_PARTNER_ID": testing.PARTNER[0],
            "THRED_API_KEY": testing.PARTNER[1],
            "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
            "BRIDGE_LOG_LEVEL": args.log_level,
        }
    )
    out: dict[str, Any] = {}
    async with open_bridge(config) as bridge:
        connection = await bridge.connections.add(
            NewConnection("stripe", str(uuid.uuid4()), {"api_key": testing.STRIPE_KEY}, ("whsec_" + "0" * 32,))
        )
        started = time.perf_counter()
        planned, out["record_mix"] = plan(args.records, args.seed)
        out["plan_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        async with bridge.store.transaction() as tx:
            await tx.add_records(connection.id, planned, None, datetime.now(UTC))
        out["queue_s"] = round(time.perf_counter() - started, 3)
        queued = len(planned)
        del planned
        await http_json(thred_url + STATS_PATH, "DELETE")
        gc.collect()
        return_large_blocks()
        out["machine_busy_pct_before"] = wait_quiet(args.quiet_timeout)
        sampler = RssSampler(0.1)
        sampler.start()
        sql_stats = SqlStats(bridge.store.engine) if args.sql_stats else None
        await asyncio.sleep(0.3)
        profile_file = Path(tempfile.gettempdir()) / f"thred-bench-dispatch-{os.getpid()}.txt"
        profiler = Profiler(profile_file, rate=args.profile_rate) if args.profile else None
        hwm_reset = _reset_hwm()
        rss0 = max(sampler.between(time.perf_counter() - 1, time.perf_counter()), default=0)
        cpu0, standin0, pg0, busy0 = self_cpu(), cpu_seconds(standin_pid), postgres_cpu(), machine_busy()
        usage0, threads0 = resource.getrusage(resource.RUSAGE_SELF), thread_cpu()
        t0, wall0 = time.perf_counter(), datetime.now(UTC)
        stop = asyncio.Event()
        others = [spawn_worker(config, args) for _ in range(args.workers - 1)]  # started with the clock
        worker = asyncio.create_task(bridge.worker(dispatch_concurrency=args.worker_concurrency).run(stop))
        polls, poll_s, timed_out, stalled = 0, 0.0, False, False
        moved_at, last_sent = t0, -1
        try:
            while True:
                await asyncio.sleep(args.poll)
                asked = time.perf_counter()
                status = await bridge.connections.status(connection)
                now = time.perf_counter()
                polls, poll_s = polls + 1, poll_s + (now - asked)
                if status.records_waiting == 0:
                    break
                if worker.done():
                    worker.result()  # raises what stopped it
                    raise RuntimeError("the worker stopped with records waiting")
                if status.records_sent != last_sent:
                    moved_at, last_sent = now, status.records_sent
                if now - moved_at > args.stall:
                    stalled = True
                    console.print(f"[red]stalled: nothing sent for {args.stall:.0f} s: {status}[/red]")
                    break
                if now - t0 > args.timeout:
                    timed_out = True
                    console.print(f"[red]timeout after {args.timeout:.0f} s: {status}[/red]")
                    break
            t_seen = time.perf_counter()
        finally:
            cpu = self_cpu() - cpu0
            usage1, threads1 = resource.getrusage(resource.RUSAGE_SELF), thread_cpu()
            others_cpu = [cpu_seconds(proc.pid) for proc in others]
            for proc in others:
                proc.terminate()
            for proc in others:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            cpu_measured, cpu = cpu, cpu + sum(others_cpu)
            standin_cpu = cpu_seconds(standin_pid) - standin0
            pg_cpu = sum(max(c - pg0.get(p, 0.0), 0.0) for p, c in postgres_cpu().items())
            busy1 = machine_busy()
            hwm = vm_hwm_bytes()
            if profiler is not None:
                profiler.stop()
            stop.set()
            await worker
            sampler.stop()
            if sql_stats is not None:
                sql_stats.close()
        facts = await db_facts(bridge, connection.id, wall0)
        batches = _histogram(bridge, "bridge_dispatch_batch_records")
        limit = bridge.thred.limit if bridge.thred is not None else None
        limit_facts = (
            {"ceiling": limit.ceiling, "at_the_end": round(limit.limit, 1), "refusals": limit.refusals,
             "decreases": limit.decreases}
            if limit is not None else None
        )  # fmt: skip
    stand_in = await http_json(thred_url + STATS_PATH)
    sent_s: list[float] = facts.pop("sent_s")
    sent = sum(v.get("sent", 0) for v in facts["by_kind"].values())
    failed = sum(v.get("failed", 0) for v in facts["by_kind"].values())
    sampled = max(sampler.between(t0, t_seen), default=0)
    seconds = sent_s[-1] if sent_s else t_seen - t0
    window = t_seen - t0
    busy_s, all_s = (busy1[0] - busy0[0]) / CLK_TCK, (busy1[1] - busy0[1]) / CLK_TCK
    ours = cpu + standin_cpu + (pg_cpu if args.db == "postgres" else 0.0)
    bound = args.concurrency / (args.latency_ms / 1000) if args.latency_ms > 0 else None
    steady = None
    if len(sent_s) >= 20:
        lo, hi = sent_s[len(sent_s) // 10], sent_s[(9 * len(sent_s)) // 10]
        steady = round(0.8 * len(sent_s) / (hi - lo), 1) if hi > lo else None
    order_violations = int(stand_in["order_violations"]) + int(facts["sent_before_parent"])
    result: dict[str, Any] = {
        "records": sent,
        "seconds": round(seconds, 3),
        "records_per_s": round(sent / seconds, 1) if seconds > 0 else None,
        "bound_per_s": round(bound, 1) if bound is not None else None,
        "pct_of_bound": round(100 * sent / seconds / bound, 1) if bound and seconds > 0 else None,
        "cpu_ms_per_record": round(1000 * cpu / sent, 3) if sent else None,
        "peak_rss_mb": round(max(hwm if hwm_reset else 0, sampled) / MB, 1),
        "order_violations": order_violations,
        "duplicates": int(stand_in["duplicates"]),
        "db": args.db,
        "thred_call_limit": limit_facts,
        "mark_sent_transactions": batches,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "worker_concurrency": args.worker_concurrency,
        "retry_after": args.retry_after,
        "records_queued": queued,
        "records_failed": failed,
        "records_not_sent": queued - sent,
        "all_sent": sent == queued and failed == 0,
        "steady_records_per_s": steady,
        "http_429": int(stand_in["refused_429"]),
        "thred_4xx_5xx_other": sum(v for k, v in stand_in["statuses"].items() if int(k) >= 400 and k != "429"),
        "workers": args.workers,
        "cpu_s": {
            "bridge": round(cpu, 3),
            "bridge_measured_process": round(cpu_measured, 3),
            "bridge_other_workers": [round(c, 3) for c in others_cpu],
            "bridge_user": round(usage1.ru_utime - usage0.ru_utime, 3),
            "bridge_sys": round(usage1.ru_stime - usage0.ru_stime, 3),
            "bridge_by_thread": {
                name: round(seconds - threads0.get(name, 0.0), 3)
                for name, seconds in sorted(threads1.items(), key=lambda kv: -kv[1])
                if seconds - threads0.get(name, 0.0) >= 0.01
            },
            "thred_stand_in": round(standin_cpu, 3),
            "thred_stand_in_self_reported": stand_in["cpu_s"],
            **({"postgres": round(pg_cpu, 3)} if args.db == "postgres" else {}),
            "bridge_pct_of_one_cpu": round(100 * cpu / window, 1) if window > 0 else None,
            "thred_stand_in_ms_per_record": round(1000 * standin_cpu / sent, 3) if sent else None,
            **(
                {"postgres_ms_per_record": round(1000 * pg_cpu / sent, 3) if sent else None}
                if args.db == "postgres"
                else {}
            ),
            "machine_busy_pct": round(100 * busy_s / max(all_s, 1e-9), 1),
            "other_processes_pct": round(100 * max(busy_s - ours, 0.0) / max(all_s, 1e-9), 1),
        },
        "wall_s": {
            "start_to_first_sent": round(sent_s[0], 3) if sent_s else None,
            "first_to_last_sent": round(sent_s[-1] - sent_s[0], 3) if sent_s else None,
            "last_sent_to_status_seen": round(window - seconds, 3),
            "until_status_seen": round(window, 3),
            "status_polls": polls,
            "status_poll_s": round(poll_s, 3),
            "poll_interval_s": args.poll,
        },
        "memory_mb": {
            "peak_rss_send": round(max(hwm if hwm_reset else 0, sampled) / MB, 1),
            "vm_hwm_send": round(hwm / MB, 1) if hwm_reset else None,
            "rss_peak_sampled_100ms": round(sampled / MB, 1),
            "rss_before_send": round(rss0 / MB, 1),
            "ru_maxrss_whole_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
        "thred_stand_in": stand_in,
        "outbox": facts,
        "timed_out": timed_out,
        "stalled": stalled,
        **out,
    }
    if sql_stats is not None:
        summary = sql_stats.summary()
        summary["statements_per_record"] = round(summary["statements"] / sent, 2) if sent else None
        result["sql"] = summary
    if profiler is not None:
        summary = summarise_profile(profile_file)
        summary["file"] = None  # a temp file, removed: the JSON names no machine path
        result["profile"] = summary
        if args.profile_out:
            shutil.copyfile(profile_file, args.profile_out)
        profile_file.unlink(missing_ok=True)
    result["ok"] = (
        result["all_sent"] and order_violations == 0 and result["duplicates"] == 0 and not (timed_out or stalled)
    )
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    configure_logging(args.log_level)
    facts = machine_facts(args.db, args.pg_admin_url)
    tmp = Path(tempfile.mkdtemp(prefix="thred-bench-dispatch-"))
    server: StandInServer | None = None
    try:
        with database(args.db, tmp, args.pg_admin_url) as db_url:
            spec = {"latency_ms": args.latency_ms, "limit": args.concurrency, "retry_after": args.retry_after}
            server = StandInServer(spec, tmp / "thred.log")
            info = server.ready()
            console.print(
                f"[dim]{args.db}: {args.records:,} records, latency {args.latency_ms:g} ms, limit "
                f"{args.concurrency}, worker concurrency {args.worker_concurrency} …[/dim]"
            )
            result = run_loop(measure(args, info["thred_url"], server.proc.pid, db_url))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = {
        "cores": facts["nproc"],
        "cpu_model": facts["cpu_model"],
        "python": facts["python"],
        "platform": facts["platform"],
        **({"postgres": facts["postgres"]} if args.db == "postgres" else {}),
        "packages": facts["packages"],
    }
    result["settings"] = {
        "records": args.records,
        "seed": args.seed,
        "poll_s": args.poll,
        "log_level": args.log_level,
        "profile": args.profile,
        "sql_stats": args.sql_stats,
        "lease_seconds": Settings.model_fields["lease_seconds"].default,
        "max_attempts": Settings.model_fields["max_attempts"].default,
    }
    result["note"] = (
        f"{facts['nproc']} CPUs shared by the bridge process, the Thred stand-in (sandbox + middleware, one event "
        f"loop){' and Postgres' if args.db == 'postgres' else ''}. cpu_ms_per_record: the bridge process's "
        "user+sys CPU from the worker's start until status showed nothing waiting, ÷ records sent. seconds: from "
        "the worker's start to the last record's sent_at."
    )
    return result


# --- output ------------------------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def render(r: dict[str, Any]) -> None:
    out = Console(highlight=False, soft_wrap=True)
    cpu, wall, m = r["cpu_s"], r["wall_s"], r["machine"]
    table = Table(
        title=f"dispatch, {r['db']}, {r['records']:,} records, latency {r['latency_ms']:g} ms, limit "
        f"{r['concurrency']}, worker concurrency {r['worker_concurrency']} ({m['cores']} CPUs)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("records sent / queued / failed", f"{r['records']:,} / {r['records_queued']:,} / {r['records_failed']}"),
        ("seconds (worker start → last sent_at)", f"{r['seconds']:.2f}"),
        ("records/s (steady, middle 80 %)", f"{_fmt(r['records_per_s'])} ({_fmt(r['steady_records_per_s'])})"),
        ("bound C ÷ L records/s (% reached)", f"{_fmt(r['bound_per_s'])} ({_fmt(r['pct_of_bound'])} %)"),
        ("bridge CPU ms per record", f"{_fmt(r['cpu_ms_per_record'], '.3f')}"),
        ("bridge CPU s (% of one CPU)", f"{cpu['bridge']:.2f} ({_fmt(cpu['bridge_pct_of_one_cpu'])} %)"),
        ("stand-in CPU s (ms per record)", f"{cpu['thred_stand_in']:.2f} ({cpu['thred_stand_in_ms_per_record']})"),
        ("peak RSS MB (send)", f"{r['peak_rss_mb']:.1f}"),
        ("order violations / duplicates", f"{r['order_violations']} / {r['duplicates']}"),
        ("429s / other Thred errors", f"{r['http_429']} / {r['thred_4xx_5xx_other']}"),
        ("Thred in flight max / mean", f"{r['thred_stand_in']['in_flight_max']} / "
                                      f"{_fmt(r['thred_stand_in']['in_flight_mean'], '.1f')}"),
        ("start → first sent / first → last / last → seen s",
         f"{_fmt(wall['start_to_first_sent'], '.2f')} / {_fmt(wall['first_to_last_sent'], '.2f')} / "
         f"{_fmt(wall['last_sent_to_status_seen'], '.2f')}"),
        ("machine busy / other processes %", f"{cpu['machine_busy_pct']} / {cpu['other_processes_pct']}"),
        ("check", "OK" if r["ok"] else "FAILED"),
    ]  # fmt: skip
    if "postgres" in cpu:
        rows.insert(7, ("Postgres CPU s (ms per record)", f"{cpu['postgres']:.2f} ({cpu['postgres_ms_per_record']})"))
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    if "profile" in r:
        out.print("py-spy, inclusive share of samples (top 15):")
        for name, pct in r["profile"]["inclusive_pct"][:15]:
            out.print(f"  {pct:5.1f} %  {name}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Dispatch benchmark: outbox records → a rate-limited Thred.")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--records", type=int, default=10_000, help="records to queue (about; at most 2 more)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the stand-in answers after this (0: at once)")
    parser.add_argument("--concurrency", type=int, default=32, help="the stand-in's limit: 429 beyond it")
    parser.add_argument(
        "--worker-concurrency", type=int, default=None,
        help="records the worker sends at once (BRIDGE_DISPATCH_CONCURRENCY); default: the product's default",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=1,
        help="worker processes: this one and N-1 `thred-bridge worker` processes started with the clock (Postgres)",
    )  # fmt: skip
    parser.add_argument("--retry-after", default="1", help="the 429's Retry-After header value")
    parser.add_argument("--json", action="store_true", help="print the JSON object alone on stdout")
    parser.add_argument("--profile", action="store_true", help="py-spy the measured process during the send")
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--profile-out", type=Path, help="keep py-spy's raw collapsed stacks in this file")
    parser.add_argument("--sql-stats", action="store_true", help="count and time the bridge's SQL statements")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between connections.status polls")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--stall", type=float, default=120.0, help="give up when nothing is sent for this long")
    parser.add_argument("--quiet-timeout", type=float, default=120.0, help="max wait for an idle machine first")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL", f"postgresql://postgres@{HOST}:5432/postgres")
    )
    parser.add_argument("--output", type=Path, default=None, help="default: bench/results/dispatch-….json")
    args = parser.parse_args(argv)
    if args.records < 1 or args.concurrency < 1 or args.latency_ms < 0 or args.workers < 1:
        parser.error("--records, --concurrency and --workers must be ≥ 1, --latency-ms ≥ 0")
    if args.workers > 1 and args.db != "postgres":
        parser.error("--workers above 1 needs --db postgres (SQLite has one writer)")
    args.worker_concurrency_given = args.worker_concurrency is not None
    args.worker_concurrency = args.worker_concurrency or Settings.model_fields["dispatch_concurrency"].default
    return args


def _terminated(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # SIGTERM: unwind, so the ``finally`` blocks stop the stand-in and drop the database


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve-thred"]:
        return serve_thred_main(argv[1])
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    stdout = None
    if args.json:  # stdout carries the JSON alone: anything else written to fd 1 goes to stderr
        sys.stdout.flush()
        stdout = os.dup(1)
        os.dup2(2, 1)
    result = run(args)
    latency = f"{args.latency_ms:g}".replace(".", "_")
    name = f"dispatch-{args.db}-{args.records}-{latency}ms-c{args.concurrency}"
    if args.worker_concurrency_given:
        name += f"-wc{args.worker_concurrency}"
    if args.workers > 1:
        name += f"-w{args.workers}"
    if args.profile:
        name += "-profile"
    output = args.output or RESULTS / f"{name}.json"
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    output.write_bytes(data)
    if stdout is not None:
        sys.stdout.flush()
        with os.fdopen(stdout, "wb") as real:
            real.write(orjson.dumps(result) + b"\n")
    else:
        render(result)
        shown = output.relative_to(HERE.parent) if output.is_relative_to(HERE.parent) else output
        console.print(f"[dim]written to {shown}[/dim]")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
