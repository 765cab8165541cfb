"""``/metrics`` for every process: the counters as this process counted them, and the gauges of the shared state
(queues, failures, processes alive) read from the database at each scrape, so any one process tells the whole
bridge's backlog. ``thred-bridge worker`` serves it on BRIDGE_METRICS_PORT; ``serve`` beside its webhooks."""

from __future__ import annotations

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from thred_bridge.bootstrap import Bridge, utc_now
from thred_bridge.errors import describe

log = structlog.get_logger("thred_bridge.metrics")


async def refresh_gauges(bridge: Bridge) -> None:
    """Set the gauges from the database; a connection removed since the last scrape drops out."""
    m = bridge.metrics
    now = utc_now()
    statuses = [await bridge.connections.status(c) for c in await bridge.connections.all()]
    async with bridge.store.transaction() as tx:
        alive = await tx.process_counts()
    for gauge in (m.events_waiting, m.records_waiting, m.oldest_waiting, m.events_failed, m.records_failed):
        gauge.clear()
    for s in statuses:
        labels = (s.connection_id, s.processor)
        m.events_waiting.labels(*labels).set(s.waiting)
        m.records_waiting.labels(*labels).set(s.records_waiting)
        age = (now - s.oldest_waiting_at).total_seconds() if s.oldest_waiting_at is not None else 0.0
        m.oldest_waiting.labels(*labels).set(max(age, 0.0))
        m.events_failed.labels(*labels).set(s.failed)
        m.records_failed.labels(*labels).set(s.records_failed)
    m.processes_alive.clear()
    for role, n in alive.items():
        m.processes_alive.labels(role).set(n)


def metrics_view(bridge: Bridge) -> Route:
    async def view(_request: Request) -> Response:
        try:
            await refresh_gauges(bridge)
        except Exception as exc:  # the database is away: the counters still tell what this process did
            log.warning("metrics.gauges_unavailable", error=describe(exc))
        return Response(generate_latest(bridge.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", view, methods=["GET"])


def create_metrics_app(bridge: Bridge) -> Starlette:
    """A worker's own small server: ``/metrics`` and ``/healthz``."""

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "process": bridge.presence.id})

    return Starlette(routes=[metrics_view(bridge), Route("/healthz", healthz, methods=["GET"])])
