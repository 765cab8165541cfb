"""HTTP: webhook ingest, health, readiness, metrics, and (with BRIDGE_ADMIN_TOKEN set) the API document.

The webhook handler reads the raw bytes (bounded), verifies them, stores the event and answers.
No processor API call and no Thred call happens in the request.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Mapping

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from thred_bridge.bootstrap import Bridge, utc_now
from thred_bridge.entrypoints.api_document import openapi_document
from thred_bridge.entrypoints.metrics import metrics_view
from thred_bridge.errors import (
    BodyTimeoutError,
    DeliveryError,
    MediaTypeError,
    PayloadTooLargeError,
    UnknownConnectionError,
)
from thred_bridge.processors.base import Acknowledges
from thred_bridge.store import schema

log = structlog.get_logger("thred_bridge.web")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes (before reading it all when the length is declared)
    and with 408 when it has not all arrived ``timeout`` seconds after the headers (a slow or stalled sender
    would otherwise hold a connection and its buffer for as long as it likes)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"body is over the {limit}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeoutError(f"the body was not received within {timeout:g} s ({size} bytes came)") from None
    return b"".join(chunks)


def check_media_type(headers: Mapping[str, str], accepted: frozenset[str], processor: str) -> None:
    """Refuse (415) a delivery that declares a content type its processor does not send; none declared is
    left to the signature check."""
    declared = headers.get("content-type")
    if declared is None:
        return
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type not in accepted:
        expected = " or ".join(sorted(accepted))
        raise MediaTypeError(f"content type {media_type[:60]!r} is not what {processor} sends ({expected})")


def _refuse(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def admin_authorized(headers: Mapping[str, str], token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def create_app(bridge: Bridge) -> Starlette:
    """The bridge's web app over an already-built :class:`Bridge`."""
    metrics = bridge.metrics
    limit, body_timeout = bridge.settings.max_body_bytes, bridge.settings.body_timeout_seconds

    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["processor"]
        connection_id = request.path_params["connection_id"]
        processor = bridge.processors.get(name)
        if processor is None:
            return _refuse(404, f"no processor {name!r}")
        outcome = "refused"
        try:
            check_media_type(request.headers, processor.media_types, name)
            body = await read_body(request, limit, body_timeout)
            connection = await bridge.connections.active(connection_id)
            if connection.processor != name:
                raise UnknownConnectionError(f"no active {name} connection {connection_id!r}")
            notices = processor.verify(body, request.headers, connection, utc_now())
        except UnknownConnectionError as exc:
            metrics.deliveries.labels(name, "unknown_connection").inc()
            return _refuse(404, exc.message)
        except DeliveryError as exc:
            metrics.deliveries.labels(name, "refused").inc()
            log.info("webhook.refused", processor=name, connection=connection_id, reason=exc.message)
            refused = _refuse(exc.status_code, exc.message)
            if exc.status_code == 401:
                refused.headers["WWW-Authenticate"] = 'Basic realm="thred-bridge"'
            return refused
        try:
            new = await bridge.inbox.add(connection.id, name, notices)
        except Exception:
            log.exception("webhook.store_failed", processor=name, connection=connection_id)
            metrics.deliveries.labels(name, "store_failed").inc()
            return _refuse(503, "the event could not be stored; retry later")
        outcome = "stored" if new else "duplicate"
        metrics.deliveries.labels(name, outcome).inc()
        metrics.events_stored.labels(name).inc(new)
        metrics.ingest_seconds.labels(name).observe(time.perf_counter() - started)
        if isinstance(processor, Acknowledges):  # a body the processor's protocol prescribes (Adyen)
            ack = processor.acknowledge(len(notices), new)
            return Response(ack.body, media_type=ack.media_type)
        return JSONResponse({"received": len(notices), "stored": new})

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        try:
            await bridge.store.ping()
            found = await bridge.store.schema_revision()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
        head = schema.head_revision()
        if found != head:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "schema": found,
                    "expected": head,
                    "fix": "run `thred-bridge migrate`",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ready", "schema": found})

    routes = [
        Route("/webhooks/{processor}/{connection_id}", webhook, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        metrics_view(bridge),
    ]
    admin = bridge.settings.admin_token
    if admin is not None and admin.get_secret_value().strip():  # admin routes only with a token (INTERFACE.md)
        token = admin.get_secret_value().strip()
        document = openapi_document(bridge.processors)

        async def api_document(request: Request) -> Response:
            if not admin_authorized(request.headers, token):
                refused = _refuse(401, "an admin bearer token is required")
                refused.headers["WWW-Authenticate"] = 'Bearer realm="thred-bridge"'
                return refused
            return JSONResponse(document)

        routes.append(Route("/api/openapi.json", api_document, methods=["GET"]))
    return Starlette(routes=routes)
