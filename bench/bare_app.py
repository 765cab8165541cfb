"""The bare ceiling for the ingest benchmark: the least a webhook receiver can do, and nothing else.

``POST /webhooks/stripe/{connection_id}``: check the ``Stripe-Signature`` (HMAC-SHA256 over
``t.body``, constant-time compare, 300 s tolerance), read the event id and type, insert one row into
the same ``events`` table the bridge uses (its own migration made it), commit, answer 200. No group
commit, no ORM, no metrics, no logging.

- SQLite: stdlib ``sqlite3`` in WAL mode with ``synchronous=NORMAL``; one INSERT + commit per
  request, directly on the event loop (a WAL commit without fsync is microseconds; a thread hop costs more).
- Postgres: a fixed pool of psycopg ``AsyncConnection`` objects (psycopg_pool is not a project
  dependency; a queue of open connections is all a fixed-size pool is); ``INSERT … ON CONFLICT DO
  NOTHING`` + commit per request.

Served exactly as ``thred-bridge serve`` serves the bridge: one process, ``uvicorn.Server.serve()``
under ``thred_bridge.serving.run`` (so the same event loop, uvloop, and the same HTTP parser), no access log.

    python bench/bare_app.py --database-url sqlite:////tmp/x.db --port 8001 \\
        --connection-id conn_x --secret whsec_x
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson
import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from thred_bridge.serving import run

TOLERANCE_S = 300

COLUMNS = (
    "connection_id, processor, event_id, event_type, object_key, account, body,"
    " received_at, status, attempts, next_attempt_at"
)
SQLITE_INSERT = f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
PG_INSERT = (
    f"INSERT INTO events ({COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (connection_id, event_id) DO NOTHING"
)

Row = tuple[str, str, str, str, str, str | None, bytes, datetime | str, str, int, datetime | str]
Insert = Callable[[Row], Awaitable[int]]


def verify(body: bytes, header: str | None, secret: bytes, now: float) -> bool:
    """True if a ``v1`` signature in ``header`` matches ``body`` under ``secret`` and is fresh."""
    if not header:
        return False
    timestamp = -1
    sent: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            sent.append(value.encode())
    if timestamp < 0 or abs(now - timestamp) > TOLERANCE_S:
        return False
    expected = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest().encode()
    return any(hmac.compare_digest(expected, v) for v in sent)


def sqlite_inserter(path: str) -> Insert:
    """One INSERT + commit per call on one stdlib connection (WAL, synchronous=NORMAL)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")

    async def insert(row: Row) -> int:
        db.execute("BEGIN")
        cursor = db.execute(SQLITE_INSERT, row)
        db.execute("COMMIT")
        return cursor.rowcount

    return insert


async def postgres_inserter(url: str, size: int) -> Insert:
    """One INSERT … ON CONFLICT DO NOTHING + commit per call, on a fixed pool of ``size`` connections."""
    pool: asyncio.Queue[psycopg.AsyncConnection[tuple[object, ...]]] = asyncio.Queue()
    for _ in range(size):
        pool.put_nowait(await psycopg.AsyncConnection.connect(url))

    async def insert(row: Row) -> int:
        conn = await pool.get()
        try:
            cursor = await conn.execute(PG_INSERT, row)
            await conn.commit()
            return cursor.rowcount
        except BaseException:
            await conn.rollback()
            raise
        finally:
            pool.put_nowait(conn)

    return insert


def create_app(insert: Insert, connection_id: str, secret: str, *, sqlite: bool) -> Starlette:
    key = secret.encode()

    async def webhook(request: Request) -> Response:
        if request.path_params["connection_id"] != connection_id:
            return JSONResponse({"error": "unknown connection"}, status_code=404)
        body = await request.body()
        if not verify(body, request.headers.get("stripe-signature"), key, time.time()):
            return JSONResponse({"error": "bad signature"}, status_code=400)
        event = orjson.loads(body)
        obj = event["data"]["object"]
        now = datetime.now(UTC)
        stamp: datetime | str = now.replace(tzinfo=None).isoformat(sep=" ") if sqlite else now
        row: Row = (
            connection_id, "stripe", event["id"], event["type"], obj.get("id") or event["id"],
            event.get("account"), body, stamp, "pending", 0, stamp,
        )  # fmt: skip
        stored = await insert(row)
        return JSONResponse({"received": 1, "stored": stored})

    async def ready(_request: Request) -> Response:
        return JSONResponse({"status": "ready"})

    return Starlette(
        routes=[
            Route("/webhooks/stripe/{connection_id}", webhook, methods=["POST"]),
            Route("/readyz", ready, methods=["GET"]),
        ]
    )


async def serve(args: argparse.Namespace) -> None:
    url: str = args.database_url
    if url.startswith("sqlite:///"):
        insert = sqlite_inserter(url.removeprefix("sqlite:///"))
        sqlite = True
    else:
        insert = await postgres_inserter(url, args.pool_size)
        sqlite = False
    app = create_app(insert, args.connection_id, args.secret, sqlite=sqlite)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")
    await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", required=True, help="sqlite:////abs/path.db or postgresql://…")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connection-id", required=True)
    parser.add_argument("--secret", required=True, help="the whsec_… signing secret")
    parser.add_argument("--pool-size", type=int, default=10, help="Postgres connections (the bridge's pool_size)")
    run(serve(parser.parse_args()))  # the loop `thred-bridge serve` runs on (uvloop)


if __name__ == "__main__":
    main()
