"""Scheduled polls: processors that must be asked (Mollie's settlements send no classic webhook) list what
changed, and what they find goes into the inbox as notices, the same path as webhooks.

One :meth:`Polling.tick` asks every active connection whose processor :class:`Polls`. Several workers
may tick at the same time, in one process or many: the notices' event ids are stable (a settlement and
its status), so the inbox stores each once and the others are no-ops. A processor that fails (an outage,
a refused token) is logged and asked again at the next tick; the other connections go on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import structlog

from thred_bridge.domain.queue import Connection, Notice
from thred_bridge.service.ports import Clock, Store, Wakeup

log = structlog.get_logger("thred_bridge.polling")


@runtime_checkable
class Polls(Protocol):
    """Optional, beside a processor: what it finds when asked on a schedule (Mollie: settlements paid out)."""

    async def poll(self, connection: Connection, now: datetime) -> Sequence[Notice]: ...


class ConnectionList(Protocol):
    async def all(self, *, include_removed: bool = False) -> list[Connection]: ...


class Polling:
    """Asks every polling processor about each of its active connections; queues what they find."""

    def __init__(
        self, store: Store, connections: ConnectionList, processors: Mapping[str, Any], clock: Clock, wake: Wakeup
    ) -> None:
        self._store = store
        self._connections = connections
        self._processors = processors
        self._clock = clock
        self._wake = wake

    @property
    def wanted(self) -> bool:
        """Whether any processor polls at all."""
        return any(isinstance(p, Polls) for p in self._processors.values())

    async def tick(self) -> int:
        """One round over the connections; the number of notices the inbox did not hold yet."""
        stored = 0
        for connection in await self._connections.all():
            processor = self._processors.get(connection.processor)
            if not isinstance(processor, Polls):
                continue
            try:
                notices = await processor.poll(connection, self._clock())
            except Exception as exc:  # an outage or a refused credential: try again next time
                log.warning("poll.failed", connection=connection.id, error=str(exc)[:300])
                continue
            if not notices:
                continue
            new = await self._store.add_event_batches([(connection.id, connection.processor, notices)], self._clock())
            stored += len(new)
            log.info("poll.found", connection=connection.id, found=len(notices), new=len(new))
        if stored:
            self._wake.set()
        return stored
