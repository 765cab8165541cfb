"""Many processes on one Postgres: end-to-end events/s and records/s with 1, 2 and 4 worker processes.

    python -m bench.scale --events 20000 --workers 1,2,4 --web 3 --kill-workers 3 --latency-ms 20 --idle 200 --json

For each worker count: a fresh Postgres database; the simulated Stripe and Mollie APIs and a Thred sandbox
answering every call after ``--latency-ms`` (in this process); ``--web`` ``thred-bridge serve`` processes with
no worker tasks and that many ``thred-bridge worker`` processes (real subprocesses). ``--events`` mixed Stripe,
Adyen and Mollie deliveries (a fifth of the charges partly refunded), shuffled, a tenth of them twice, are
posted concurrently to all the web processes; the clock runs from the first delivery until every event is
handled and every record sent. With ``--kill-workers N``, the run with N workers SIGKILLs one of them half-way,
while it holds claims, measures how long its claims take to be finished by the others (``recovery_seconds``),
and starts a new one. Then every run is checked: nothing lost (each payment and refund in Thred with its
amount), nothing doubled (the sandbox counts creates per external id), no failure, and the same end state as
the run with the fewest workers.

``--idle N``: after the drain, on the now idle fleet, N single Stripe charges are posted one at a time and the
time from the POST to the payment's create reaching Thred is recorded (p50/p99: the LISTEN/NOTIFY wake-up plus
three Thred calls of ``--latency-ms`` each). Prints a table, or one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from tests.e2e.fleet import Fleet, Held, fleet, mixed_traffic

from bench.payout import HOST, cpu_seconds, database, machine_facts
from thred_bridge import testing


class CpuMeter:
    """The CPU seconds of every worker process, read as it runs (a killed one keeps its last reading)."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}

    def sample(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            seconds = cpu_seconds(proc.pid)
            if seconds:
                self.last[proc.pid] = seconds

    def total(self) -> float:
        return sum(self.last.values())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def idle_latency(f: Fleet, samples: int) -> dict[str, Any]:
    """Post one charge at a time to an idle fleet; time until its payment's create reaches Thred."""
    base = f.web[0][1]
    url = f"{base}/webhooks/stripe/{f.connections['stripe']}"
    seconds: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(samples):
            charge = f.stripe.add_charge(1000 + n, "eur")
            delivery = testing.stripe_delivery(f.stripe.event("charge.succeeded", charge), f.stripe_secret)
            key = f"payments:stripe_{charge['id']}"
            posted = time.monotonic()
            answer = await client.post(url, content=delivery.body, headers=delivery.headers)
            assert answer.status_code == 200, answer.text
            deadline = posted + 30
            while key not in f.thred.first_created:
                assert time.monotonic() < deadline, "an idle fleet never sent the payment"
                await asyncio.sleep(0.002)
            seconds.append(f.thred.first_created[key] - posted)
            await asyncio.sleep(0.3)  # idle again: every worker back asleep
    return {
        "samples": samples,
        "p50_ms": round(1000 * statistics.median(seconds), 1),
        "p99_ms": round(1000 * percentile(seconds, 0.99), 1),
        "max_ms": round(1000 * max(seconds), 1),
    }


async def one_run(args: argparse.Namespace, workers: int, db_url: str, cwd: Path) -> dict[str, Any]:
    latency = args.latency_ms / 1000
    async with fleet(db_url, cwd, latency=latency, settings={"BRIDGE_WORKER_CONCURRENCY": str(args.concurrency)}) as f:
        traffic = mixed_traffic(
            args.events, seed=args.seed, stripe=f.stripe, mollie=f.mollie, stripe_secret=f.stripe_secret
        )
        await f.start_web(args.web)
        cpu = CpuMeter()
        started = time.monotonic()
        delivering = asyncio.create_task(f.deliver(traffic, concurrency=args.delivery_concurrency))
        for _ in range(workers):
            f.start_worker()
        kill: dict[str, Any] | None = None
        doomed_at = len(traffic.payments) // 2 if workers == args.kill_workers else None
        held: Held | None = None
        killed = 0.0
        ingest_seconds = None
        while True:
            cpu.sample(f.workers)
            if ingest_seconds is None and delivering.done():
                delivering.result()
                ingest_seconds = time.monotonic() - started
            counts = f.counts()
            if doomed_at is not None and held is None and counts["sent"] >= doomed_at:
                doomed = f.workers[0]
                held = await f.wait_holding(doomed)
                cpu.sample([doomed])
                f.kill(doomed)
                killed = time.monotonic()
            if held is not None and kill is None and not f.unfinished(held):
                kill = {
                    "held_records": len(held.records),
                    "held_events": len(held.events),
                    "recovery_seconds": round(time.monotonic() - killed, 2),
                }
                f.start_worker()
            if ingest_seconds is not None and counts["events_left"] == 0 and counts["records_left"] == 0:
                break
            assert time.monotonic() - started < args.timeout, f"not drained in {args.timeout} s: {counts}"
            await asyncio.sleep(0.25)
        drain = time.monotonic() - started
        cpu.sample(f.workers)
        payments, refunds = await f.books()
        lost = len(set(traffic.payments) - set(payments)) + len(set(traffic.refunds) - set(refunds))
        wrong = sum(payments.get(k) != v for k, v in traffic.payments.items() if k in payments)
        wrong += sum(refunds.get(k) != v for k, v in traffic.refunds.items() if k in refunds)
        result: dict[str, Any] = {
            "workers": workers,
            "web": args.web,
            "events": len(traffic.deliveries),
            "distinct_events": traffic.unique,
            "records": counts["sent"],
            "ingest_seconds": round(ingest_seconds, 2),
            "drain_seconds": round(drain, 2),
            "events_per_s": round(len(traffic.deliveries) / drain, 1),
            "records_per_s": round(counts["sent"] / drain, 1),
            "worker_cpu_ms_per_record": round(1000 * cpu.total() / counts["sent"], 2) if counts["sent"] else None,
            "failed": counts["failed"],
            "lost": lost,
            "wrong_amount": wrong,
            "doubled": len(f.doubled()),
            "kill": kill,
            "shape": shape(traffic.payments, traffic.refunds, payments, refunds),
        }
        if args.idle and workers == max(args.workers):
            result["idle_latency"] = await idle_latency(f, args.idle)
        return result


def shape(
    want_payments: dict[str, int], want_refunds: dict[str, int], payments: dict[str, int], refunds: dict[str, int]
) -> dict[str, Any]:
    """The end state without the world's random ids: per processor, how many payments and refunds of which
    amounts (each run builds its own world from the same seed, so these must agree across runs)."""

    def by_processor(booked: dict[str, int]) -> dict[str, list[int]]:
        grouped: dict[str, list[int]] = {}
        for external_id, amount in booked.items():
            grouped.setdefault(external_id.split("_", 1)[0], []).append(amount)
        return {k: sorted(v) for k, v in sorted(grouped.items())}

    booked = {"payments": by_processor(payments), "refunds": by_processor(refunds)}
    return {"matches_world": booked == {"payments": by_processor(want_payments), "refunds": by_processor(want_refunds)},
            "fingerprint": hashlib.sha256(orjson.dumps(booked, option=orjson.OPT_SORT_KEYS)).hexdigest()}  # fmt: skip


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for workers in args.workers:
        with (
            tempfile.TemporaryDirectory(prefix="thred-bench-scale-") as tmp,
            database("postgres", Path(tmp), args.pg_admin_url) as db_url,
        ):
            print(f"# {workers} worker process(es) …", file=sys.stderr, flush=True)
            runs.append(await one_run(args, workers, db_url, Path(tmp)))
    first = runs[0]["shape"]["fingerprint"]
    for run in runs:
        run["same_end_state_as_fewest_workers"] = run["shape"].pop("fingerprint") == first
    return {
        "benchmark": "scale",
        "db": "postgres",
        "latency_ms": args.latency_ms,
        "worker_concurrency": args.concurrency,
        "runs": runs,
        "ok": all(
            r["lost"] == r["doubled"] == r["failed"] == r["wrong_amount"] == 0
            and r["shape"]["matches_world"]
            and r["same_end_state_as_fewest_workers"]
            for r in runs
        ),
        "machine": machine_facts("postgres", args.pg_admin_url),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"scale on Postgres, Thred latency {result['latency_ms']} ms, {result['machine']['nproc']} cores",
        "workers  events  records  drain s  events/s  records/s  CPU ms/record  recovery s  lost  doubled",
    ]
    for r in result["runs"]:
        recovery = r["kill"]["recovery_seconds"] if r["kill"] else "-"
        lines.append(
            f"{r['workers']:>7}  {r['events']:>6}  {r['records']:>7}  {r['drain_seconds']:>7}  {r['events_per_s']:>8}"
            f"  {r['records_per_s']:>9}  {r['worker_cpu_ms_per_record']:>13}  {recovery:>10}  {r['lost']:>4}"
            f"  {r['doubled']:>7}"
        )
        if "idle_latency" in r:
            idle = r["idle_latency"]
            lines.append(f"idle webhook → Thred: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms ({idle['samples']})")
    lines.append("ok" if result["ok"] else "NOT OK")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--web", type=int, default=3)
    parser.add_argument(
        "--kill-workers", type=int, default=3, help="kill one worker in the run with this many (0: none)"
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16, help="BRIDGE_WORKER_CONCURRENCY")
    parser.add_argument("--delivery-concurrency", type=int, default=32)
    parser.add_argument("--idle", type=int, default=200, help="idle latency samples (0: none)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL", f"postgresql://postgres@{HOST}:5432/postgres")
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = asyncio.run(main_async(args))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if args.json else table(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
