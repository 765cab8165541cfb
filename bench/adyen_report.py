"""Adyen settlement-report benchmark: one REPORT_AVAILABLE item → a 50,000-row report → one Thred payout.

    .venv/bin/python bench/adyen_report.py --db sqlite --rows 50000
    .venv/bin/python -m bench.adyen_report --db postgres --rows 50000      (the same, as a module)

Everything runs on 127.0.0.1 and stops by itself. It reuses ``bench/payout.py``'s machinery (server process,
metering, RSS sampler, database, polling, payout check).

1. A **server process** (this script with ``--servers``) builds a settlement details report with
   :class:`~thred_bridge.simulators.adyen_reports.SettlementReport` (``--layout``, default the newer long
   one): ``--rows`` rows in all, mostly ``Settled`` (each with a fee), 2 % ``Refunded`` (half of a settled
   payment), 0.2 % ``Fee`` rows and the batch's ``MerchantPayout`` row; it serves the file from the report
   host stand-in (HTTP Basic auth, ``adyen_reports.create_app``) and the Thred sandbox (in memory), each
   behind ``bench.payout.Metered`` (requests per route, handler seconds).
2. The **measured process** (this script) makes a fresh database (a SQLite file, or a throwaway Postgres
   database dropped at the end), opens the bridge (``open_bridge``; BRIDGE_ADYEN_REPORT_HOSTS = the report
   host) with its worker (``--concurrency``), adds an Adyen connection (report user, webhook Basic auth,
   the test HMAC key), then verifies and stores ONE signed REPORT_AVAILABLE item through the Adyen processor
   and the inbox, and polls until nothing waits (``--until payout``) or until the event is processed
   (``--until processed``: no dispatch; for ``--tracemalloc`` runs).
3. Timings: until claimed, download (the processor's ``download_report``), the first pass over the file (every
   batch summed: until ``report_chunks`` gives its first chunk), the second pass (translated and planned to
   the spool, in the worker's thread: until ``plan_stream`` returns), storing the outbox (2,000 records a
   transaction, from the first ``INSERT INTO records`` to the event done), dispatch (records → Thred) until
   the payout is sent — from wrappers installed on the module functions (bench only, nothing in src/
   changes) and the database's own timestamps. The event loop's lag (a 10 ms sleep's overshoot) while the
   event is processed and while records are dispatched: what webhooks answered by this process would wait.
   Memory: the kernel's peak RSS when the run ends (VmHWM, before the checks: reading the Thred payout back
   whole is the benchmark's), ``ru_maxrss`` after the checks, RSS every 100 ms (processing vs dispatching),
   RSS at each step; with ``--tracemalloc`` the Python heap at each step, its peak within each step, and the
   top allocation sites (by line and by file) at each step — to see where a high peak comes from.
   With ``--webhooks-per-s R``, the process also serves the bridge's web app on loopback with a Stripe
   connection, and ``bench/ingest.py``'s load generator (another process) posts signed Stripe webhooks to it
   at a steady R/s for ``--webhook-seconds`` from the moment the report's item is stored: their latency
   (from each one's scheduled send time) is what a processor sees while the same process plans and stores
   the report. ``--gil-switch-ms`` sets BRIDGE_GIL_SWITCH_MS for the run (the process applies it as ``serve``
   does).
4. Checks: the Thred payout lists every Settled payment and every refund's refund payment, its variance is
   0 and it paid out the MerchantPayout amount. Writes ``bench/results/adyen-report-<db>.json``.

The measured process, the server process and Postgres share the machine's cores: whole-machine figures,
with the machine's busy share and the share other processes used meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: import ``bench.*`` from the repository root, and keep bench/ off the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # (a bench/<package>.py would shadow a package)

import argparse
import asyncio
import contextlib
import gc
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import IO, Any

import httpx
import orjson
from rich.table import Table
from sqlalchemy import event, select
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.ingest import LoadSpec
from bench.payout import (
    CLK_TCK,
    HOST,
    STATS_PATH,
    FinishTimes,
    Metered,
    Progress,
    RssSampler,
    Servers,
    SqlStats,
    TimedProcessor,
    _fmt,
    _memory,
    _payout_check,
    _status_dict,
    console,
    cpu_seconds,
    database,
    db_facts,
    event_done,
    http_json,
    machine_busy,
    machine_facts,
    postgres_cpu,
    rss_bytes,
    self_cpu,
    vm_hwm_bytes,
    wait_quiet,
)
from thred_bridge import testing
from thred_bridge.bootstrap import Bridge, open_bridge
from thred_bridge.domain.movements import Movement
from thred_bridge.domain.queue import Connection
from thred_bridge.entrypoints.web import create_app
from thred_bridge.loop_watch import calm_gil
from thred_bridge.malloc import return_large_blocks
from thred_bridge.observe import configure_logging
from thred_bridge.processors.adyen import sync
from thred_bridge.processors.adyen.download import DEFAULT_MAX_REPORT_BYTES, download_report
from thred_bridge.processors.adyen.report_stream import report_chunks
from thred_bridge.processors.base import MovementStream
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service import process
from thred_bridge.service.connections import NewConnection
from thred_bridge.service.planned import PlannedRecords, plan_stream
from thred_bridge.serving import run as run_loop
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.simulators.adyen_reports import ReportFiles, SettlementReport
from thred_bridge.simulators.adyen_reports import create_app as create_report_host
from thred_bridge.store.tables import records

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
MERCHANT = testing.ADYEN_MERCHANT
HMAC_KEY = testing.ADYEN_HMAC_KEY
REPORT_USER = testing.ADYEN_REPORT_USER
WEBHOOK_AUTH = ("adyen-webhook", "bench-webhook-password")
MB = 2**20


# --- the server process: report host + Thred sandbox, metered ----------------------------------------------


def build_report(rows: int, batch: int, seed: int, layout: str) -> tuple[bytes, dict[str, Any]]:
    """A settlement details report of ``rows`` rows (the MerchantPayout row included): 2 % Refunded (half of
    a settled payment each), 0.2 % Fee rows, the rest Settled payments with a fee; returns it and what it holds."""
    rng = random.Random(seed)
    report = SettlementReport(batch=batch, merchant_account=MERCHANT)
    fee_rows = max(1, rows // 500)
    refunds = max(1, rows // 50)
    payments = rows - refunds - fee_rows - 1
    if payments < refunds:
        raise SystemExit(f"--rows {rows} is too few")
    settled: list[tuple[str, int]] = []
    methods = ("visa", "mc", "amex", "ideal", "visa", "mc")
    for i in range(payments):
        psp, gross = f"8815{i:012d}", rng.randrange(500, 50_000)
        report.settled(psp, gross, 11 + gross * 12 // 1000, reference=f"order-{i + 1}", method=rng.choice(methods))
        settled.append((psp, gross))
    for j, (psp, gross) in enumerate(rng.sample(settled, refunds)):
        report.refunded(psp, f"8835{j:012d}", gross // 2, fee=rng.choice((0, 0, 0, 5)))
    for k in range(fee_rows):
        report.fee(rng.randrange(100, 5000), f"Transaction Fees {k + 1}")
    content = report.csv(layout)
    held = {
        "rows": rows,
        "charges": payments,
        "refunds": refunds,
        "fee_rows": fee_rows,
        "payout_amount_cents": report.net_total,
        "layout": layout,
        "bytes": len(content),
        "batch": batch,
    }
    return content, held


def servers_main(spec_json: str) -> int:
    """The ``--servers`` process: build the report, serve it and Thred, print their URLs, serve until stdin
    closes."""
    spec = orjson.loads(spec_json)

    async def serve() -> None:
        started = time.perf_counter()
        content, held = build_report(int(spec["rows"]), int(spec["batch"]), int(spec["seed"]), str(spec["layout"]))
        build_s = time.perf_counter() - started
        name = f"settlement_detail_report_batch_{held['batch']}.csv"
        files = ReportFiles(*REPORT_USER, files={name: content})
        del content
        report_app = Metered(create_report_host(files))
        thred_app = Metered(create_sandbox(partners=dict([testing.PARTNER])))
        async with (
            serve_in_background(report_app, host=HOST) as report_url,
            serve_in_background(thred_app, host=HOST) as thred_url,
        ):
            line = {
                "report_url": report_url,
                "thred_url": thred_url,
                "file": name,
                "download_url": f"{report_url}/reports/download/MerchantAccount/{MERCHANT}/{name}",
                "build_s": round(build_s, 2),
                "held": held,
            }
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)

    run_loop(serve())
    return 0


class ReportServers(Servers):
    """``bench.payout.Servers`` (ready, stop) for this script's ``--servers`` process."""

    def __init__(self, spec: Mapping[str, Any], log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.adyen_report", "--servers", orjson.dumps(dict(spec)).decode()],
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            )  # fmt: skip


# --- the steps inside the Adyen processor ----------------------------------------------------------------


class Steps:
    """Wraps the Adyen processor module's ``download_report`` and ``report_chunks`` (the names ``sync``
    calls) and the worker's ``plan_stream``: records when each step ends, the RSS then, and with ``heap``
    the Python heap (tracemalloc) then, its peak since the previous step, and the top allocation sites.
    The steps after the download run in the worker's thread. The start of each outbox transaction is
    marked too (time and RSS only: a heap snapshot there would hold SQLite's write lock)."""

    def __init__(self, engine: AsyncEngine, *, heap: bool, top: int) -> None:
        self.heap = heap
        self.top = top
        self.marks: list[dict[str, Any]] = []
        self.download_bytes: int | None = None
        self.record_statements = 0
        self._engine = engine.sync_engine
        self._saved = (download_report, report_chunks)  # what ``sync`` imported
        self._plan_stream = plan_stream  # what the worker's ``process`` module imported

    def mark(self, name: str, note: str = "") -> None:
        entry: dict[str, Any] = {"step": name, "t": time.perf_counter(), "rss_mb": round(rss_bytes() / MB, 1)}
        if note:
            entry["note"] = note
        if self.heap and tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            entry["heap_mb"] = round(current / MB, 1)
            entry["heap_peak_since_last_mb"] = round(peak / MB, 1)
            entry |= self._top_sites()
            tracemalloc.reset_peak()
        self.marks.append(entry)

    def _top_sites(self) -> dict[str, Any]:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            )
        )

        def where(stat: tracemalloc.Statistic, by: str) -> dict[str, Any]:
            frame = stat.traceback[0]
            path = "/".join(frame.filename.split("/")[-3:])
            name = f"{path}:{frame.lineno}" if by == "lineno" else path
            return {"where": name, "mb": round(stat.size / MB, 2), "blocks": stat.count}

        return {
            "top_lines": [where(s, "lineno") for s in snapshot.statistics("lineno")[: self.top]],
            "top_files": [where(s, "filename") for s in snapshot.statistics("filename")[: self.top]],
        }

    def install(self) -> None:
        download, chunks = self._saved

        async def timed_download(
            client: httpx.AsyncClient,
            url: str,
            credentials: Mapping[str, str],
            *,
            max_bytes: int = DEFAULT_MAX_REPORT_BYTES,
        ) -> IO[bytes]:
            self.mark("claimed, download starts")
            spool = await download(client, url, credentials, max_bytes=max_bytes)
            spool.seek(0, os.SEEK_END)
            self.download_bytes = spool.tell()
            spool.seek(0)
            self.mark("downloaded", "the spooled file (on disk above 8 MB)")
            return spool

        def timed_chunks(spool: IO[bytes], **kwargs: Any) -> Iterator[list[Movement]]:
            first = True
            for chunk in chunks(spool, **kwargs):
                if first:
                    self.mark("summarised", "first pass: every batch summed (one line per payment), first chunk")
                    first = False
                yield chunk
            self.mark("translated", "second pass done: every chunk translated and planned to the spool")

        vars(sync).update(download_report=timed_download, report_chunks=timed_chunks)

        def timed_plan(stream: MovementStream) -> PlannedRecords:
            planned = self._plan_stream(stream)
            self.mark("planned", f"{len(planned):,} records spooled (outside any transaction)")
            return planned

        vars(process).update(plan_stream=timed_plan)
        event.listen(self._engine, "before_cursor_execute", self._statement)

    def _statement(self, _conn: SyncConnection, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT INTO records"):  # 500 records a statement, 2,000 a transaction
            self.record_statements += 1
            if self.record_statements == 1:
                rss = round(rss_bytes() / MB, 1)
                self.marks.append({"step": "outbox writes start", "t": time.perf_counter(), "rss_mb": rss})

    def uninstall(self) -> None:
        download, chunks = self._saved
        vars(sync).update(download_report=download, report_chunks=chunks)
        vars(process).update(plan_stream=self._plan_stream)
        event.remove(self._engine, "before_cursor_execute", self._statement)

    def at(self, step: str) -> float | None:
        return next((m["t"] for m in self.marks if m["step"] == step), None)


class LoopLag:
    """How late the event loop wakes a 10 ms sleep, all run long: what a webhook answered by this process
    would wait for while the worker downloads, plans and stores the report (the planning runs in a thread).

    A watchdog thread also notes where the loop's thread is whenever the loop has not ticked for
    ``stall_s`` (its innermost frames in the bridge or a library, counted by place): what stalls it."""

    def __init__(self, stall_s: float = 0.05) -> None:
        self.samples: list[tuple[float, float]] = []  # (when, lag s)
        self.stalls: Counter[str] = Counter()
        self._stall_s = stall_s
        self._tick = time.perf_counter()
        self._task: asyncio.Task[None] | None = None
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._task = asyncio.create_task(self._run())
        self._watchdog.start()

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            self._tick = start
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self._tick = now
            self.samples.append((now, now - start - 0.01))

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            if time.perf_counter() - self._tick < self._stall_s:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            places: list[str] = []
            while frame is not None and len(places) < 4:
                name = frame.f_code.co_filename
                if "asyncio" not in name and "uvloop" not in name:
                    places.append(f"{Path(name).name}:{frame.f_code.co_name}:{frame.f_lineno}")
                frame = frame.f_back
            self.stalls[" < ".join(places) or "(no Python frame)"] += 1

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def summary(self, start: float, end: float | None) -> dict[str, Any]:
        lags = sorted(lag for at, lag in self.samples if at >= start and (end is None or at <= end))
        if not lags:
            return {"n": 0}
        return {
            "n": len(lags),
            "p50_ms": round(1000 * lags[len(lags) // 2], 2),
            "p99_ms": round(1000 * lags[min(len(lags) - 1, int(len(lags) * 0.99))], 2),
            "max_ms": round(1000 * lags[-1], 2),
        }


async def _payout_status(bridge: Bridge, connection_id: str) -> str | None:
    """The payout record's status (None before the event is processed): one lookup by the unique key."""
    async with bridge.store.engine.connect() as conn:
        status = await conn.scalar(
            select(records.c.status).where(records.c.connection_id == connection_id, records.c.kind == "payout")
        )
        await conn.rollback()
    return None if status is None else str(status)


class Waiter:
    """Polls cheaply until the event is processed (``--until processed``) or the payout record is sent, a
    stall or the timeout. ``connections.status`` counts every record of the connection (~0.1 s on SQLite at
    100,000 records), so it is read only every ``--status-every`` s for the progress log and the stall check,
    not at every ``--poll`` as ``bench.payout.watch`` does (that would be measured as the bridge's work)."""

    def __init__(self, bridge: Bridge, connection: Connection, args: argparse.Namespace, t0: float) -> None:
        self.bridge, self.connection, self.args, self.t0 = bridge, connection, args, t0
        self.progress = Progress()
        self.next_status = t0 + args.status_every
        self.moved_at = t0
        self.last_sent = -1

    async def run(self) -> None:
        deadline = self.t0 + self.args.timeout
        while True:
            await asyncio.sleep(self.args.poll)
            now = time.perf_counter()
            self.progress.polls += 1
            try:
                if await self._check(now):
                    return
            except DBAPIError as exc:  # SQLite busy while the outbox commits: look again at the next poll
                self.progress.crashes[f"poll: {type(exc.orig).__name__}: {exc.orig}"[:200]] += 1
            if now >= deadline:
                self.progress.timed_out = True
                console.print(f"[red]timeout after {self.args.timeout:.0f} s[/red]")
                return

    async def _check(self, now: float) -> bool:
        bridge, connection, args, progress = self.bridge, self.connection, self.args, self.progress
        if args.until == "processed":
            if await event_done(bridge, connection.id):
                progress.finished_seen_s = round(time.perf_counter() - self.t0, 3)
                return True
        elif await _payout_status(bridge, connection.id) == "sent":
            progress.finished_seen_s = round(time.perf_counter() - self.t0, 3)
            progress.last = await bridge.connections.status(connection)
            return True
        if now < self.next_status:
            return False
        self.next_status += args.status_every
        status = progress.last = await bridge.connections.status(connection)
        snap = {
            "t_s": round(now - self.t0, 1),
            "events_waiting": status.waiting,
            "records_sent": status.records_sent,
            "records_waiting": status.records_waiting,
            "records_failed": status.records_failed,
            "rss_mb": round(rss_bytes() / MB, 1),
        }
        progress.log.append(snap)
        console.print(f"[dim]{args.db}: {snap}[/dim]")
        if status.records_sent != self.last_sent or not await event_done(bridge, connection.id):
            self.moved_at, self.last_sent = now, status.records_sent
        elif now - self.moved_at >= args.stall:
            progress.stalled_s = round(now - self.t0, 1)
            console.print(f"[red]stalled: nothing sent for {args.stall:.0f} s: {status}[/red]")
            return True
        return False


# --- the measured run ------------------------------------------------------------------------------------


def start_webhook_load(args: argparse.Namespace, hook: tuple[str, str]) -> subprocess.Popen[bytes]:
    """``bench/ingest.py``'s load generator in its own process: signed Stripe webhooks at a steady
    ``--webhooks-per-s`` to this process's web app for ``--webhook-seconds``, while the report is processed."""
    url, secret = hook
    host_port, path = url.removeprefix("http://").split("/", 1)
    host, port = host_port.split(":")
    spec = LoadSpec(
        host=host, port=int(port), path="/" + path, client="raw", mode="open", connections=8,
        duration=args.webhook_seconds, warmup=0.0, rate=args.webhooks_per_s,
        max_requests=int(args.webhooks_per_s * args.webhook_seconds) + 10, tag=uuid.uuid4().hex[:8], secret=secret,
    )  # fmt: skip
    script = Path(__file__).resolve().parent / "ingest.py"
    return subprocess.Popen(
        [sys.executable, str(script), "--load", orjson.dumps(asdict(spec)).decode()], stdout=subprocess.PIPE
    )


def finish_webhook_load(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    load: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return {k: load[k] for k in ("sent", "ok", "statuses", "errors", "events_per_s", "latency_ms", "window_s")}


async def measure(args: argparse.Namespace, info: dict[str, Any], db_url: str, server_pid: int) -> dict[str, Any]:
    held = info["held"]
    return_large_blocks()  # as ``thred-bridge worker`` and ``serve`` do at start (``thred_bridge.malloc``)
    config = Settings.model_validate(
        {
            "BRIDGE_DATABASE_URL": db_url,
            "THRED_API_URL": info["thred_url"],
            "THRED_PARTNER_ID": testing.PARTNER[0],
            "THRED_API_KEY": testing.PARTNER[1],
            "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
            "BRIDGE_ADYEN_REPORT_HOSTS": info["report_url"].removeprefix("http://"),
            "BRIDGE_LOG_LEVEL": args.log_level,
            "BRIDGE_STRIPE_API_BASE": "http://127.0.0.1:9",  # the webhooks' events are stored, never fetched
            **({"BRIDGE_GIL_SWITCH_MS": args.gil_switch_ms} if args.gil_switch_ms else {}),
            **({"BRIDGE_LEASE_SECONDS": args.lease_seconds} if args.lease_seconds else {}),
        }
    )
    result: dict[str, Any] = {}
    calm_gil(config.gil_switch_ms)  # as `serve` and `worker` do at start
    result["gil_switch_ms"] = round(sys.getswitchinterval() * 1000, 3)
    async with open_bridge(config) as bridge:
        business_id = str(uuid.uuid4())
        credentials = {
            "capture": "delayed",
            "webhook_user": WEBHOOK_AUTH[0],
            "webhook_password": WEBHOOK_AUTH[1],
            "report_user": REPORT_USER[0],
            "report_password": REPORT_USER[1],
        }
        connection = await bridge.connections.add(
            NewConnection("adyen", business_id, credentials, (HMAC_KEY,), account=MERCHANT)
        )
        webhooks = contextlib.AsyncExitStack()  # the web app, when webhooks are posted
        hook: tuple[str, str] | None = None  # (webhook URL, secret) of a Stripe connection on this process
        if args.webhooks_per_s > 0:
            stripe_secret = "whsec_" + secrets.token_hex(16)
            hooked = await bridge.connections.add(
                NewConnection("stripe", business_id, {"api_key": testing.STRIPE_KEY}, (stripe_secret,))
            )
            web_url = await webhooks.enter_async_context(serve_in_background(create_app(bridge), host=HOST))
            hook = (f"{web_url}/webhooks/stripe/{hooked.id}", stripe_secret)
        timed = TimedProcessor(bridge.processors["adyen"])
        bridge.processors["adyen"] = timed
        item = testing.adyen_item(
            "REPORT_AVAILABLE", info["file"], value=0, reason=info["download_url"], merchant_account=MERCHANT,
            event_date=datetime.now(UTC).isoformat(timespec="seconds"), hmac_key=HMAC_KEY,
        )  # fmt: skip
        delivery = testing.adyen_delivery([item], auth=WEBHOOK_AUTH)
        for base in (info["report_url"], info["thred_url"]):
            await http_json(base + STATS_PATH, "DELETE")
        await http_json(info["thred_url"] + "/_sandbox/requests/count", "DELETE")

        sql_stats = SqlStats(bridge.store.engine) if args.sql_stats else None
        finishes = FinishTimes(bridge.store.engine)
        steps = Steps(bridge.store.engine, heap=args.tracemalloc, top=args.top)
        steps.install()
        sampler = RssSampler(args.rss_interval)
        sampler.start()
        lag = LoopLag()
        lag.start()
        await asyncio.sleep(0.3)  # a baseline
        stop = asyncio.Event()
        worker = asyncio.create_task(bridge.worker(concurrency=args.concurrency).run(stop))
        await asyncio.sleep(0.2)
        gc.collect()
        if args.tracemalloc:
            tracemalloc.start()
        cpu0, server_cpu0, pg_cpu0, busy0 = self_cpu(), cpu_seconds(server_pid), postgres_cpu(), machine_busy()
        waiter: Waiter | None = None
        crashes: Counter[str] = Counter()

        def on_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            said = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}" if exc else ""
            crashes[f"{context.get('message')}: {said}"[:400]] += 1

        asyncio.get_running_loop().set_exception_handler(on_loop_error)
        try:
            t0, wall0 = time.perf_counter(), datetime.now(UTC)
            steps.mark("start")
            headers = {k.lower(): v for k, v in delivery.headers.items()}  # as the web app's request has them
            notices = timed.verify(delivery.body, headers, connection, datetime.now(UTC))
            stored = await bridge.inbox.add(connection.id, "adyen", notices)
            t_stored = time.perf_counter()
            load = start_webhook_load(args, hook) if hook is not None else None
            waiter = Waiter(bridge, connection, args, t0)
            await waiter.run()
            t_end = time.perf_counter()
            hwm_at_end = vm_hwm_bytes()
            if load is not None:
                result["webhooks"] = await asyncio.to_thread(finish_webhook_load, load)
        finally:
            await webhooks.aclose()
            progress = waiter.progress if waiter is not None else Progress()
            progress.crashes.update(crashes)
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
            steps.uninstall()
            sampler.stop()
            await lag.stop()

        facts = await db_facts(bridge, connection.id, wall0)
        reports = await http_json(info["report_url"] + STATS_PATH)
        thred = await http_json(info["thred_url"] + STATS_PATH)
        thred_counts: dict[str, int] = await http_json(info["thred_url"] + "/_sandbox/requests/count")
        thred_payout: dict[str, Any] | None = None
        if facts["payout_thred_id"]:
            assert bridge.thred is not None
            thred_payout = await bridge.thred.get(business_id, "payout", facts["payout_thred_id"])

    # --- timings ---
    calls = [(a - t0, b - t0, n) for a, b, n in timed.calls]
    committed = [(a - t0, b - t0) for a, b, how in finishes.finishes if how == "commit" and b is not None]
    processed_s = committed[0][1] if committed else None
    finish_started = committed[0][0] if committed else None

    def step(name: str) -> float | None:
        at = steps.at(name)
        return None if at is None else at - t0

    def span(a: float | None, b: float | None, digits: int = 3) -> float | None:
        return None if a is None or b is None else round(b - a, digits)

    downloading, downloaded = step("claimed, download starts"), step("downloaded")
    summarised, translated, planned = step("summarised"), step("translated"), step("planned")
    outbox_starts = step("outbox writes start")
    payout_sent_s = facts["records"].get("payout", {}).get("last_sent_s")
    settled = [facts["records"].get(k, {}).get("last_sent_s") for k in ("payment", "refund_payment")]
    last_child_s = max((s for s in settled if s is not None), default=None)
    result["stored_new"] = stored
    result["timings_s"] = {
        "total_to_payout_in_thred": payout_sent_s,
        "until_status_idle_seen": progress.finished_seen_s,
        "ingest_verify_and_store": round(t_stored - t0, 4),
        "until_claimed": round(calls[0][0], 3) if calls else None,
        "download": span(downloading, downloaded),
        "first_pass_summarise": span(downloaded, summarised),
        "second_pass_translate_and_plan": span(summarised, translated),
        "read_translate_plan": span(downloaded, planned),
        "store_outbox": span(outbox_starts, processed_s),
        "last_outbox_transaction": span(finish_started, processed_s),
        "event_processed": round(processed_s, 3) if processed_s is not None else None,
        "dispatch": span(processed_s, payout_sent_s),
        "dispatch_until_last_payment": span(processed_s, last_child_s),
        "payout_post_after_last_payment": span(last_child_s, payout_sent_s),
        "measurement_window": round(t_end - t0, 3),
    }
    result["download_bytes"] = steps.download_bytes
    result["record_insert_statements"] = steps.record_statements
    result["processing_calls"] = [{"start_s": round(a, 3), "end_s": round(b, 3), "movements": n} for a, b, n in calls]
    result["outbox_transactions"] = [
        {"start_s": round(a - t0, 3), "end_s": round(b - t0, 3) if b is not None else None, "ended": how}
        for a, b, how in finishes.finishes
    ]
    result["steps"] = [{**m, "t": round(m["t"] - t0, 3)} for m in steps.marks]
    result["progress"] = {
        "polls": progress.polls,
        "log": progress.log,
        "stalled_at_s": progress.stalled_s,
        "timed_out": progress.timed_out,
        "unretrieved_task_exceptions": dict(progress.crashes),
    }
    result["status"] = _status_dict(progress.last)
    result["db"] = facts
    result["requests"] = {
        "report_host": {k: reports[k] for k in ("requests", "by_route", "handler_s")},
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
    result["memory"] = _memory(sampler, t0, t_end, processed_s, heap, hwm_at_end)
    result["event_loop_lag"] = {
        "processing": lag.summary(t0, t0 + processed_s if processed_s is not None else None),
        "dispatching": lag.summary(t0 + processed_s, t_end) if processed_s is not None else {"n": 0},
        "stalled_at": dict(lag.stalls.most_common(12)),  # 10 ms watchdog samples while the loop was stuck
    }
    if sql_stats is not None:
        result["sql"] = sql_stats.summary()
    if args.until == "processed":
        result["thred_payout"] = {"found": False, "ok": None, "skipped": "--until processed: no dispatch"}
    else:
        result["thred_payout"] = _payout_check(thred_payout, held)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    configure_logging(args.log_level)
    report: dict[str, Any] = {
        "machine": machine_facts(args.db, args.pg_admin_url),
        "settings": {
            "db": args.db,
            "rows": args.rows,
            "layout": args.layout,
            "concurrency": args.concurrency,
            "lease_seconds": args.lease_seconds or Settings.model_fields["lease_seconds"].default,
            "seed": args.seed,
            "until": args.until,
            "poll_s": args.poll,
            "status_every_s": args.status_every,
            "log_level": args.log_level,
            "tracemalloc": args.tracemalloc,
            "sql_stats": args.sql_stats,
        },
        "note": (
            f"{os.cpu_count()} CPUs shared by the measured process, the server process (report host + Thred "
            f"sandbox, one event loop){' and Postgres' if args.db == 'postgres' else ''}: whole-machine figures."
            + (" tracemalloc on: slower, timings not comparable." if args.tracemalloc else "")
        ),
    }
    tmp = Path(tempfile.mkdtemp(prefix="thred-bench-adyen-report-"))
    servers: ReportServers | None = None
    try:
        with database(args.db, tmp, args.pg_admin_url) as db_url:
            console.print(f"[dim]{args.db}: building a settlement report of {args.rows:,} rows …[/dim]")
            spec = {"rows": args.rows, "batch": args.batch, "seed": args.seed, "layout": args.layout}
            servers = ReportServers(spec, tmp / "servers.log")
            info = servers.ready()
            report["report"] = {**info["held"], "build_s": info["build_s"], "file": info["file"]}
            report["background_busy_pct_before"] = wait_quiet(args.quiet_timeout)
            console.print(f"[dim]{args.db}: one REPORT_AVAILABLE item for {info['file']} …[/dim]")
            report["result"] = run_loop(measure(args, info, db_url, servers.proc.pid))
    finally:
        if servers is not None:
            servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report


# --- output --------------------------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    s, r, held = report["settings"], report["result"], report["report"]
    t, mem, req, db = r["timings_s"], r["memory"], r["requests"], r["db"]
    check = r["thred_payout"]
    m = report["machine"]
    table = Table(
        title=f"Adyen settlement report, {s['db']}, {s['rows']:,} rows ({s['layout']} layout, "
        f"{held['bytes'] / MB:.1f} MB), concurrency {s['concurrency']} ({m['nproc']} CPUs, {m['cpu_model']})"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("REPORT_AVAILABLE → payout in Thred", f"{_fmt(t['total_to_payout_in_thred'])} s"),
        ("  until the worker claimed it", f"{_fmt(t['until_claimed'], '.2f')} s"),
        ("  download", f"{_fmt(t['download'], '.2f')} s"),
        ("  read + summarise (first pass)", f"{_fmt(t['first_pass_summarise'], '.2f')} s"),
        ("  read + translate + plan (second pass)", f"{_fmt(t['second_pass_translate_and_plan'], '.2f')} s"),
        ("  store the outbox (2,000 records a transaction)", f"{_fmt(t['store_outbox'], '.2f')} s"),
        ("  = event processed at", f"{_fmt(t['event_processed'], '.2f')} s"),
        ("  dispatch (records → Thred)", f"{_fmt(t['dispatch'])} s"),
        ("Thred requests", f"{req['thred']['requests']:,}"),
        ("records (by kind: records/sent/attempts)", f"{db['records_total']:,} "
         + ", ".join(f"{k} {v['records']}/{v['sent']}/{v['attempts']}" for k, v in db["records"].items())),
        ("event-loop lag while processing: p99 / max", f"{r['event_loop_lag']['processing'].get('p99_ms')} / "
         f"{r['event_loop_lag']['processing'].get('max_ms')} ms"),
        ("peak RSS ru_maxrss (with the checks after the run)", f"{mem['ru_maxrss_mb']:.0f} MB"),
        ("peak RSS VmHWM when the payout is in Thred", f"{mem.get('vm_hwm_at_end_mb', 0):.0f} MB"),
        ("RSS before / peak processing / peak dispatching / end",
         f"{mem['rss_before_event_mb']:.0f} / {mem['rss_peak_processing_mb']:.0f} / "
         f"{mem['rss_peak_dispatching_mb']:.0f} / {mem['rss_end_mb']:.0f} MB"),
        ("RSS at each step MB", " → ".join(f"{x['rss_mb']:.0f}" for x in r["steps"])),
        ("CPU s: measured / server" + (" / postgres" if s["db"] == "postgres" else ""),
         " / ".join(f"{v}" for k, v in r["cpu_s"].items() if "pct" not in k)),
        ("machine busy / other processes",
         f"{r['cpu_s']['machine_busy_pct']} % / {r['cpu_s']['other_processes_pct']} %"),
        ("Thred payout: payments / refund payments / variance",
         f"{check.get('payment_ids')} / {check.get('refund_payment_ids')} / {check.get('amount_variance_cents')}"),
        ("check", {True: "OK", False: "FAILED", None: "skipped"}[check["ok"]]),
    ]  # fmt: skip
    if "tracemalloc_peak_mb" in mem:
        rows.insert(13, ("Python heap peak (tracemalloc)", f"{mem['tracemalloc_peak_mb']:.0f} MB"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for mark in r["steps"]:
        if "top_lines" in mark:
            console.print(
                f"[bold]{mark['step']}[/bold] at {mark['t']:.1f} s: heap {mark['heap_mb']} MB (peak since the "
                f"previous step {mark['heap_peak_since_last_mb']} MB), RSS {mark['rss_mb']} MB"
            )
            for site in mark["top_lines"][:6]:
                console.print(f"    {site['mb']:8.1f} MB {site['blocks']:>9,} blocks  {site['where']}")
    console.print(f"[yellow]{report['note']}[/yellow]")
    if r["cpu_s"]["other_processes_pct"] > 10:
        console.print(f"[red]other processes used {r['cpu_s']['other_processes_pct']} % of the machine meanwhile[/red]")
    if r["progress"]["stalled_at_s"] is not None or r["progress"]["timed_out"]:
        console.print(f"[red]stalled/timed out; pending: {r['db']['pending_records']}[/red]")
    for text, n in r["progress"]["unretrieved_task_exceptions"].items():
        console.print(f"[red]{n} × {text}[/red]")
    if r["status"] and (r["status"]["failed"] or r["status"]["records_failed"]):
        console.print(f"[red]failures: {r['status']['failures']}[/red]")
    header = (
        "| DB | rows | conc. | REPORT_AVAILABLE → payout s | download s | read + translate + plan s | outbox s "
        "| dispatch s | Thred req. | records | ru_maxrss MB | RSS before → peak → end MB | busy / other % | check |\n"
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    )
    row = (
        f"| {s['db']} | {s['rows']:,} | {s['concurrency']} | {_fmt(t['total_to_payout_in_thred'])} "
        f"| {_fmt(t['download'], '.2f')} | {_fmt(t['read_translate_plan'])} | {_fmt(t['store_outbox'])} "
        f"| {_fmt(t['dispatch'])} | {req['thred']['requests']:,} | {db['records_total']:,} "
        f"| {mem['ru_maxrss_mb']:.0f} | {mem['rss_before_event_mb']:.0f} → {mem['rss_peak_mb']:.0f} → "
        f"{mem['rss_end_mb']:.0f} | {r['cpu_s']['machine_busy_pct']:.0f} / {r['cpu_s']['other_processes_pct']:.0f} "
        f"| {({True: 'OK', False: 'FAILED', None: 'skipped'})[check['ok']]} |"
    )
    return header + "\n" + row


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Adyen settlement report: REPORT_AVAILABLE → one Thred payout.")
    parser.add_argument("--rows", type=int, default=50_000, help="report rows, the MerchantPayout row included")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--layout", choices=("legacy", "new"), default="new", help="the report's CSV layout")
    parser.add_argument("--batch", type=int, default=118, help="the settlement batch number")
    parser.add_argument("--concurrency", type=int, default=16, help="bridge.worker(concurrency=…)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--lease-seconds", type=float, default=None, help="BRIDGE_LEASE_SECONDS (default: the bridge's)"
    )
    parser.add_argument(
        "--until", choices=("payout", "processed"), default="payout",
        help="stop when the payout is in Thred, or once the event is processed (no dispatch)",
    )  # fmt: skip
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between the (cheap) done checks")
    parser.add_argument("--status-every", type=float, default=10.0, help="seconds between connections.status reads")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--stall", type=float, default=90.0, help="give up when nothing is sent for this long")
    parser.add_argument("--rss-interval", type=float, default=0.1)
    parser.add_argument("--log-level", default="warning", help="the bridge's log level")
    parser.add_argument("--tracemalloc", action="store_true", help="trace the Python heap at each step (slower)")
    parser.add_argument("--sql-stats", action="store_true", help="count and time the bridge's SQL statements")
    parser.add_argument("--top", type=int, default=12, help="allocation sites listed per step with --tracemalloc")
    parser.add_argument("--quiet-timeout", type=float, default=120.0, help="max wait for an idle machine first")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", type=Path, default=None, help="default: bench/results/adyen-report-<db>.json")
    parser.add_argument(
        "--webhooks-per-s", type=float, default=0.0,
        help="also post signed Stripe webhooks at this steady rate to this process's web app (0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--gil-switch-ms", type=float, default=None, help="BRIDGE_GIL_SWITCH_MS (default: the bridge's)"
    )
    parser.add_argument("--webhook-seconds", type=float, default=20.0, help="how long the webhooks are posted")
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
    suffix = "-tracemalloc" if args.tracemalloc else ""
    output = args.output or RESULTS / f"adyen-report-{args.db}{suffix}.json"
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    markdown = render(report)
    console.print(f"\nMarkdown row (results in {output}):\n")
    print(markdown)
    ok = report["result"]["thred_payout"]["ok"]
    return 0 if ok or (ok is None and not report["result"]["progress"]["timed_out"]) else 1


if __name__ == "__main__":
    sys.exit(main())
