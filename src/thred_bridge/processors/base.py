"""What a processor plugs into the bridge: verify a delivery, and turn a stored event into movements."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from thred_bridge.domain.movements import Movement
from thred_bridge.domain.queue import ClaimedEvent, Connection, Notice


class Processor(Protocol):
    """One payment processor. ``verify`` is pure; ``movements`` does the API fetches."""

    @property
    def name(self) -> str: ...

    @property
    def media_types(self) -> frozenset[str]:
        """The content types its webhooks are sent with; a delivery declaring another is refused (415)."""
        ...

    def verify(
        self, body: bytes, headers: Mapping[str, str], connection: Connection, now: datetime
    ) -> Sequence[Notice]:
        """Check the delivery's signature on the raw bytes and parse it; raise DeliveryError to refuse."""
        ...

    async def movements(self, event: ClaimedEvent, connection: Connection) -> Sequence[Movement] | MovementStream:
        """Fetch what the event does not carry and translate it. Empty = nothing to book. Movements too many
        to hold at once (a settlement report of 50,000 rows) come as a :class:`MovementStream`."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MovementStream:
    """Movements read a chunk at a time from something the processor fetched (a downloaded file).

    ``chunks`` blocks (file reads, parsing), so the worker iterates it in a thread, once; a chunk holds
    whatever ``records_for`` needs together (a dispute reinstatement and its charge), and the records of
    different chunks may repeat (a shared customer), which the outbox stores once. ``close`` frees what
    the chunks are read from; the worker calls it whatever happens."""

    chunks: Iterator[Sequence[Movement]]
    close: Callable[[], None]


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The 200 answer's body for a stored delivery, when a processor prescribes one."""

    body: bytes
    media_type: str = "text/plain"


@runtime_checkable
class Acknowledges(Protocol):
    """Optional, beside :class:`Processor`: a processor whose protocol fixes the success body (Adyen's
    ``[accepted]``). Without it the web layer answers ``{"received": n, "stored": m}``."""

    def acknowledge(self, received: int, stored: int) -> Acknowledgement: ...


@runtime_checkable
class Notes(Protocol):
    """Optional, beside :class:`Processor`: what ``status`` should say about a connection beyond its counts
    (Mollie: payouts are off without an organization token)."""

    def notes(self, connection: Connection) -> Sequence[str]: ...
