"""Mollie benchmarks: classic-webhook ingest, and syncing one settlement of many payments.

    .venv/bin/python -m bench.mollie_bench --db sqlite,postgres --connections 16,64 --duration 10 --rate 500 \
        --payments 10000

Everything runs on 127.0.0.1 and stops by itself (each phase is bounded; every process started is stopped
at the end, whatever happened). Postgres must answer at ``--pg-admin-url``; the script makes a throwaway
database there per run and drops it.

**Ingest** (``--connections``, ``--duration``, ``--rate``): ``thred-bridge serve`` with
``BRIDGE_WORKERS=0`` (ingest only) and a Mollie connection added with ``thred-bridge connections add
mollie``; this process drives it over raw HTTP/1.1 keep-alive connections (``bench.ingest``'s client,
uvloop) with classic calls as Mollie sends them (``id=tr_…`` form bodies, unsigned, each a distinct
payment id). Closed loop: N connections, each sending its next call when the last is answered; open loop:
``--rate`` calls/s on a fixed schedule (latency from the scheduled time). The first ``--warmup`` second is
left out. After each phase the rows in ``events`` must equal the 200 answers.

**Settlement** (``--payments``): a server process builds a simulated Mollie
(:class:`~thred_bridge.simulators.mollie_world.MollieWorld`) holding N paid EUR payments (mixed methods,
1 % refunded, two chargebacks) and one ``paidout`` settlement of all of them, then serves it beside the
Thred sandbox (in memory). The world is frozen once built (its reads are cached), so the simulator's own
deep copies are not what is measured. A measured process (this script, ``--settlement-run``, so its peak
RSS is the bridge's alone) opens the bridge (``open_bridge``, worker concurrency 16), stores ONE classic
call naming the settlement, and waits until nothing is waiting: the worker fetches the settlement and every
page of its payments, refunds and chargebacks, books every payment, refund and chargeback it never saw
(customer → invoice → payment), then the payout. Measured: wall time to the payout in Thred, the Mollie
API calls the bridge made (counted by the simulator), Thred requests, CPU, peak RSS (``ru_maxrss``). The
payout must list N payments with variance 0.

The CPUs are shared by everything here (and Postgres): the figures are whole-machine. Each phase records
``machine_busy_pct`` and ``other_processes_pct`` (busy CPU not used by the processes of this run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import uvloop
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from bench.ingest import (
    BRIDGE,
    CLK_TCK,
    HOST,
    SECRET_KEY,
    Processes,
    RawConnection,
    _children_cpu,
    _pg_url,
    bridge_cli,
    count_rows,
    cpu_seconds,
    free_port,
    machine_busy,
    machine_facts,
    percentile,
    postgres_cpu,
    postgres_cpu_since,
    raw_connect,
    wait_quiet,
    wait_ready,
)
from bench.payout import RssSampler, rss_bytes, vm_hwm_bytes

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024
RESULTS = HERE / "results"
API_KEY = "test_bench" + "4" * 24
ORG_TOKEN = "access_bench" + "5" * 24
PARTNER = ("bench-partner", "bench-api-key")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


# --- machine accounting -----------------------------------------------------------------------------------


class Meter:
    """CPU of the given processes (and Postgres) against the whole machine's, over one phase."""

    def __init__(self, pids: Sequence[int], *, self_too: bool = True) -> None:
        self.pids = list(pids)
        self.self_too = self_too
        self.children0 = _children_cpu()
        self.busy0 = machine_busy()
        self.cpu0 = {pid: cpu_seconds(pid) for pid in self.pids}
        self.pg0 = postgres_cpu()
        self.own0 = time.process_time()

    def done(self) -> dict[str, float]:
        busy1 = machine_busy()
        procs = sum(max(cpu_seconds(pid) - self.cpu0[pid], 0.0) for pid in self.pids)
        own = time.process_time() - self.own0 if self.self_too else 0.0
        children = _children_cpu() - self.children0  # finished children: the measured settlement run
        pg = postgres_cpu_since(self.pg0)
        busy_s, all_s = (busy1[0] - self.busy0[0]) / CLK_TCK, (busy1[1] - self.busy0[1]) / CLK_TCK
        ours = procs + own + children + pg
        return {
            "processes_cpu_s": round(procs + children, 2),
            "load_generator_cpu_s": round(own, 2),
            "postgres_cpu_s": round(pg, 2),
            "machine_busy_pct": round(100 * busy_s / max(all_s, 1e-9), 1),
            "other_processes_pct": round(100 * max(busy_s - ours, 0.0) / max(all_s, 1e-9), 1),
        }


@contextlib.contextmanager
def database(kind: str, tmp: Path, admin_url: str, role: str) -> Iterator[str]:
    """A fresh database: a SQLite file in ``tmp``, or a throwaway Postgres database dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'{role}.db'}"
        return
    name = f"thred_bench_mollie_{os.getpid()}_{secrets.token_hex(3)}_{role}"
    base = psycopg.conninfo.conninfo_to_dict(admin_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _pg_url(psycopg.conninfo.make_conninfo("", **{**base, "dbname": name}))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def bridge_env(database_url: str, **more: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "THRED_"))},
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_SECRET_KEY": SECRET_KEY,
        "BRIDGE_LOG_LEVEL": "warning",
        "THRED_PARTNER_ID": PARTNER[0],
        "THRED_API_KEY": PARTNER[1],
        **more,
    }


# --- ingest: classic calls ------------------------------------------------------------------------------


def ping_request(port: int, path: str, payment_id: str) -> bytes:
    body = f"id={payment_id}".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: Mollie.nl HTTP client/1.0\r\n"
        f"Accept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def payment_ids(count: int, rng: random.Random) -> list[str]:
    return ["tr_" + "".join(rng.choices(ALPHABET, k=10)) for _ in range(count)]


async def load_phase(
    port: int, path: str, *, mode: str, connections: int, duration: float, warmup: float, rate: float, seed: int
) -> dict[str, Any]:
    """One closed- or open-loop phase; calls/s and latency over the window after ``warmup``."""
    needed = round(rate * (warmup + duration)) if mode == "open" else 60_000
    requests = [ping_request(port, path, p) for p in payment_ids(needed, random.Random(seed))]
    conns: list[RawConnection] = list(await asyncio.gather(*(raw_connect(HOST, port) for _ in range(connections))))
    samples: list[tuple[float, float, int]] = []
    t0 = time.perf_counter() + 0.01
    t_end = t0 + warmup + duration
    try:
        if mode == "closed":
            counter = [0]

            async def caller(conn: RawConnection) -> None:
                while time.perf_counter() < t_end and counter[0] < len(requests):
                    i = counter[0]
                    counter[0] += 1
                    start = time.perf_counter()
                    try:
                        status = await conn.request(requests[i])
                    except OSError:
                        status = -1
                    samples.append((start, time.perf_counter(), status))

            await asyncio.gather(*(caller(c) for c in conns))
        else:
            idle: asyncio.Queue[RawConnection] = asyncio.Queue()
            for conn in conns:
                idle.put_nowait(conn)

            async def one(i: int, due: float) -> None:
                conn = await idle.get()
                try:
                    status = await conn.request(requests[i])
                except OSError:
                    status = -1
                finally:
                    idle.put_nowait(conn)
                samples.append((due, time.perf_counter(), status))

            tasks = []
            for i in range(len(requests)):
                due = t0 + i / rate
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i, due)))
            await asyncio.gather(*tasks)
    finally:
        for conn in conns:
            conn.close()
    lo, hi = t0 + warmup, min(t_end, max((e for _, e, _ in samples), default=t_end))
    window = [(s, e, st) for s, e, st in samples if lo <= e <= hi and s >= lo]
    latencies = sorted((e - s) * 1000 for s, e, _ in window)
    ok = sum(1 for _, _, st in samples if st == 200)
    return {
        "mode": mode,
        "connections": connections,
        "rate": rate if mode == "open" else None,
        "sent": len(samples),
        "ok": ok,
        "calls_per_s": round(sum(1 for *_, st in window if st == 200) / max(hi - lo, 1e-9), 1),
        "latency_ms": {q: round(percentile(latencies, int(q[1:])), 2) for q in ("p50", "p90", "p99")},
        "window_s": round(hi - lo, 2),
    }


def run_ingest(args: argparse.Namespace, kind: str, tmp: Path) -> dict[str, Any]:
    procs = Processes()
    out: dict[str, Any] = {"db": kind, "phases": []}
    with database(kind, tmp, args.pg_admin_url, "ingest") as url:
        env = bridge_env(url, BRIDGE_WORKERS="0", THRED_API_URL=f"http://{HOST}:9/")  # no sandbox: ingest only
        bridge_cli(["migrate", "--json"], env, tmp)
        add = ["connections", "add", "mollie", "--business-id", "B", "--api-key", API_KEY, "--json"]
        connection_id = str(orjson.loads(bridge_cli(add, env, tmp))["id"])
        port = free_port()
        log = tmp / f"serve-{kind}.log"
        try:
            server = procs.start([str(BRIDGE), "serve", "--host", HOST, "--port", str(port)], env, log, tmp)
            wait_ready(f"http://{HOST}:{port}/readyz", server, log)
            path = f"/webhooks/mollie/{connection_id}"
            plan = [("closed", n, 0.0) for n in args.connections] + [("open", 16, args.rate)]
            stored = 0
            for seed, (mode, n, rate) in enumerate(plan):
                phase: dict[str, Any] = {"background_busy_pct_before": wait_quiet(args.quiet_timeout)}
                out["phases"].append(phase)
                meter = Meter([server.pid])
                phase.update(
                    uvloop.run(
                        load_phase(port, path, mode=mode, connections=n, duration=args.duration,
                                   warmup=args.warmup, rate=rate, seed=1000 * seed + n)
                    )
                )  # fmt: skip
                phase["cpu"] = meter.done()
                stored += phase["ok"]
                phase["rows_equal_200s"] = count_rows(url) == stored
                print_phase(kind, phase)
        finally:
            procs.stop_all()
    return out


def print_phase(kind: str, p: dict[str, Any]) -> None:
    lat = p["latency_ms"]
    what = f"{p['mode']} {p['connections']}" + (f" @ {p['rate']:.0f}/s" if p["rate"] else "")
    print(
        f"ingest {kind:8} {what:18} {p['calls_per_s']:>8.1f} calls/s  p50 {lat['p50']:>7.2f} ms  p99 {lat['p99']:>7.2f}"
        f" ms  rows ok {p['rows_equal_200s']}  busy {p['cpu']['machine_busy_pct']} % (others "
        f"{p['cpu']['other_processes_pct']} %)",
        flush=True,
    )


# --- settlement: the simulated Mollie and Thred, in their own process -------------------------------------


def build_world(payments: int, seed: int) -> tuple[Any, dict[str, Any]]:
    from thred_bridge.simulators.common import ticking_clock
    from thred_bridge.simulators.mollie_world import MollieWorld

    start = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
    world = MollieWorld(seed=seed, clock=ticking_clock(start, 2))
    rng = random.Random(seed)
    made = []
    for n in range(payments):
        payment = world.create_payment(
            rng.randrange(500, 25_000),
            method=rng.choice(["ideal", "creditcard", "bancontact"]),
            email=f"c{n % 400}@example.org" if n % 4 else None,
        )
        world.pay(payment["id"])
        made.append(payment)
    refunded = rng.sample(made, max(payments // 100, 1))
    for payment in refunded:
        world.refund(payment["id"], 200, status="refunded")
    taken = {p["id"] for p in refunded}
    for payment in [p for p in made if p["id"] not in taken][:2]:
        world.chargeback(payment["id"])
    settlement = world.settle()
    return world, {"settlement": settlement["id"], "payments": payments, "refunds": len(refunded), "chargebacks": 2}


def freeze(world: Any) -> None:
    """Cache the world's reads (it no longer changes): the simulator's deep copies are not what is measured."""
    world.listed = functools.lru_cache(maxsize=None)(
        lambda resource, **where: world.__class__.listed(world, resource, **where)
    )
    views: dict[tuple[str, tuple[str, ...]], Any] = {}
    plain = world.__class__.payment_view

    def payment_view(payment_id: str, embed: Any = ()) -> Any:
        key = (payment_id, tuple(embed))
        if key not in views:
            views[key] = plain(world, payment_id, embed)
        return views[key]

    world.payment_view = payment_view


def server_main(payments: int, seed: int) -> int:
    """Serve the simulated Mollie and the Thred sandbox until stdin closes; print their URLs first."""
    from thred_bridge.sandbox import create_app as create_sandbox
    from thred_bridge.serving import serve_in_background
    from thred_bridge.simulators.mollie_routes import create_app as create_mollie

    built = time.perf_counter()
    world, facts = build_world(payments, seed)
    freeze(world)
    facts["build_s"] = round(time.perf_counter() - built, 1)

    async def requests(_request: Request) -> JSONResponse:
        paths: dict[str, int] = {}
        for seen in world.requests:
            key = seen.path.rsplit("/", 1)[0] if seen.path.startswith("/v2/payments/") else seen.path
            paths[key] = paths.get(key, 0) + 1
        return JSONResponse({"total": len(world.requests), "by_path": paths})

    mollie = Starlette(
        routes=[
            Route("/_bench/requests", requests),
            Mount("/", app=create_mollie(world, api_key=API_KEY, organization_token=ORG_TOKEN)),
        ]
    )

    async def serve() -> None:
        async with (
            serve_in_background(mollie) as mollie_url,
            serve_in_background(create_sandbox(partners=dict([PARTNER]))) as thred_url,
        ):
            print(orjson.dumps({"mollie": mollie_url, "thred": thred_url, **facts}).decode(), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(serve())
    return 0


# --- settlement: the measured process ---------------------------------------------------------------------


async def settlement_run(database_url: str, mollie_url: str, thred_url: str, settlement_id: str) -> dict[str, Any]:
    import httpx

    from thred_bridge.bootstrap import open_bridge
    from thred_bridge.service.connections import NewConnection
    from thred_bridge.settings import Settings
    from thred_bridge.store import schema

    schema.migrate(database_url)
    env = {"BRIDGE_MOLLIE_API_BASE": mollie_url, "THRED_API_URL": thred_url}
    settings = Settings.model_validate({**bridge_env(database_url, **env), "BRIDGE_MOLLIE_SETTLEMENT_POLL_SECONDS": 0})
    business = str(uuid.uuid4())
    rss_start = rss_bytes()
    sampler = RssSampler()
    sampler.start()
    async with open_bridge(settings) as bridge, httpx.AsyncClient(timeout=60) as http:
        credentials = {"api_key": API_KEY, "organization_token": ORG_TOKEN}
        connection = await bridge.connections.add(NewConnection("mollie", business, credentials, ()))
        before = (await http.get(f"{mollie_url}/_bench/requests")).json()["total"]
        stop = asyncio.Event()
        worker = asyncio.create_task(bridge.worker(concurrency=16).run(stop))
        started = time.perf_counter()
        cpu0 = time.process_time()
        body = f"id={settlement_id}".encode()
        notices = bridge.processors["mollie"].verify(body, {}, connection, datetime.now(UTC))
        await bridge.store.add_event_batches([(connection.id, "mollie", notices)], datetime.now(UTC))
        bridge.events_ready.set()
        while True:
            status = await bridge.connections.status(connection)
            if status.waiting == 0 and status.records_waiting == 0:
                break
            await asyncio.sleep(0.2)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        hwm_synced = vm_hwm_bytes()  # before the checks below read Thred's books back whole
        sampler.stop()
        stop.set()
        await worker
        calls = (await http.get(f"{mollie_url}/_bench/requests")).json()
        state = (await http.get(f"{thred_url}/_sandbox/state")).json()["businesses"][business]
    if status.failed or status.records_failed or len(state.get("payouts", [])) != 1:
        raise RuntimeError(f"the settlement did not sync: {status}")
    (payout,) = state["payouts"]
    return {
        "wall_s": round(wall, 2),
        "mollie_api_calls": calls["total"] - before,
        "mollie_calls_by_path": calls["by_path"],
        "records_sent": status.records_sent,
        "failed": status.failed + status.records_failed,
        "payout_payments": len(payout["payments"]),
        "payout_variance_cents": payout["amount_variance_cents"],
        "thred_payments": len(state.get("payments", [])),
        "bridge_cpu_s": round(cpu, 2),
        "rss_start_mib": round(rss_start / MIB, 1),
        "rss_opened_mib": round(sampler.samples[0][1] / MIB, 1) if sampler.samples else None,
        "peak_rss_mib": round(hwm_synced / MIB, 1),
        "rss_sampled_peak_mib": round(max(rss for _, rss in sampler.samples) / MIB, 1),
        "rss_by_second_mib": _by_second(sampler.samples, started),
        "ru_maxrss_after_checks_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _by_second(samples: list[tuple[float, int]], t0: float) -> list[float]:
    """The highest RSS sample (MiB) in each second from ``t0``."""
    peaks: dict[int, int] = {}
    for t, rss in samples:
        if t >= t0:
            peaks[int(t - t0)] = max(peaks.get(int(t - t0), 0), rss)
    return [round(peaks.get(i, 0) / MIB) for i in range(max(peaks, default=-1) + 1)]


def run_settlement(args: argparse.Namespace, kind: str, tmp: Path) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.mollie_bench", "--server", str(args.payments)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=HERE.parent,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        facts = orjson.loads(server.stdout.readline())
        with database(kind, tmp, args.pg_admin_url, "settlement") as url:
            busy_before = wait_quiet(args.quiet_timeout)
            meter = Meter([server.pid], self_too=False)
            child = subprocess.run(
                [sys.executable, "-m", "bench.mollie_bench", "--settlement-run", url, facts["mollie"], facts["thred"],
                 facts["settlement"]],
                capture_output=True, text=True, cwd=HERE.parent, timeout=args.timeout, check=False,
            )  # fmt: skip
            cpu = meter.done()
        if child.returncode != 0:
            raise RuntimeError(f"the settlement run failed: {child.stderr[-3000:]}")
        result = orjson.loads(child.stdout.strip().splitlines()[-1])
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    out = {"db": kind, "world": facts, "background_busy_pct_before": busy_before, **result, "cpu": cpu}
    print(
        f"settlement {kind:8} {args.payments} payments: {result['wall_s']} s, {result['mollie_api_calls']} Mollie "
        f"calls, {result['records_sent']} records, peak RSS {result['peak_rss_mib']} MiB, payout lists "
        f"{result['payout_payments']} (variance {result['payout_variance_cents']}), busy {cpu['machine_busy_pct']} %"
        f" (others {cpu['other_processes_pct']} %)",
        flush=True,
    )
    return out


# --- main -------------------------------------------------------------------------------------------------


def markdown(kinds: Sequence[str]) -> str:
    """The README tables from ``bench/results/mollie-<db>.json``."""
    ingest = [
        "| DB | load | calls/s | p50 / p99 ms | machine busy (others) |",
        "|---|---|--:|--:|--:|",
    ]
    settle = [
        "| DB | payments | time | Mollie calls | records | bridge CPU | peak RSS | machine busy (others) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    names = {"sqlite": "SQLite", "postgres": "Postgres"}
    for kind in kinds:
        report = orjson.loads((RESULTS / f"mollie-{kind}.json").read_bytes())
        for p in report.get("ingest", {}).get("phases", []):
            load = f"{p['connections']} connections" if p["mode"] == "closed" else f"{p['rate']:.0f}/s steady"
            lat, cpu = p["latency_ms"], p["cpu"]
            ingest.append(
                f"| {names[kind]} | {load} | {p['calls_per_s']:,.0f} | {lat['p50']:.1f} / {lat['p99']:.1f} "
                f"| {cpu['machine_busy_pct']:.0f} % ({cpu['other_processes_pct']:.0f} %) |"
            )
        if (r := report.get("settlement")) is not None:
            cpu = r["cpu"]
            settle.append(
                f"| {names[kind]} | {r['world']['payments']:,} | {r['wall_s']:.0f} s | {r['mollie_api_calls']} "
                f"| {r['records_sent']:,} | {r['bridge_cpu_s']:.0f} s | {r['peak_rss_mib']:.0f} MiB "
                f"| {cpu['machine_busy_pct']:.0f} % ({cpu['other_processes_pct']:.0f} %) |"
            )
    return "\n".join(ingest) + "\n\n" + "\n".join(settle)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--what", default="ingest,settlement", help="comma-separated: ingest, settlement")
    parser.add_argument("--connections", default="16,64", help="closed-loop connection counts")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per ingest phase")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop calls/s")
    parser.add_argument("--payments", type=int, default=10_000, help="payments in the settlement")
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound on one settlement run, seconds")
    parser.add_argument("--quiet-timeout", type=float, default=10.0, help="max wait for an idle machine")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--markdown", action="store_true", help="print the README tables from bench/results")
    parser.add_argument("--server", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settlement-run", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.connections = [int(n) for n in str(args.connections).split(",") if n.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.server is not None:
        return server_main(args.server, seed=7)
    if args.settlement_run is not None:
        result = asyncio.run(settlement_run(*args.settlement_run))
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        return 0
    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    if args.markdown:
        print(markdown(kinds))
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    what = {w.strip() for w in args.what.split(",")}
    for kind in kinds:
        report: dict[str, Any] = {
            "machine": machine_facts(),
            "settings": {k: v for k, v in vars(args).items() if k not in ("server", "settlement_run")},
            "note": f"{os.cpu_count()} CPUs shared by the load generator or simulators, the bridge and Postgres.",
        }
        with tempfile.TemporaryDirectory(prefix="bench-mollie-") as tmp:
            if "ingest" in what:
                report["ingest"] = run_ingest(args, kind, Path(tmp))
            if "settlement" in what:
                report["settlement"] = run_settlement(args, kind, Path(tmp))
        path = RESULTS / f"mollie-{kind}.json"
        if path.exists() and what != {"ingest", "settlement"}:  # a partial run keeps the other part's figures
            report = {**orjson.loads(path.read_bytes()), **report}
        path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"wrote {path.relative_to(HERE.parent)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
