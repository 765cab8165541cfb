"""A downloaded settlement details report → movements, a chunk at a time, without holding its rows.

Two passes over the spooled file. The first sums each batch of the connection's merchant account
(:class:`~thred_bridge.processors.adyen.batch.BatchBuilder`: one line per payment, refund, dispute stage,
fee or adjustment, no rows); the second books each payment, refund and dispute stage at its first row
(``translate_report.line_movements``), ``chunk`` movements at a time, and each batch's payout comes last.
Memory is the batches' lines and one chunk whatever the file's size: holding a 50,000-row report's rows,
then its movements, then its records cost ~200 MB.

Blocking (file reads and parsing, ~100 µs a row): the worker iterates it in a thread.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from typing import IO

import structlog

from thred_bridge.domain.movements import Movement
from thred_bridge.errors import TranslationError
from thred_bridge.processors.adyen.batch import BatchBuilder, BatchLine, BatchSummary
from thred_bridge.processors.adyen.report import ReportRow, read_report
from thred_bridge.processors.adyen.translate_report import batch_payout, line_movements

log = structlog.get_logger("thred_bridge.adyen")

CHUNK_MOVEMENTS = 1_000

BatchKey = tuple[str, int | None]


def report_chunks(
    spool: IO[bytes],
    *,
    file: str,
    merchant: str | None,
    fallback_at: datetime,
    chunk: int = CHUNK_MOVEMENTS,
) -> Iterator[list[Movement]]:
    """The movements that book every batch of ``merchant`` in the report (all batches when None), each
    batch's payout after its payments. ``file`` names the report in errors. Raises TranslationError for a
    report that cannot be read, whose batches do not add up as one batch each, or that holds no batch of
    ``merchant``. (A report holds one batch as a rule; each further batch costs one more pass.)"""
    summaries = _summaries(spool, file, merchant)
    summaries.reverse()
    while summaries:
        yield from _booked(spool, file, summaries[-1], fallback_at, chunk)
        # The batch leaves ``summaries`` as its payout is made, so while the payout's records are planned
        # this generator holds neither (the planner drops the payout once it has its records).
        yield [batch_payout(summaries.pop(), fallback_at=fallback_at)]


def _booked(
    spool: IO[bytes], file: str, summary: BatchSummary, fallback_at: datetime, chunk: int
) -> Iterator[list[Movement]]:
    """The batch's payments, refunds and disputes, each at its first row, ``chunk`` movements at a time."""
    firsts: dict[int, BatchLine] = {}
    for line in (*summary.payments.values(), *summary.refunds.values(), *summary.disputes):
        firsts[line.lines[0]] = line
    moved: list[Movement] = []
    for row in _rows(spool, file):
        if row.line not in firsts:
            continue
        moved += line_movements(firsts.pop(row.line), row, summary, fallback_at)
        if len(moved) >= chunk:
            yield moved
            moved = []
    if moved:
        yield moved


def _summaries(spool: IO[bytes], file: str, merchant: str | None) -> list[BatchSummary]:
    builders: dict[BatchKey, BatchBuilder] = {}
    skipped: set[str] = set()
    for row in _rows(spool, file):
        if row.net is None:
            continue
        if merchant and row.merchant_account != merchant:
            if row.merchant_account not in skipped:
                skipped.add(row.merchant_account)
                log.warning("adyen.report_rows_skipped", file=file, merchant_account=row.merchant_account)
            continue
        key = (row.merchant_account, row.batch_number)
        builder = builders.get(key)
        if builder is None:
            builder = builders[key] = BatchBuilder(merchant_account=merchant)
        builder.add(row)
    if not builders:
        raise TranslationError(f"the settlement report {file} has no batch of merchant account {merchant!r}")
    return [builder.summary() for builder in builders.values()]


def _rows(spool: IO[bytes], file: str) -> Iterator[ReportRow]:
    """The report's rows from the start of the file. The text view is detached afterwards: closing it (as
    garbage collection would) would close the spool before the next pass."""
    spool.seek(0)
    text = io.TextIOWrapper(spool, encoding="utf-8-sig", newline="")
    try:
        yield from read_report(text)
    except UnicodeDecodeError as exc:
        raise TranslationError(f"the settlement report {file} is not UTF-8: {exc}") from exc
    finally:
        text.detach()
