"""`thred-bridge backfill`: history into the inbox with a live progress bar, optionally synced before exit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from aiolimiter import AsyncLimiter
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from thred_bridge.bootstrap import open_bridge, utc_now
from thred_bridge.domain.queue import Connection, Notice
from thred_bridge.errors import ConfigError
from thred_bridge.service.backfill import Backfill, HistorySource
from thred_bridge.service.backfill import Progress as BackfillProgress
from thred_bridge.settings import Settings


async def run_backfill(
    settings: Settings,
    connection_id: str,
    since: datetime,
    until: datetime,
    *,
    rate: float,
    parallel: int,
    wait: bool,
    quiet: bool,
) -> dict[str, Any]:
    """Feed the inbox with the connection's history; with ``wait``, also sync it before returning."""
    console = Console(stderr=True, quiet=quiet)
    async with open_bridge(settings, with_thred=wait) as bridge:
        connection = await bridge.connections.get(connection_id)
        source = bridge.processors[connection.processor]
        if not hasattr(source, "history_page"):
            hint = ": give --batches FIRST-LAST" if isinstance(source, ReportHistory) else " yet"
            raise ConfigError(f"backfill by date is not available for {connection.processor} connections{hint}")
        history: HistorySource = source  # type: ignore[assignment]
        started = time.monotonic()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[seen]:>8} seen  {task.fields[stored]:>8} new  {task.fields[rate]:>7.1f}/s"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        ) as bar:
            task = bar.add_task(f"backfill {connection.id}", total=None, seen=0, stored=0, rate=0.0)

            def show(p: BackfillProgress) -> None:
                elapsed = max(time.monotonic() - started, 1e-6)
                bar.update(task, total=p.slices, completed=p.slices_done, seen=p.seen, stored=p.stored,
                           rate=p.seen / elapsed)  # fmt: skip

            backfill = Backfill(bridge.store, history, utc_now, AsyncLimiter(rate, 1), parallel=parallel,
                                on_change=show)  # fmt: skip
            worker_task = None
            stop = asyncio.Event()
            if wait:
                worker_task = asyncio.create_task(bridge.worker().run(stop))
            try:
                progress = await backfill.run(connection, since, until, parts=parallel * 2)
                synced = None
                if wait:
                    synced = await _wait_synced(bridge.connections, connection, console)
            finally:
                stop.set()
                if worker_task is not None:
                    await worker_task
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {
        "id": connection.id,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "seen": progress.seen,
        "stored": progress.stored,
        "by_kind": progress.by_kind,
        "requests": progress.requests,
        "rate_limit_waits": progress.waits,
        "seconds": round(elapsed, 2),
    }
    if synced is not None:
        result["synced"] = synced
    console.print(
        f"backfill: {progress.seen} objects seen, {progress.stored} new in the inbox, "
        f"{progress.requests} API requests in {elapsed:.1f} s"
    )
    return result


async def run_report_backfill(
    settings: Settings, connection_id: str, batches: range, base: str, *, wait: bool, quiet: bool
) -> dict[str, Any]:
    """Adyen: the REPORT_AVAILABLE item of each past batch into the inbox (a batch already there, live or
    from an earlier run, is not stored again); the worker downloads and books each report. With ``wait``,
    run the worker here until everything is synced."""
    console = Console(stderr=True, quiet=quiet)
    started = time.monotonic()
    async with open_bridge(settings, with_thred=wait) as bridge:
        connection = await bridge.connections.get(connection_id)
        source = bridge.processors[connection.processor]
        if not isinstance(source, ReportHistory):
            raise ConfigError(f"--batches is for Adyen connections; {connection.id} is {connection.processor}")
        notices = source.report_notices(connection, batches, base, utc_now())
        stored = await bridge.inbox.add(connection.id, connection.processor, notices)
        console.print(f"backfill: {len(notices)} settlement reports, {stored} new in the inbox")
        synced = None
        if wait:
            stop = asyncio.Event()
            worker_task = asyncio.create_task(bridge.worker().run(stop))
            try:
                synced = await _wait_synced(bridge.connections, connection, console)
            finally:
                stop.set()
                await worker_task
    result: dict[str, Any] = {
        "id": connection.id,
        "batches": [batches.start, batches.stop - 1],
        "seen": len(notices),
        "stored": stored,
        "seconds": round(time.monotonic() - started, 2),
    }
    if synced is not None:
        result["synced"] = synced
    return result


@runtime_checkable
class ReportHistory(Protocol):
    """A processor whose history is reports by batch number (Adyen), not lists by date."""

    def report_notices(
        self, connection: Connection, batches: Sequence[int], base: str, now: datetime
    ) -> list[Notice]: ...


async def _wait_synced(connections: Any, connection: Any, console: Console) -> dict[str, int]:
    while True:
        status = await connections.status(connection)
        if status.waiting == 0 and status.records_waiting == 0:
            console.print(f"synced: {status.synced} events, {status.failed} failed")
            return {"synced": status.synced, "failed": status.failed}
        await asyncio.sleep(0.25)
