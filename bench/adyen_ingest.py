"""Adyen ingest benchmark: signed Standard-webhook batches into ``thred-bridge serve`` until ``[accepted]``.

    .venv/bin/python bench/adyen_ingest.py --db sqlite --items 1,10 --connections 16,64 --duration 10
    .venv/bin/python -m bench.adyen_ingest --db postgres      (the same, as a module)

Everything runs on 127.0.0.1 and stops by itself. It reuses ``bench/ingest.py``'s machinery (raw HTTP/1.1
keep-alive client under uvloop, closed and open loops, percentiles, CPU accounting, the null server) and
``bench/payout.py``'s database helper. For one database kind it

1. makes a fresh, migrated database (a SQLite file in a temp dir, or a throwaway Postgres database on
   ``--pg-admin-url``, dropped at the end) and adds an Adyen connection with ``thred-bridge connections add
   adyen … --json`` (merchant account, Adyen's test HMAC key, webhook Basic auth);
2. starts ``thred-bridge serve`` (``BRIDGE_WORKERS=0``: ingest only; ``THRED_API_URL`` an unused loopback URL,
   so no embedded sandbox starts) and a null HTTP server (the load generator's own ceiling);
3. for each batch size B (``--items``, items per delivery) and connection count N, runs a load generator in
   its own process (this script with ``--load``): each delivery an Adyen batch of B ``NotificationRequestItem``s
   (AUTHORISATION and CAPTURE items, ~0.7 KB each, shopper and card ``additionalData``, every pspReference
   distinct across the run), each item signed with ``notification.sign_item`` just before the phase, sent
   with the webhook's Basic auth as Adyen sends it. Closed loop: N connections, each sending the next delivery
   when ``[accepted]`` came back for the last; open loop: ``--item-rate`` items/s (``--item-rate``/B
   deliveries/s) on a fixed schedule, latency counted from the scheduled time. The first ``--warmup`` second
   of a phase is left out;
4. checks after every phase that the events stored equal the items of the 200 answers, that every 200 answer's
   body is ``[accepted]``, and at the end that the table holds every accepted item;
5. prints a table and a Markdown table, and writes ``bench/results/adyen-ingest-<db>.json`` (machine facts,
   settings, every figure, the server's and Postgres's CPU, and the machine's busy share during each phase
   with the share other processes used).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: import ``bench.*`` from the repository root, and keep bench/ off the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # (a bench/<package>.py would shadow a package)

import argparse
import asyncio
import base64
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.table import Table

from bench.ingest import (
    BRIDGE,
    CLK_TCK,
    HOST,
    SECRET_KEY,
    LoadSpec,
    Processes,
    RawConnection,
    Samples,
    _children_cpu,
    _raw_sender,
    _summarise,
    bridge_cli,
    closed_loop,
    console,
    count_rows,
    cpu_seconds,
    free_port,
    machine_busy,
    machine_facts,
    open_loop,
    postgres_cpu,
    postgres_cpu_since,
    wait_quiet,
    wait_ready,
)
from bench.payout import database, postgres_version
from thred_bridge import testing
from thred_bridge.processors.adyen.notification import sign_item

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
MERCHANT = testing.ADYEN_MERCHANT
HMAC_KEY = testing.ADYEN_HMAC_KEY
WEBHOOK_AUTH = ("adyen-webhook", "bench-webhook-password")
ACCEPTED = b"[accepted]"
PSP_LENGTH = 16  # Adyen's pspReferences: 16 characters


# --- deliveries ----------------------------------------------------------------------------------------------


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def make_item(n: int, psp: str, event_date: str, key: str, merchant: str) -> dict[str, Any]:
    """Item ``n``: an AUTHORISATION (even) or a CAPTURE of payment ``psp``'s authorisation (odd), signed."""
    item: dict[str, Any] = {
        "additionalData": {
            "authCode": f"{n % 1_000_000:06d}",
            "cardSummary": f"{n % 10_000:04d}",
            "cardBin": "411111",
            "expiryDate": "03/2030",
            "issuerCountry": "NL",
            "fundingSource": "CREDIT",
            "shopperReference": f"shopper-{n % 5000}",
            "shopperEmail": f"shopper{n % 5000}@example.com",
            "shopperIP": "203.0.113.7",
            "threeDAuthenticated": "false",
            "recurringProcessingModel": "CardOnFile",
        },
        "amount": {"currency": "EUR", "value": 500 + n * 37 % 49_500},
        "eventCode": "AUTHORISATION" if n % 2 == 0 else "CAPTURE",
        "eventDate": event_date,
        "merchantAccountCode": merchant,
        "merchantReference": f"order-{psp}",
        "paymentMethod": "visa",
        "pspReference": psp,
        "success": "true",
    }
    if n % 2:
        item["originalReference"] = psp[:-1] + ("A" if psp[-1] != "A" else "B")
    else:
        item["operations"] = ["CANCEL", "CAPTURE", "REFUND"]
    item["additionalData"]["hmacSignature"] = sign_item(item, key)
    return {"NotificationRequestItem": item}


def make_batches(tag: str, count: int, items: int, key: str, merchant: str) -> list[bytes]:
    """``count`` deliveries of ``items`` items each; every pspReference distinct (``tag`` + a counter)."""
    event_date = datetime.now(UTC).isoformat(timespec="seconds")
    width = PSP_LENGTH - len(tag)
    out: list[bytes] = []
    for i in range(count):
        batch = [
            make_item(n, f"{tag}{n:0{width}d}", event_date, key, merchant) for n in range(i * items, (i + 1) * items)
        ]
        out.append(orjson.dumps({"live": "false", "notificationItems": batch}))
    return out


def raw_request(host: str, port: int, path: str, body: bytes, authorization: str) -> bytes:
    """The whole HTTP/1.1 request, as Adyen's webhook sender writes it."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: Adyen HttpClient 1.0\r\n"
        f"Accept: */*\r\nContent-Type: application/json; charset=utf-8\r\nAuthorization: {authorization}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- the load generator (its own process) --------------------------------------------------------------------


@dataclass
class AdyenLoadSpec(LoadSpec):
    """``bench.ingest.LoadSpec`` (``secret`` is the HMAC key) plus the batch size and the webhook's auth."""

    items: int = 1
    merchant: str = MERCHANT
    authorization: str = ""


class AcceptedConnection(RawConnection):
    """``bench.ingest.RawConnection`` that also tallies the answers' bodies (Adyen wants ``[accepted]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: Counter[bytes] = Counter()

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        pending = bytes(self.buffer) + data if waiter is not None else b""
        super().data_received(data)
        if waiter is None or self.waiter is not None or not waiter.done() or waiter.cancelled():
            return
        if waiter.exception() is None:
            used = len(pending) - len(self.buffer)
            self.bodies[pending[pending.find(b"\r\n\r\n") + 4 : used][:64]] += 1


async def run_load(spec: AdyenLoadSpec) -> dict[str, Any]:
    """Pre-build and sign the batches, then run the phase; returns the figures (the window excludes warm-up)."""
    built = time.perf_counter()
    needed = spec.max_requests if spec.mode == "closed" else round(spec.rate * (spec.warmup + spec.duration))
    bodies = make_batches(spec.tag, min(needed, spec.max_requests), spec.items, spec.secret, spec.merchant)
    requests = [raw_request(spec.host, spec.port, spec.path, body, spec.authorization) for body in bodies]
    body_bytes = sum(map(len, bodies)) / max(len(bodies), 1)
    del bodies
    pregen_s = time.perf_counter() - built
    samples = Samples()
    loop = asyncio.get_running_loop()
    made: list[AcceptedConnection] = []
    for _ in range(spec.connections):
        _transport, protocol = await loop.create_connection(AcceptedConnection, spec.host, spec.port)
        made.append(protocol)
    conns: list[RawConnection] = list(made)
    cpu0 = time.process_time()
    send = _raw_sender(spec, conns, requests)
    t0 = time.perf_counter() + 0.01
    try:
        if spec.mode == "closed":
            await closed_loop(send, spec, len(requests), samples, t0)
        else:
            await open_loop(send, spec, len(requests), samples, t0)
    finally:
        for conn in conns:
            conn.close()
    result = _summarise(spec, samples, t0, pregen_s, time.process_time() - cpu0)
    result["spec"].pop("authorization", None)
    tally: Counter[bytes] = Counter()
    for conn in made:
        tally.update(conn.bodies)
    result["answer_bodies"] = {body.decode("utf-8", "replace"): n for body, n in tally.most_common(5)}
    result["accepted_bodies"] = tally[ACCEPTED]
    result["items_per_delivery"] = spec.items
    result["deliveries_per_s"] = result["events_per_s"]
    result["items_per_s"] = round(result["events_per_s"] * spec.items, 1)
    result["body_bytes_mean"] = round(body_bytes)
    return result


def load_main(spec_json: str) -> int:
    import uvloop

    spec = AdyenLoadSpec(**orjson.loads(spec_json))
    result = uvloop.run(run_load(spec))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


# --- one phase, one run --------------------------------------------------------------------------------


@dataclass
class Target:
    name: str  # bridge | null
    port: int
    path: str
    proc: subprocess.Popen[bytes]
    url: str | None = None  # database URL (None for the null server)
    items_total: int = 0  # items of the 200 answers


class Runner:
    """Runs load phases against a target, with CPU accounting and the stored-items check."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_tag = secrets.token_hex(2).upper()
        self.phase_no = 0
        self.authorization = basic_auth(*WEBHOOK_AUTH)

    def phase(self, target: Target, *, items: int, mode: str, n: int, duration: float) -> dict[str, Any]:
        self.phase_no += 1
        args = self.args
        prebuilt = 2000 if target.name == "null" else args.max_items  # the null server's may repeat
        spec = AdyenLoadSpec(
            host=HOST, port=target.port, path=target.path, client="raw", mode=mode, connections=n,
            duration=duration, warmup=args.warmup, rate=args.item_rate / items,
            max_requests=max(1, prebuilt // items), tag=f"{self.run_tag}{self.phase_no:02d}", secret=HMAC_KEY,
            reuse=target.name == "null", items=items, authorization=self.authorization,
        )  # fmt: skip
        rows_before = count_rows(target.url) if target.url else 0
        result: dict[str, Any] = {"background_busy_pct_before": wait_quiet(args.quiet_timeout)}
        server_cpu0, pg_cpu0, busy0 = cpu_seconds(target.proc.pid), postgres_cpu(), machine_busy()
        children0 = _children_cpu()
        done = subprocess.run(
            [sys.executable, "-m", "bench.adyen_ingest", "--load", orjson.dumps(asdict(spec)).decode()],
            cwd=REPO, capture_output=True, text=True, timeout=duration + args.warmup + 180, check=False,
        )  # fmt: skip
        server_cpu = cpu_seconds(target.proc.pid) - server_cpu0
        pg_cpu = postgres_cpu_since(pg_cpu0)
        children = _children_cpu() - children0
        busy1 = machine_busy()
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr[-3000:]}")
        result.update(orjson.loads(done.stdout))
        ok = int(result["ok"])
        result["server_cpu_s"] = round(server_cpu, 3)
        result["server_cpu_us_per_item"] = round(1e6 * server_cpu / (ok * items), 1) if ok else None
        if args.db == "postgres":
            result["postgres_cpu_s"] = round(pg_cpu, 3)
            result["postgres_cpu_us_per_item"] = round(1e6 * pg_cpu / (ok * items), 1) if ok else None
        busy_s, all_s = (busy1[0] - busy0[0]) / CLK_TCK, (busy1[1] - busy0[1]) / CLK_TCK
        ours = server_cpu + children + (pg_cpu if args.db == "postgres" else 0.0)
        result["machine_busy_pct"] = round(100 * busy_s / max(all_s, 1e-9), 1)
        result["other_processes_cpu_pct"] = round(100 * max(busy_s - ours, 0.0) / max(all_s, 1e-9), 1)
        if target.url:
            stored = count_rows(target.url) - rows_before
            result["items_stored"] = stored
            result["items_accepted"] = ok * items
            result["count_check"] = stored == ok * items and result["sent"] == ok and result["accepted_bodies"] == ok
            target.items_total += ok * items
        return result


def start_servers(procs: Processes, tmp: Path, db_url: str) -> tuple[Target, Target]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "THRED_"))},
        "BRIDGE_DATABASE_URL": db_url,
        "BRIDGE_SECRET_KEY": SECRET_KEY,
        "BRIDGE_WORKERS": "0",
        "BRIDGE_LOG_LEVEL": "warning",
        "THRED_API_URL": f"http://{HOST}:9/",  # discard port, never listened on: no embedded sandbox
        "THRED_PARTNER_ID": "bench-partner",
        "THRED_API_KEY": "bench-api-key",
    }
    add = [
        "connections", "add", "adyen", "--business-id", "B", "--merchant-account", MERCHANT, "--hmac-key", HMAC_KEY,
        "--webhook-user", WEBHOOK_AUTH[0], "--webhook-password", WEBHOOK_AUTH[1], "--json",
    ]  # fmt: skip
    added = orjson.loads(bridge_cli(add, env, tmp))
    path = f"/webhooks/adyen/{added['id']}"
    bridge_port, null_port = free_port(), free_port()
    env["BRIDGE_PUBLIC_URL"] = f"http://{HOST}:{bridge_port}"
    bridge_log, null_log = tmp / "bridge.log", tmp / "null.log"
    bridge = procs.start([str(BRIDGE), "serve", "--host", HOST, "--port", str(bridge_port)], env, bridge_log, tmp)
    null = procs.start([sys.executable, "-m", "bench.ingest", "--null-server", str(null_port)], env, null_log, REPO)
    wait_ready(f"http://{HOST}:{bridge_port}/readyz", bridge, bridge_log)
    wait_ready(f"http://{HOST}:{null_port}/readyz", null, null_log)
    return Target("bridge", bridge_port, path, bridge, db_url), Target("null", null_port, path, null)


def run(args: argparse.Namespace) -> dict[str, Any]:
    batch_sizes = [int(x) for x in args.items.split(",") if x.strip()]
    counts = [int(x) for x in args.connections.split(",") if x.strip()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    runner = Runner(args)
    facts = machine_facts()
    if args.db == "postgres":
        facts["postgres"] = postgres_version(args.pg_admin_url)
    report: dict[str, Any] = {
        "machine": facts,
        "settings": {
            "db": args.db,
            "items_per_delivery": batch_sizes,
            "connections": counts,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "item_rate": args.item_rate,
            "max_items": args.max_items,
            "client": "raw (bench.ingest), uvloop",
            "webhook_basic_auth": True,
            "bridge": "thred-bridge serve, BRIDGE_WORKERS=0 (ingest only), one process",
        },
        "note": (
            f"{os.cpu_count()} CPUs: the load generator, the bridge"
            f"{' and Postgres' if args.db == 'postgres' else ''} share them, so these are whole-machine figures."
        ),
        "runs": [],
    }
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="thred-bench-adyen-ingest-"))
    try:
        with database(args.db, tmp, args.pg_admin_url) as db_url:
            try:
                bridge, null = start_servers(procs, tmp, db_url)
                for items in batch_sizes:
                    for n in counts:
                        entry: dict[str, Any] = {"items_per_delivery": items, "connections": n}
                        if args.ceiling_duration > 0:
                            console.print(f"[dim]{args.db} B={items} N={n}: client ceiling …[/dim]")
                            entry["client_ceiling"] = runner.phase(
                                null, items=items, mode="closed", n=n, duration=args.ceiling_duration
                            )
                        for mode in ("closed", "open"):
                            console.print(f"[dim]{args.db} B={items} N={n}: bridge {mode} loop …[/dim]")
                            entry[f"bridge_{mode}"] = runner.phase(
                                bridge, items=items, mode=mode, n=n, duration=args.duration
                            )
                        report["runs"].append(entry)
                rows = count_rows(db_url)
                report["final_count_check"] = {
                    "events": rows,
                    "items_accepted": bridge.items_total,
                    "equal": rows == bridge.items_total,
                }
            finally:
                procs.stop_all()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


# --- output ----------------------------------------------------------------------------------------------


def _lat(phase: dict[str, Any]) -> str:
    lat = phase["latency_ms"]
    return f"{lat['p50']:.1f} / {lat['p99']:.1f}"


def _problems(phase: dict[str, Any]) -> str:
    bad = {k: v for k, v in phase["statuses"].items() if k != "200"}
    flags = []
    if bad or phase["errors"]:
        flags.append(f"non-200 {bad} {phase['errors']}")
    if phase.get("count_check") is False:
        flags.append(
            f"events {phase['items_stored']} != accepted items {phase['items_accepted']} "
            f"(bodies {phase['answer_bodies']})"
        )
    if phase["exhausted"]:
        flags.append("ran out of pre-built deliveries")
    if phase["other_processes_cpu_pct"] > 10:
        flags.append(f"other processes used {phase['other_processes_cpu_pct']} % of the machine meanwhile")
    return "; ".join(flags)


def render(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    db, rate = s["db"], s["item_rate"]
    table = Table(title=f"Adyen ingest, {db} ({m['nproc']} CPUs, {m['cpu_model']})")
    columns = (
        "items/delivery", "conns", "items/s", "deliveries/s", "p50/p99 ms", f"open {rate:g} items/s p50/p99",
        "CPU µs/item bridge", "busy % / other %", "client ceiling deliveries/s", "events = accepted",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")
    md = [
        f"| DB | items/delivery | conns | items/s | deliveries/s | p50 / p99 ms | open {rate:g} items/s p50 / p99 ms "
        "| machine busy / other % | events = accepted items |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    problems: list[str] = []
    for r in report["runs"]:
        c, o = r["bridge_closed"], r["bridge_open"]
        ceiling = r.get("client_ceiling", {}).get("events_per_s")
        check = "yes" if c.get("count_check") and o.get("count_check") else "NO"
        busy = f"{c['machine_busy_pct']:.0f} / {c['other_processes_cpu_pct']:.0f}"
        table.add_row(
            str(r["items_per_delivery"]), str(r["connections"]), f"{c['items_per_s']:,.0f}",
            f"{c['deliveries_per_s']:,.0f}", _lat(c), _lat(o), f"{c['server_cpu_us_per_item']}", busy,
            "–" if ceiling is None else f"{ceiling:,.0f}", check,
        )  # fmt: skip
        md.append(
            f"| {db} | {r['items_per_delivery']} | {r['connections']} | {c['items_per_s']:,.0f} "
            f"| {c['deliveries_per_s']:,.0f} | {_lat(c)} | {_lat(o)} | {busy} | {check} |"
        )
        for name, phase in (("closed", c), ("open", o)):
            if text := _problems(phase):
                problems.append(f"B={r['items_per_delivery']} N={r['connections']} {name}: {text}")
    console.print(table)
    console.print(f"[yellow]{report['note']}[/yellow]")
    for text in problems:
        console.print(f"[red]{text}[/red]")
    console.print(f"final count check: {report.get('final_count_check')}")
    return "\n".join(md)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Adyen ingest benchmark: signed batches until [accepted].")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--items", default="1,10", help="comma-separated items per delivery (batch sizes)")
    parser.add_argument("--connections", default="16,64", help="comma-separated concurrent connection counts")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each phase's measured window")
    parser.add_argument("--item-rate", type=float, default=500.0, help="open-loop items/s (deliveries/s × B)")
    parser.add_argument("--max-items", type=int, default=300_000, help="pre-built items per phase (a bound)")
    parser.add_argument("--ceiling-duration", type=float, default=2.0, help="null-server phase (0: none)")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--quiet-timeout", type=float, default=10.0, help="max wait for an idle machine per phase")
    parser.add_argument("--output", type=Path, default=None, help="default: bench/results/adyen-ingest-<db>.json")
    parser.add_argument("--load", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _terminated(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # SIGTERM: unwind, so the ``finally`` blocks stop the servers and drop the database


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load is not None:
        return load_main(args.load)
    signal.signal(signal.SIGTERM, _terminated)
    started = time.monotonic()
    report = run(args)
    report["wall_s"] = round(time.monotonic() - started, 1)
    output = args.output or RESULTS / f"adyen-ingest-{args.db}.json"
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    markdown = render(report)
    console.print(f"\nMarkdown (results in {output}):\n")
    print(markdown)
    failed = not report["final_count_check"]["equal"] or any(
        not p.get("count_check", True) or p["exhausted"]
        for r in report["runs"]
        for p in (r["bridge_closed"], r["bridge_open"])
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
