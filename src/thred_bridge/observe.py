"""Logging (structlog) and Prometheus metrics. Secrets never reach either: nothing here logs bodies."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
    """The bridge's metrics, on a registry of its own (one per app, so tests do not collide).

    Counters and histograms are counted where things happen; the gauges (queues, failures, processes) are read
    from the database when ``/metrics`` is scraped, so every process reports the same shared state."""

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
        self.dispatch_batch = Histogram(
            "bridge_dispatch_batch_records",
            "Records marked sent per transaction (group commit: those that finished together)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.thred_call_limit = Gauge(
            "bridge_thred_call_limit",
            "Calls to Thred this process lets be in flight at once: adapts to Thred's 429s and 503s",
            registry=self.registry,
        )
        self.retries = Counter(
            "bridge_retries", "Events and records put back to be tried again later", ["stage"], registry=self.registry
        )
        self.thred_requests = Counter(
            "bridge_thred_requests",
            "Requests to Thred by method and answer (HTTP status, or timeout / unreachable)",
            ["method", "status"],
            registry=self.registry,
        )
        self.thred_seconds = Histogram(
            "bridge_thred_request_seconds",
            "Time Thred took to answer",
            ["method"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self.processor_calls = Counter(
            "bridge_processor_calls",
            "Reads from a processor's API to turn an event into records, by outcome (ok, transient, refused)",
            ["processor", "outcome"],
            registry=self.registry,
        )
        self.processor_seconds = Histogram(
            "bridge_processor_call_seconds",
            "Time a processor's API took to give what an event needs",
            ["processor"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "bridge_event_loop_lag_seconds",
            "How late the event loop ran a timer: what a webhook answered by this process waited on top",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.taken_over = Counter(
            "bridge_claims_taken_over",
            "Claimed events and records taken back from processes found dead",
            registry=self.registry,
        )
        queue = ["connection", "processor"]
        self.events_waiting = Gauge(
            "bridge_queue_events_waiting", "Events stored and not yet done", queue, registry=self.registry
        )
        self.records_waiting = Gauge(
            "bridge_queue_records_waiting", "Records planned and not yet in Thred", queue, registry=self.registry
        )
        self.oldest_waiting = Gauge(
            "bridge_queue_oldest_waiting_seconds",
            "Age of the oldest event still waiting (0 when none waits)",
            queue,
            registry=self.registry,
        )
        self.events_failed = Gauge(
            "bridge_events_failed", "Events that failed for good (see `status`, then `replay`)", queue,
            registry=self.registry,
        )  # fmt: skip
        self.records_failed = Gauge(
            "bridge_records_failed", "Records Thred refused for good (see `status`, then `replay`)", queue,
            registry=self.registry,
        )  # fmt: skip
        self.processes_alive = Gauge(
            "bridge_processes_alive", "Registered serve and worker processes not known to have ended", ["role"],
            registry=self.registry,
        )  # fmt: skip

    def counted(self, stage: str, counter: Counter, outcome: str) -> None:
        """One event or record handled: counted by outcome, and as a retry when it is to be tried again."""
        counter.labels(outcome).inc()
        if outcome == "retry":
            self.retries.labels(stage).inc()

    def thred_answered(self, method: str, status: str, seconds: float) -> None:
        self.thred_requests.labels(method, status).inc()
        self.thred_seconds.labels(method).observe(seconds)

    def processor_answered(self, processor: str, outcome: str, seconds: float) -> None:
        self.processor_calls.labels(processor, outcome).inc()
        self.processor_seconds.labels(processor).observe(seconds)
