"""Logging (structlog) and Prometheus metrics. Secrets never reach either: nothing here logs bodies."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Key-value logs to stderr: JSON when not on a terminal (containers), readable otherwise."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


@dataclass
class Metrics:
    """The bridge's counters, on a registry of its own (one per app, so tests do not collide)."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        self.deliveries = Counter(
            "bridge_webhook_deliveries",
            "Webhook deliveries by processor and outcome",
            ["processor", "outcome"],
            registry=self.registry,
        )
        self.events_stored = Counter(
            "bridge_events_stored", "Events newly stored in the inbox", ["processor"], registry=self.registry
        )
        self.ingest_seconds = Histogram(
            "bridge_webhook_seconds",
            "Time from request to acknowledgement",
            ["processor"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.processed = Counter(
            "bridge_events_processed", "Events processed by outcome", ["outcome"], registry=self.registry
        )
        self.dispatched = Counter(
            "bridge_records_dispatched",
            "Thred records dispatched by outcome",
            ["outcome"],
            registry=self.registry,
        )
