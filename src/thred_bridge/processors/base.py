"""What a processor plugs into the bridge: verify a delivery, and turn a stored event into movements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from thred_bridge.domain.movements import Movement
from thred_bridge.domain.queue import ClaimedEvent, Connection, Notice


class Processor(Protocol):
    """One payment processor. ``verify`` is pure; ``movements`` does the API fetches."""

    @property
    def name(self) -> str: ...

    def verify(
        self, body: bytes, headers: Mapping[str, str], connection: Connection, now: datetime
    ) -> Sequence[Notice]:
        """Check the delivery's signature on the raw bytes and parse it; raise DeliveryError to refuse."""
        ...

    async def movements(self, event: ClaimedEvent, connection: Connection) -> Sequence[Movement]:
        """Fetch what the event does not carry and translate it. Empty = nothing to book."""
        ...

    async def aclose(self) -> None: ...
