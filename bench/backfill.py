"""Backfill benchmark: how fast `thred-bridge backfill` pulls a year of Stripe charges into the inbox, against
the bound its rate limit sets, and with how much memory.

    .venv/bin/python bench/backfill.py --charges 100000 --rate 25 [--db sqlite|postgres]

A server process (this script in ``--serve`` mode, so its memory is not counted) builds the charges with the
simulated Stripe (`StripeWorld`), then serves Stripe's list endpoints for them from a created-sorted index:
``GET /v1/charges|refunds|disputes|payouts`` with ``created[gte]``/``created[lt]``, ``limit``, ``starting_after``,
newest first, in Stripe's list envelope, checking the API key. (The simulator's own list routes scan every
object on each request, which would make the fake the bottleneck.) The measured process runs the real
command, `thred-bridge backfill ID --since … --until … --rate R --json`, as a subprocess and samples its RSS.

The bound: at R requests/s and 100 objects a page, a backfill cannot beat 100·R objects/s; empty pages
(refunds, disputes and payouts here) and slice ends cost requests too, so the bound is computed from the
requests the run actually needed: objects / (requests / R).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API_KEY = "sk_test_bench_" + "7" * 24
SINCE = datetime(2025, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 1, 1, tzinfo=UTC)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).parent / "results"


def build_index(charges: int) -> list[dict[str, Any]]:
    """``charges`` realistic charge objects, created evenly across the year, oldest first."""
    from thred_bridge.simulators.stripe_world import StripeWorld, ticking_clock

    step = max(1, int((UNTIL - SINCE).total_seconds()) // max(charges, 1))
    world = StripeWorld(seed=11, clock=ticking_clock(int(SINCE.timestamp()), step))
    ids = [world.add_charge(500 + n % 9_000, ("eur", "usd", "jpy")[n % 3])["id"] for n in range(charges)]
    index = []
    for charge_id in ids:
        found = world.get(charge_id)
        assert found is not None
        index.append(found)
    index.sort(key=lambda c: (c["created"], c["id"]))
    return index


def list_app(index: list[dict[str, Any]]) -> Starlette:
    created = [c["created"] for c in index]
    position = {c["id"]: n for n, c in enumerate(index)}
    counts = {"requests": 0}

    async def listing(request: Request) -> JSONResponse:
        counts["requests"] += 1
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            error = {"type": "invalid_request_error", "message": "Invalid API Key provided"}
            return JSONResponse({"error": error}, status_code=401)
        kind = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        q = request.query_params
        limit = int(q.get("limit", "10"))
        if not 1 <= limit <= 100:
            return JSONResponse({"error": {"type": "invalid_request_error", "message": "limit"}}, status_code=400)
        if kind != "charges":
            return JSONResponse({"object": "list", "data": [], "has_more": False, "url": f"/v1/{kind}"})
        lo = bisect.bisect_left(created, int(q.get("created[gte]", "0")))
        hi = bisect.bisect_left(created, int(q.get("created[lt]", str(2**62))))
        after = q.get("starting_after")
        if after is not None:
            hi = min(hi, position[after])  # newest first: the next page is older than the cursor
        page = index[max(lo, hi - limit) : hi][::-1]
        return JSONResponse({"object": "list", "data": page, "has_more": hi - limit > lo, "url": f"/v1/{kind}"})

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse(counts)

    routes = [Route(f"/v1/{k}", listing) for k in ("charges", "refunds", "disputes", "payouts")]
    return Starlette(routes=[*routes, Route("/_bench/stats", stats)])


def serve(charges: int, port: int) -> None:
    import uvicorn

    started = time.perf_counter()
    index = build_index(charges)
    print(json.dumps({"ready": True, "build_s": round(time.perf_counter() - started, 1)}), flush=True)
    uvicorn.run(list_app(index), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _database(db: str, tmp: Path) -> tuple[str, str | None]:
    if db == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}", None
    name = f"thred_bench_backfill_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charges", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.charges, args.serve)
        return 0
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--charges", str(args.charges)], stdout=subprocess.PIPE
    )
    dropped: str | None = None
    try:
        assert server.stdout is not None
        built = json.loads(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            url, dropped = _database(args.db, tmp)
            env = {
                **os.environ, "BRIDGE_DATABASE_URL": url, "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
                "BRIDGE_STRIPE_API_BASE": f"http://127.0.0.1:{port}", "BRIDGE_LOG_LEVEL": "warning",
                "THRED_API_URL": "http://127.0.0.1:9", "THRED_PARTNER_ID": "bench", "THRED_API_KEY": "bench",
            }  # fmt: skip
            cli = [sys.executable, "-m", "thred_bridge"]
            subprocess.run([*cli, "migrate"], env=env, cwd=tmp, check=True, capture_output=True)
            added = subprocess.run(
                [*cli, "connections", "add", "stripe", "--business-id", "bench", "--api-key", API_KEY,
                 "--webhook-secret", "whsec_bench", "--json"],
                env=env, cwd=tmp, check=True, capture_output=True, text=True,
            )  # fmt: skip
            connection = json.loads(added.stdout)["id"]
            span = ["--since", SINCE.date().isoformat(), "--until", UNTIL.date().isoformat()]
            limits = ["--rate", str(args.rate), "--parallel", str(args.parallel)]
            command = [*cli, "backfill", connection, *span, *limits, "--json"]
            started = time.perf_counter()
            proc = subprocess.Popen(command, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            samples: list[int] = []
            while proc.poll() is None:
                samples.append(_rss_kib(proc.pid))
                time.sleep(0.5)
            out, err = proc.communicate()
            elapsed = time.perf_counter() - started
            if proc.returncode != 0:
                sys.stderr.write(err.decode())
                return 1
            summary = json.loads(out)
    finally:
        server.terminate()
        server.wait(timeout=10)
        if dropped:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')
    seen, requests = summary["seen"], summary["requests"]
    rate = seen / elapsed
    bound = seen / (requests / args.rate)
    nonzero = [s for s in samples if s]
    third = max(len(nonzero) // 3, 1)
    result = {
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"charges": args.charges, "rate": args.rate, "parallel": args.parallel, "db": args.db},
        "server_build_s": built["build_s"],
        "backfill": summary,
        "wall_s": round(elapsed, 2),
        "objects_per_s": round(rate, 1),
        "bound_objects_per_s": round(bound, 1),
        "share_of_bound": round(rate / bound, 3),
        "peak_rss_mib": round(max(nonzero or [0]) / 1024, 1),
        "rss_mib_first_third": round(max(nonzero[:third] or [0]) / 1024, 1),
        "rss_mib_last_third": round(max(nonzero[-third:] or [0]) / 1024, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"backfill-{args.db}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "backfill")}, indent=2))
    print(
        f"| {args.db} | {args.charges:,} | {args.rate:g}/s | {elapsed:.1f} s | {rate:,.0f}/s | {bound:,.0f}/s "
        f"| {rate / bound:.0%} | {result['peak_rss_mib']} MiB ({result['rss_mib_first_third']} → "
        f"{result['rss_mib_last_third']}) |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
