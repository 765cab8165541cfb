"""Records planned from a :class:`~thred_bridge.processors.base.MovementStream`, kept on disk.

A settlement report of 50,000 rows plans ~100,000 records (~85 MB as Python objects). They are planned a
chunk of movements at a time and spooled, one JSON line each, to a temporary file, which the store reads
back a part at a time: the plan's memory is one chunk, whatever its size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from thred_bridge.domain.record_types import Record, record_json, record_of
from thred_bridge.domain.records import records_for
from thred_bridge.processors.base import MovementStream

_IN_MEMORY_BYTES = 4 * 1024 * 1024


class PlannedRecords:
    """A plan spooled to a temporary file (in memory up to 4 MB). Iterate it to read the records back, in
    the order they were added; ``close`` deletes the file."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES)  # noqa: SIM115 - closed by close()
        self._count = 0

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self._file.write(record_json(record))
            self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Record]:
        self._file.seek(0)
        for line in self._file:
            yield record_of(line)

    def close(self) -> None:
        self._file.close()


def plan_stream(stream: MovementStream) -> PlannedRecords:
    """Every record the stream's movements need, planned chunk by chunk (``records_for``) into a spool.
    Blocking: run it in a thread. The stream is closed whatever happens; so is the spool if planning fails."""
    planned = PlannedRecords()
    try:
        for chunk in stream.chunks:
            records = records_for(chunk)
            del chunk  # the movements, before their records are written (a payout's are tens of MB)
            planned.extend(records)
            del records
    except BaseException:
        planned.close()
        raise
    finally:
        stream.close()
    return planned
