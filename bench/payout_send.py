"""The send of one large payout: claim it, fill its Thred ids, post it, mark it sent — time and memory.

    .venv/bin/python bench/payout_send.py --db sqlite --payments 48899 --refund-payments 1000

A settlement report of 50,000 rows ends in one payout naming every payment it settles; sending that one record
was the peak of the whole report's run (``bench/adyen_report.py``). This measures that step alone, in seconds
instead of a quarter of an hour, so a change to it can be judged directly:

1. A **server process** (this script with ``--servers``) seeds the Thred sandbox in memory with one customer,
   ``--payments`` invoices each paid by one payment and ``--refund-payments`` refunds each with a refund payment
   (through the sandbox's own books, no HTTP), writes their Thred ids to a file and serves the sandbox.
2. The **measured process** opens the bridge (``open_bridge``) on a fresh database, queues a payment record
   for each seeded payment and a refund payment record for each refund payment, marks them sent with the
   seeded Thred ids, and queues the payout record that names them all (``payout_record``, as a report's
   batch makes it). Then, from a collected heap and with glibc's mmap threshold fixed as the CLI does, it
   claims the payout, sends it (``Dispatching.handle``: fill, POST, mark sent) and records the time of each
   step, the RSS every 10 ms (its rise over the baseline is the figure), and with ``--tracemalloc`` the
   Python heap's peak (a second, slower run: tracemalloc costs time and memory of its own).
3. Checks: the Thred payout lists every payment and refund payment; writes
   ``bench/results/payout-send-<db>.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: import ``bench.*`` from the repository root, and keep bench/ off the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import gc
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, update

from bench.payout import HOST, RssSampler, Servers, console, database, machine_facts, rss_bytes, vm_hwm_bytes
from thred_bridge import testing
from thred_bridge.bootstrap import open_bridge
from thred_bridge.domain.ids import external_id
from thred_bridge.domain.money import Money
from thred_bridge.domain.movements import Payout, PayoutItem
from thred_bridge.domain.payouts import payout_record
from thred_bridge.domain.record_types import Record, Ref
from thred_bridge.malloc import return_large_blocks
from thred_bridge.observe import configure_logging
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.sandbox.schemas import (
    CreateCustomerRequest,
    CreateInvoicePaymentRequest,
    CreateInvoiceRequest,
    CreateRefundPaymentRequest,
    CreateRefundRequest,
)
from thred_bridge.service.connections import NewConnection
from thred_bridge.service.dispatch import Dispatching
from thred_bridge.serving import run as run_loop
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.store.tables import records

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MB = 2**20
AMOUNT = 2_500  # each payment, cents
REFUNDED = 1_000  # each refund payment, cents


# --- the server process: the sandbox, seeded --------------------------------------------------------------------


def seed(books: Any, business_id: str, payments: int, refund_payments: int) -> dict[str, Any]:
    """One customer, ``payments`` paid invoices, ``refund_payments`` of them refunded in part; their Thred ids."""
    books.ensure_business(business_id, testing.PARTNER[0], create=True)
    customer = books.create_customer(business_id, CreateCustomerRequest(external_id="adyen_walk_in")).body["id"]
    sent = datetime(2026, 11, 30, tzinfo=UTC)
    paid: list[tuple[str, str]] = []  # (payment external id, Thred id)
    refunded: list[tuple[str, str]] = []
    for n in range(payments):
        ext = external_id("adyen", f"PSP{n:012d}")
        invoice = books.create_invoice(
            business_id,
            CreateInvoiceRequest.model_validate(
                {"external_id": ext, "sent_at": sent, "customer_id": customer, "invoice_number": ext,
                 "currency": "EUR", "line_items": [{"description": "Adyen payment", "quantity": 1,
                                                    "unit_price": AMOUNT}]}
            ),
        ).body["id"]  # fmt: skip
        payment = books.create_payment(
            business_id,
            CreateInvoicePaymentRequest.model_validate(
                {"customer_id": customer, "total_amount_cents": AMOUNT, "currency": "EUR", "external_id": ext,
                 "allocations": [{"invoice_id": invoice, "amount_cents": AMOUNT}], "payment_date": date(2026, 11, 30),
                 "payment_method": "card", "payment_processor": "adyen", "payment_reference": f"PSP{n:012d}",
                 "metadata": {"processor": "adyen", "psp_reference": f"PSP{n:012d}"}}
            ),
            None,
        ).body["payment"]["id"]  # fmt: skip
        paid.append((ext, payment))
        if n < refund_payments:
            refund_ext = external_id("adyen", f"REF{n:012d}")
            refund = books.create_refund(
                business_id,
                CreateRefundRequest.model_validate(
                    {"invoice_id": invoice, "method": "CREDIT_CARD", "completed_at": sent, "external_id": refund_ext,
                     "amount_cents": REFUNDED, "processor": "adyen"}
                ),
            ).body["id"]  # fmt: skip
            refund_payment = books.create_refund_payment(
                business_id,
                refund,
                CreateRefundPaymentRequest.model_validate(
                    {"external_id": refund_ext, "amount_cents": REFUNDED, "completed_at": sent, "method": "CREDIT_CARD"}
                ),
            ).body["id"]  # fmt: skip
            refunded.append((refund_ext, refund_payment))
    return {"payments": paid, "refund_payments": refunded}


def servers_main(spec_json: str) -> int:
    """The ``--servers`` process: seed the sandbox, write the ids to a file, print its URL, serve until stdin
    closes."""
    spec = orjson.loads(spec_json)

    async def serve() -> None:
        started = time.perf_counter()
        app = create_sandbox(partners=dict([testing.PARTNER]))
        ids = seed(app.state.books, spec["business_id"], spec["payments"], spec["refund_payments"])
        await asyncio.to_thread(Path(spec["ids_file"]).write_bytes, orjson.dumps(ids))
        build_s = time.perf_counter() - started
        async with serve_in_background(app, host=HOST) as thred_url:
            sys.stdout.write(orjson.dumps({"thred_url": thred_url, "build_s": round(build_s, 2)}).decode() + "\n")
            sys.stdout.flush()
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)

    run_loop(serve())
    return 0


class SandboxServer(Servers):
    """The seeded sandbox's process, stopped as ``bench.payout.Servers`` stops its own."""

    def __init__(self, spec: dict[str, Any], log: Path) -> None:  # its own command line; stop() is inherited
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--servers", orjson.dumps(spec).decode()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            )  # fmt: skip


# --- the measured process ----------------------------------------------------------------------------------------


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (``clear_refs`` 5), so VmHWM is the peak of what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _payment_record(ext: str) -> Record:
    return Record("payment", ext, {"external_id": ext}, idempotency_key=ext)


def _refund_payment_record(ext: str) -> Record:
    return Record("refund_payment", ext, {"external_id": ext}, parent_path=Ref("refund", ext))


async def measure(args: argparse.Namespace, thred_url: str, ids: dict[str, Any], business_id: str,
                  db_url: str) -> dict[str, Any]:  # fmt: skip
    return_large_blocks()  # as ``thred-bridge worker`` and ``serve`` do at start
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
    payments: list[tuple[str, str]] = [tuple(p) for p in ids["payments"]]
    refunds: list[tuple[str, str]] = [tuple(r) for r in ids["refund_payments"]]
    async with open_bridge(config) as bridge:
        assert bridge.thred is not None
        connection = await bridge.connections.add(
            NewConnection("adyen", business_id, {"capture": "delayed"}, (testing.ADYEN_HMAC_KEY,),
                          account=testing.ADYEN_MERCHANT)
        )  # fmt: skip
        now = datetime.now(UTC)
        settled = [_payment_record(ext) for ext, _ in payments] + [_refund_payment_record(e) for e, _ in refunds]
        zero = Money(0, "EUR")
        items = [PayoutItem("charge", _object_id(ext), Money(AMOUNT, "EUR"), zero) for ext, _ in payments]
        items += [PayoutItem("refund", _object_id(ext), Money(-REFUNDED, "EUR"), zero) for ext, _ in refunds]
        payout = Payout(
            processor="adyen",
            object_id=f"{testing.ADYEN_MERCHANT}_batch_1",
            amount=Money(len(payments) * AMOUNT - len(refunds) * REFUNDED, "EUR"),
            arrives_at=now,
            status="paid",
            items=tuple(items),
        )
        queued = [*settled, payout_record(payout)]  # the payout as a batch makes it, naming every item
        del items, payout
        async with bridge.store.transaction() as tx:
            await tx.add_records(connection.id, queued, None, now)
        mark = (
            update(records)
            .where(records.c.connection_id == connection.id, records.c.external_id == bindparam("ext"),
                   records.c.kind == bindparam("k"))
            .values(status="sent", thred_id=bindparam("tid"), sent_at=now)
        )  # fmt: skip
        async with bridge.store.engine.begin() as conn:
            rows = [{"ext": e, "k": "payment", "tid": t} for e, t in payments]
            rows += [{"ext": e, "k": "refund_payment", "tid": t} for e, t in refunds]
            await conn.execute(mark, rows)
        del settled, queued, rows
        dispatching = Dispatching(
            bridge.store, bridge.thred, lambda: datetime.now(UTC), owner="bench", max_attempts=5,
            lease=timedelta(seconds=60),
        )  # fmt: skip
        gc.collect()
        return_large_blocks()
        await asyncio.sleep(0.2)
        base = rss_bytes()
        hwm_reset = _reset_hwm()
        sampler = RssSampler(0.01)
        sampler.start()
        if args.tracemalloc:
            tracemalloc.start()
        t0 = time.perf_counter()
        claimed = await dispatching.claim(1)
        t_claimed = time.perf_counter()
        heap_claim = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
        assert [c.kind for c in claimed] == ["payout"], claimed
        outcome = await dispatching.handle(claimed[0])
        t_sent = time.perf_counter()
        heap = tracemalloc.get_traced_memory() if args.tracemalloc else None
        if args.tracemalloc:
            tracemalloc.stop()
        del claimed
        gc.collect()
        await asyncio.sleep(0.1)
        sampler.stop()
        after = rss_bytes()
        hwm = vm_hwm_bytes()
        async with bridge.store.engine.connect() as conn:
            thred_id = (
                await conn.execute(
                    records.select()
                    .with_only_columns(records.c.thred_id)
                    .where(records.c.connection_id == connection.id, records.c.kind == "payout")
                )
            ).scalar_one()
        held = await bridge.thred.get(business_id, "payout", thred_id)
    sampled = max(sampler.between(t0, t_sent + 1), default=base)
    listed = (len(held.get("payment_ids") or held.get("payments") or []),
              len(held.get("refund_payment_ids") or held.get("refund_payments") or []))  # fmt: skip
    return {
        "outcome": outcome,
        "timings_s": {
            "claim": round(t_claimed - t0, 3),
            "fill_post_mark_sent": round(t_sent - t_claimed, 3),
            "total": round(t_sent - t0, 3),
        },
        "memory_mb": {
            "rss_before": round(base / MB, 1),
            "rss_peak_sampled_10ms": round(sampled / MB, 1),
            "vm_hwm": round(hwm / MB, 1) if hwm_reset else None,
            "rise_over_before": round((max(hwm if hwm_reset else 0, sampled) - base) / MB, 1),
            "rss_after": round(after / MB, 1),
            **({"heap_peak_claim": round(heap_claim / MB, 1)} if heap_claim is not None else {}),
            **({"heap_peak_send": round(heap[1] / MB, 1)} if heap is not None else {}),
        },
        "check": {
            "payments_listed": listed[0],
            "refund_payments_listed": listed[1],
            "ok": outcome == "sent" and listed == (len(payments), len(refunds)),
        },
    }


def _object_id(ext: str) -> str:
    """The Adyen id behind a seeded external id (``external_id("adyen", id)``)."""
    return ext.removeprefix("adyen_")


def run(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    configure_logging(args.log_level)
    report: dict[str, Any] = {
        "machine": machine_facts(args.db, args.pg_admin_url),
        "settings": {"db": args.db, "payments": args.payments, "refund_payments": args.refund_payments,
                     "tracemalloc": args.tracemalloc},
    }  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="thred-bench-payout-send-"))
    business_id = str(uuid.uuid4())
    server: SandboxServer | None = None
    try:
        with database(args.db, tmp, args.pg_admin_url) as db_url:
            console.print(f"[dim]{args.db}: seeding the sandbox with {args.payments:,} payments …[/dim]")
            spec = {"business_id": business_id, "payments": args.payments, "refund_payments": args.refund_payments,
                    "ids_file": str(tmp / "ids.json")}  # fmt: skip
            server = SandboxServer(spec, tmp / "server.log")
            info = server.ready()
            report["seed_s"] = info["build_s"]
            ids = orjson.loads((tmp / "ids.json").read_bytes())
            report["result"] = run_loop(measure(args, info["thred_url"], ids, business_id, db_url))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--payments", type=int, default=48_899)
    parser.add_argument("--refund-payments", type=int, default=1_000)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL", f"postgresql://postgres@{HOST}:5432/postgres")
    )
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--servers"]:
        return servers_main(argv[1])
    args = parse_args(argv)
    report = run(args)
    out = args.out or RESULTS / f"payout-send-{args.db}{'-tracemalloc' if args.tracemalloc else ''}.json"
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    console.print_json(orjson.dumps(report["result"]).decode())
    console.print(f"[dim]written to {out}[/dim]")
    return 0 if report["result"]["check"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
