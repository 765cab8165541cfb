"""Chaos, end to end: nothing lost, nothing doubled, every payout ties out, whatever fails.

    python -m bench.chaos --db sqlite|postgres --events N --json

The command line and the JSON's fields ``events``, ``deliveries``, ``kills``, ``thred_faults``, ``db_restarts``,
``lost``, ``doubled``, ``variance_nonzero_payouts``, ``drain_seconds`` and ``identical_to_clean`` are pinned:
other tools read them. Everything runs on 127.0.0.1 and stops by itself (``--timeout``).

1. **The world**: about N distinct deliveries over Stripe, Adyen and Mollie (the fleet's ``mixed_traffic``):
   charges in EUR, USD and GBP, a fifth partly refunded, a tenth of the others disputed or charged back in full,
   and once the month is over a Stripe payout per currency. Each delivery is sent one to three times, shuffled.
2. **The chaos run**: ``--web`` ``serve`` and ``--workers`` ``worker`` processes on a fresh database. Thred answers
   every call after ``--latency-ms`` and fails ``--fault-rate`` of them: 500, 503 or 429 (with Retry-After),
   half of the 500s after the write committed (the answer is lost). Every ``--kill-every`` seconds (± half), for
   the first ``--chaos-seconds`` (or until nothing is left), a web or a worker process, at random, is SIGKILLed
   and started again; any process that dies on its own is started
   again too, as a platform would. On Postgres the database server is restarted once, half-way through the
   deliveries (``pg_ctlcluster … restart``; ``--no-db-restart`` leaves it alone). Deliveries are retried, as a
   processor does, until stored (any web process; a 4xx is a refusal, and a bug here).
3. **The clean run**: the same world, delivered once each in order to one web and one worker process, with a
   Thred that neither waits nor fails.
4. **Figures**: ``lost`` (a payment, refund or dispute of the world that is not in Thred), ``doubled`` (one
   processor object twice in Thred), ``variance_nonzero_payouts``, ``identical_to_clean`` (every record's
   external id, amounts and links equal to the clean run's) and ``drain_seconds`` (first delivery to nothing
   left), with the kills, faults and restarts made.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from tests.e2e.fleet import BUSINESSES, Fleet, Traffic, fleet, mixed_traffic
from tests.e2e.processes import stop_all

from bench.payout import HOST, database, machine_facts
from thred_bridge import testing
from thred_bridge.simulators.mollie_api import MollieWorld
from thred_bridge.simulators.stripe_api import StripeWorld

KINDS = ("customers", "invoices", "payments", "refunds", "refund_payments", "payouts")
Delivery = tuple[str, Callable[[], testing.Delivery]]


# --- Thred failing -----------------------------------------------------------------------------------------


@dataclass
class Faults:
    """ASGI middleware: fails ``rate`` of Thred's ``/v1/`` calls (token calls too) with 500, 503 or 429; half of
    the 500s pass the call on first and lose its answer, as a timeout after the commit would."""

    app: Any
    rate: float
    rng: random.Random
    counts: Counter[str] = field(default_factory=Counter)
    on: bool = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not (self.on and scope["type"] == "http" and scope["path"].startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        if self.rng.random() >= self.rate:
            await self.app(scope, receive, send)
            return
        status, after = self.rng.choice(((500, False), (500, True), (503, False), (429, False)))
        self.counts[f"{status}{' after commit' if after else ''}"] += 1
        if after:

            async def lost(_message: Any) -> None:  # the sandbox commits; its answer never reaches the bridge
                return None

            await self.app(scope, receive, lost)
        headers = [(b"content-type", b"application/json")] + ([(b"retry-after", b"1")] if status == 429 else [])
        body = orjson.dumps({"error_code": "server_error" if status >= 500 else "rate_limited", "message": "chaos"})
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# --- the processes -----------------------------------------------------------------------------------------


@dataclass
class Chaos:
    f: Fleet
    rng: random.Random
    kills: int = 0
    restarts_unasked: int = 0
    db_restarts: int = 0

    async def kill_one(self) -> None:
        """SIGKILL a web or worker process at random and start its replacement."""
        web = self.rng.random() < len(self.f.web) / (len(self.f.web) + len(self.f.workers))
        if web and len(self.f.web) > 1:
            proc, base = self.rng.choice(self.f.web)
            self.f.web.remove((proc, base))
            proc.kill()
            proc.wait(timeout=10)
            await self.f.start_web(1)
        else:
            self.f.kill(self.rng.choice(self.f.workers))
            self.f.start_worker()
        self.kills += 1

    async def revive(self) -> None:
        """Start again any process that died by itself (a database restart can take one down)."""
        for proc, base in list(self.f.web):
            if proc.poll() is not None:
                self.f.web.remove((proc, base))
                await self.f.start_web(1)
                self.restarts_unasked += 1
        for proc in list(self.f.workers):
            if proc.poll() is not None:
                self.f.workers.remove(proc)
                self.f.start_worker()
                self.restarts_unasked += 1

    def restart_database(self) -> None:
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.db_restarts += 1


async def deliver(f: Fleet, deliveries: list[Delivery], *, concurrency: int, done: list[int]) -> list[str]:
    """Every delivery until stored, to any live web process, ``concurrency`` at once; ``done[0]`` counts them.
    Answers the refusals (4xx), which must not happen."""
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    for item in deliveries:
        queue.put_nowait(item)
    refused: list[str] = []

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            processor, make = queue.get_nowait()
            delivery = make()
            while True:
                base = random.choice(f.web)[1]
                url = f"{base}/webhooks/{processor}/{f.connections[processor]}"
                try:
                    answer = await client.post(url, content=delivery.body, headers=delivery.headers)
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
                    continue
                if answer.status_code == 200:
                    break
                if answer.status_code < 500:
                    refused.append(f"{processor} {answer.status_code} {answer.text[:200]}")
                    break
                await asyncio.sleep(0.2)
            done[0] += 1

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
    return refused


def stuck(f: Fleet) -> list[Any]:
    """What is left, by table, status and holder: what a run that does not drain is waiting for."""
    return f.query(
        "SELECT 'event', status, locked_by, count(*), min(next_attempt_at), max(attempts) FROM events"
        " WHERE status IN ('pending', 'processing') GROUP BY status, locked_by"
        " UNION ALL SELECT 'record', status, locked_by, count(*), min(next_attempt_at), max(attempts) FROM records"
        " WHERE status = 'pending' GROUP BY status, locked_by"
    )


def remaining(f: Fleet) -> int | None:
    """Events and records not yet done, or None while the database cannot be read (restarting)."""
    try:
        counts = f.counts()
    except Exception:
        return None
    return counts["events_left"] + counts["records_left"]


async def chaos_run(args: argparse.Namespace, traffic: Traffic, worlds: tuple[StripeWorld, MollieWorld, str],
                    db_url: str, cwd: Path) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    rng = random.Random(args.seed + 1)
    faults: list[Faults] = []

    def wrap(app: Any) -> Any:
        faults.append(Faults(app, args.fault_rate, random.Random(args.seed + 2)))
        return faults[0]

    settings = {"BRIDGE_WORKER_CONCURRENCY": str(args.concurrency), "BRIDGE_TAKEOVER_SECONDS": "10"}
    async with fleet(db_url, cwd, latency=args.latency_ms / 1000, settings=settings, worlds=worlds, wrap=wrap) as f:
        chaos = Chaos(f, rng)
        await f.start_web(args.web)
        for _ in range(args.workers):
            f.start_worker()
        started = time.monotonic()
        done = [0]
        delivering = asyncio.create_task(
            deliver(f, traffic.deliveries, concurrency=args.delivery_concurrency, done=done)
        )
        next_kill = started + args.kill_every
        restart_at = len(traffic.deliveries) // 2 if args.db == "postgres" and args.db_restart else None
        progress: list[tuple[float, int, int | None]] = []  # (s since start, delivered, left), every 10 s
        next_sample = started
        while True:
            now = time.monotonic()
            if now >= next_sample:
                progress.append((round(now - started, 1), done[0], remaining(f)))
                next_sample = now + 10
            assert now - started < args.timeout, f"not drained in {args.timeout} s: {stuck(f)}"
            if now >= next_kill and now - started < args.chaos_seconds:
                await chaos.kill_one()
                next_kill = time.monotonic() + args.kill_every * rng.uniform(0.5, 1.5)
            if restart_at is not None and done[0] >= restart_at:
                chaos.restart_database()
                restart_at = None
            await chaos.revive()
            if delivering.done() and remaining(f) == 0:
                break
            await asyncio.sleep(0.25)
        drain = time.monotonic() - started
        refused = delivering.result()
        books = await state(f)
        stop_all([proc for proc, _ in f.web] + f.workers)
        run = {
            "drain_seconds": round(drain, 2),
            "kills": chaos.kills,
            "restarted_after_dying": chaos.restarts_unasked,
            "thred_faults": sum(faults[0].counts.values()),
            "thred_faults_by_kind": dict(faults[0].counts),
            "db_restarts": chaos.db_restarts,
            "refused": refused[:5],
            "failed": f.counts()["failed"],
            "progress": progress,
        }
    return run, books


async def clean_run(
    worlds: tuple[StripeWorld, MollieWorld, str], db_url: str, cwd: Path, order: list[Delivery]
) -> dict[str, Any]:
    async with fleet(db_url, cwd, latency=0.0, worlds=worlds) as f:
        await f.start_web(1)
        f.start_worker()
        done = [0]
        refused = await deliver(f, order, concurrency=8, done=done)
        assert refused == [], refused[:5]
        await f.wait_drained(timeout=1800)
        return await state(f)


async def state(f: Fleet) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=120) as client:
        return dict((await client.get(f"{f.thred_url}/_sandbox/state")).json()["businesses"])


def canonical(books: dict[str, Any]) -> dict[str, Any]:
    """What two runs of one world must share: per business and kind, each record by external id with its
    amounts and the external ids of what it links to (no Thred ids, times or numbers, which differ by run)."""
    out: dict[str, Any] = {}
    for name, business in BUSINESSES.items():
        b = books.get(business, {})
        ext = {r["id"]: r.get("external_id") for kind in KINDS for r in b.get(kind, [])}

        def linked(ids: list[str], ext: dict[str, Any] = ext) -> tuple[str, ...]:
            return tuple(sorted(str(ext.get(i)) for i in ids))

        out[name] = {
            "customers": sorted(c["external_id"] for c in b.get("customers", [])),
            "invoices": sorted(
                (i["external_id"], i["currency"], i["total_amount_cents"]) for i in b.get("invoices", [])
            ),
            "payments": sorted(
                (
                    p["external_id"],
                    p["currency"],
                    p["total_amount_cents"],
                    p["processing_fee_cents"],
                    str(ext.get(p["customer_id"])),
                    linked([a["invoice_id"] for a in p.get("allocations", [])]),
                )
                for p in b.get("payments", [])
            ),
            "refunds": sorted((r["external_id"], r["amount_cents"]) for r in b.get("refunds", [])),
            "refund_payments": sorted((r["external_id"], r["amount_cents"]) for r in b.get("refund_payments", [])),
            "payouts": sorted(
                (
                    p["external_id"],
                    p["paid_out_amount_cents"],
                    p["fee_cents"],
                    p["additional_refunds_amount_cents"],
                    p["amount_variance_cents"],
                    linked(p.get("payment_ids", [])),
                )
                for p in b.get("payouts", [])
            ),
        }
    return out


def verdict(traffic: Traffic, books: dict[str, Any]) -> dict[str, int]:
    """lost, doubled and payouts that do not tie out, over the three businesses."""
    seen: Counter[tuple[str, str]] = Counter()
    variance = 0
    for business in BUSINESSES.values():
        b = books.get(business, {})
        for kind in KINDS:
            seen.update((kind, r["external_id"]) for r in b.get(kind, []))
        variance += sum(p["amount_variance_cents"] != 0 for p in b.get("payouts", []))
    lost = sum(("payments", k) not in seen for k in traffic.payments)
    lost += sum(("refunds", k) not in seen for k in traffic.refunds)
    return {"lost": lost, "doubled": sum(n > 1 for n in seen.values()), "variance_nonzero_payouts": variance}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    worlds = (StripeWorld(), MollieWorld(), "whsec_chaos_" + os.urandom(6).hex())
    traffic = mixed_traffic(
        args.events, seed=args.seed, stripe=worlds[0], mollie=worlds[1], stripe_secret=worlds[2],
        disputes=True, payouts=True, copies=(1, 1, 2, 3),
    )  # fmt: skip
    order = list(dict.fromkeys(traffic.deliveries))  # each once, in the order first met
    with tempfile.TemporaryDirectory(prefix="thred-bench-chaos-") as tmp:
        chaos_dir, clean_dir = Path(tmp) / "chaos", Path(tmp) / "clean"
        chaos_dir.mkdir()
        clean_dir.mkdir()
        with database(args.db, chaos_dir, args.pg_admin_url) as url:
            print(f"# chaos: {len(traffic.deliveries)} deliveries …", file=sys.stderr, flush=True)
            run, books = await chaos_run(args, traffic, worlds, url, chaos_dir)
        with database(args.db, clean_dir, args.pg_admin_url) as url:
            print("# clean run …", file=sys.stderr, flush=True)
            clean = await clean_run(worlds, url, clean_dir, order)
    figures = verdict(traffic, books)
    result: dict[str, Any] = {
        "benchmark": "chaos",
        "db": args.db,
        "events": traffic.unique,
        "deliveries": len(traffic.deliveries),
        "kills": run["kills"],
        "thred_faults": run["thred_faults"],
        "db_restarts": run["db_restarts"],
        **figures,
        "drain_seconds": run["drain_seconds"],
        "identical_to_clean": canonical(books) == canonical(clean),
        "failed": run["failed"],
        "refused": run["refused"],
        "restarted_after_dying": run["restarted_after_dying"],
        "thred_faults_by_kind": run["thred_faults_by_kind"],
        "progress": run["progress"],
        "settings": {
            k: getattr(args, k) for k in ("web", "workers", "kill_every", "chaos_seconds", "fault_rate", "latency_ms")
        },
        "machine": machine_facts(args.db, args.pg_admin_url),
    }
    result["ok"] = (
        result["lost"] == result["doubled"] == result["variance_nonzero_payouts"] == result["failed"] == 0
        and result["identical_to_clean"] and not result["refused"]
    )  # fmt: skip
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--web", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills (± half)")
    parser.add_argument("--chaos-seconds", type=float, default=120.0, help="how long processes are killed")
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--concurrency", type=int, default=32, help="BRIDGE_WORKER_CONCURRENCY")
    parser.add_argument("--delivery-concurrency", type=int, default=16)
    parser.add_argument("--no-db-restart", dest="db_restart", action="store_false")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL", f"postgresql://postgres@{HOST}:5432/postgres")
    )
    return parser.parse_args(argv)


def table(result: dict[str, Any]) -> str:
    keys = ("events", "deliveries", "kills", "thred_faults", "db_restarts", "lost", "doubled",
            "variance_nonzero_payouts", "drain_seconds", "identical_to_clean")  # fmt: skip
    return "\n".join(
        [f"chaos on {result['db']}", *(f"{k:>26}  {result[k]}" for k in keys), "ok" if result["ok"] else "NOT OK"]
    )


def _terminated(_signum: int, _frame: object) -> None:
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminated)  # a killed run still stops its fleet and drops its database
    result = asyncio.run(main_async(args))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if args.json else table(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
