"""The composition root: settings in, a wired bridge out. Nothing is built at import time.

Only this module (and the CLI) reads settings. With THRED_API_URL unset it starts the Thred sandbox
beside the bridge, on loopback, and the bridge talks to it over HTTP exactly as to Thred.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from thred_bridge.crypto import Vault, local_key, previous_keys
from thred_bridge.domain.queue import Connection
from thred_bridge.errors import ConfigError
from thred_bridge.observe import Metrics
from thred_bridge.processors.base import Notes, Processor
from thred_bridge.processors.registry import registry
from thred_bridge.sandbox import create_app as create_sandbox
from thred_bridge.service.connections import Connections
from thred_bridge.service.dispatch import Dispatching
from thred_bridge.service.ingest import Inbox
from thred_bridge.service.liveness import Presence
from thred_bridge.service.polling import Polling
from thred_bridge.service.process import Processing
from thred_bridge.service.worker import Scheduled, Signal, Worker
from thred_bridge.serving import serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.store import schema
from thred_bridge.store.presence import presence_for
from thred_bridge.store.sql import SqlStore
from thred_bridge.store.tx_base import EVENTS_CHANNEL, RECORDS_CHANNEL
from thred_bridge.thred.client import ThredClient

SANDBOX_PARTNER = ("sandbox-partner", "sandbox-api-key")
SANDBOX_FILE = "thred-sandbox.db"


def utc_now() -> datetime:
    return datetime.now(UTC)


def data_dir(settings: Settings) -> Path:
    """Where local files live: beside the SQLite database, else the working directory."""
    path = schema.sqlite_path(settings.database_url)
    return path.parent if path is not None else Path.cwd()


def vault_for(settings: Settings) -> Vault:
    previous = previous_keys(
        None if settings.previous_secret_keys is None else settings.previous_secret_keys.get_secret_value()
    )
    if settings.secret_key is not None:
        return Vault(settings.secret_key.get_secret_value(), previous)
    if settings.env == "production":
        raise ConfigError("BRIDGE_SECRET_KEY is required when BRIDGE_ENV=production")
    return Vault(local_key(data_dir(settings)), previous)


def prepare_database(settings: Settings) -> None:
    """A new SQLite database migrates itself on first run; anything else must be current already."""
    url = settings.database_url
    if schema.dialect_of(url) == "sqlite" and schema.current_revision(url) is None:
        schema.migrate(url)
    schema.require_current(url)


@dataclass
class Bridge:
    """Everything a command needs, built once."""

    settings: Settings
    store: SqlStore
    connections: Connections
    inbox: Inbox
    processors: dict[str, Processor]
    thred: ThredClient | None  # None for commands that only touch the database
    metrics: Metrics
    presence: Presence
    thred_url: str
    events_ready: Signal
    records_ready: Signal

    def worker(
        self, *, concurrency: int | None = None, dispatch_concurrency: int | None = None, poll: float = 0.5
    ) -> Worker:
        """A worker under this process's presence: its loops are built for each registration (owner id and
        generation), so a process declared dead starts again under a new one. ``concurrency``: events processed
        at once; ``dispatch_concurrency``: records sent at once (default: the settings')."""
        thred = self.thred
        if thred is None:
            raise ConfigError("this bridge was opened without Thred")
        lease = timedelta(seconds=self.settings.lease_seconds)
        presence = self.presence

        def make() -> tuple[Processing, Dispatching]:
            owner, generation = presence.id, presence.generation

            async def fence() -> None:
                await presence.fence(generation)

            processing = Processing(
                self.store, self.connections, self.processors, utc_now,
                owner=owner, max_attempts=self.settings.max_attempts, lease=lease,
                on_fetch=self.metrics.processor_answered,
            )  # fmt: skip
            dispatching = Dispatching(
                self.store,
                thred,
                utc_now,
                owner=owner,
                max_attempts=self.settings.max_attempts,
                lease=lease,
                on_record=lambda outcome: self.metrics.counted("records", self.metrics.dispatched, outcome),
                on_batch=self.metrics.dispatch_batch.observe,
                wake=self.records_ready.set,
                fence=fence,
            )
            return processing, dispatching

        # Mollie's settlements send no classic webhook: each worker lists them on a schedule (0 = off).
        polling = Polling(self.store, self.connections, self.processors, utc_now, self.events_ready)
        every = self.settings.mollie_settlement_poll_seconds if polling.wanted else 0.0
        return Worker(
            make, concurrency=concurrency or self.settings.worker_concurrency, poll=poll,
            dispatch_concurrency=dispatch_concurrency or self.settings.dispatch_concurrency,
            events_ready=self.events_ready, records_ready=self.records_ready,
            on_processed=lambda outcome: self.metrics.counted("events", self.metrics.processed, outcome),
            scheduled=[Scheduled("settlement-poll", every, polling.tick)],
            presence=presence, grace=self.settings.shutdown_seconds,
        )  # fmt: skip


def _notes_of(processors: dict[str, Processor]) -> Callable[[Connection], Sequence[str]]:
    """What ``status`` says about a connection, from its processor when that has something to say."""

    def notes(connection: Connection) -> Sequence[str]:
        processor = processors.get(connection.processor)
        return processor.notes(connection) if isinstance(processor, Notes) else ()

    return notes


@contextlib.asynccontextmanager
async def embedded_thred(settings: Settings) -> AsyncIterator[str]:
    """The Thred sandbox on loopback, its books in a SQLite file beside the bridge's database."""
    app = create_sandbox(path=str(data_dir(settings) / SANDBOX_FILE), partners=dict([SANDBOX_PARTNER]))
    async with serve_in_background(app) as url:
        yield url


@contextlib.asynccontextmanager
async def open_bridge(settings: Settings, *, with_thred: bool = True, role: str = "worker") -> AsyncIterator[Bridge]:
    """Build the bridge; with THRED_API_URL unset, run the sandbox beside it for the block's lifetime.

    ``with_thred=False`` builds only what touches the database (connections, status, replay). ``role`` is how
    the process registers once a worker (or ``serve``) attaches to its presence.
    """
    prepare_database(settings)
    vault = vault_for(settings)
    async with contextlib.AsyncExitStack() as stack:
        thred: ThredClient | None = None
        if not with_thred:
            thred_url = settings.thred_api_url or "embedded sandbox"
        elif settings.thred_api_url is None:
            thred_url = await stack.enter_async_context(embedded_thred(settings))
            partner_id, api_key = SANDBOX_PARTNER
        else:
            thred_url = settings.thred_api_url
            if not settings.thred_partner_id or settings.thred_api_key is None:
                raise ConfigError("THRED_API_URL is set: THRED_PARTNER_ID and THRED_API_KEY are required too")
            partner_id, api_key = settings.thred_partner_id, settings.thred_api_key.get_secret_value()
        metrics = Metrics()
        if with_thred:
            thred = ThredClient(
                thred_url,
                partner_id,
                api_key,
                timeout=settings.thred_timeout,
                observe=metrics.thred_answered,
                max_connections=settings.dispatch_concurrency + settings.worker_concurrency,
            )
            stack.push_async_callback(thred.aclose)
            limit = thred.limit
            metrics.thred_call_limit.set_function(lambda: limit.limit)
        # A transaction idle for half the takeover time belongs to a frozen process: Postgres ends it.
        store = SqlStore(
            schema.async_engine(
                settings.database_url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                idle_in_transaction=settings.takeover_seconds / 2,
            )
        )
        stack.push_async_callback(store.aclose)
        processors = registry(
            stripe_api_base=settings.stripe_api_base,
            adyen_report_hosts=settings.adyen_report_hosts,
            mollie_api_base=settings.mollie_api_base,
        )
        for processor in processors.values():
            stack.push_async_callback(processor.aclose)
        events_ready = Signal()
        records_ready = Signal()
        inbox = Inbox(store, utc_now, events_ready)
        stack.push_async_callback(inbox.aclose)
        presence = Presence(
            store,
            presence_for(store, settings.database_url),
            utc_now,
            role=role,
            heartbeat=settings.heartbeat_seconds,
            takeover=settings.takeover_seconds,
            lease=timedelta(seconds=settings.lease_seconds),
            wake={EVENTS_CHANNEL: events_ready, RECORDS_CHANNEL: records_ready},
            on_taken_over=metrics.taken_over.inc,
        )
        yield Bridge(
            settings=settings,
            store=store,
            connections=Connections(store, vault, utc_now, notes=_notes_of(processors)),
            inbox=inbox,
            processors=processors,
            thred=thred,
            metrics=metrics,
            presence=presence,
            thred_url=thred_url,
            events_ready=events_ready,
            records_ready=records_ready,
        )
