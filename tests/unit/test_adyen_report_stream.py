"""A downloaded settlement report → movements a chunk at a time (``report_stream``): the same movements
as translating the whole file at once, each batch's payout after its payments, read from the spool in two
passes without holding its rows."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest

from thred_bridge.domain.movements import Charge, DisputeCredit, Movement, Payout
from thred_bridge.domain.records import records_for
from thred_bridge.errors import TranslationError
from thred_bridge.processors.adyen.batch import split_batches, summarise_batch
from thred_bridge.processors.adyen.report import read_report
from thred_bridge.processors.adyen.report_stream import report_chunks
from thred_bridge.processors.adyen.translate_report import report_movements

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "adyen"
AT = datetime(2024, 3, 6, tzinfo=UTC)


def _file(name: str) -> bytes:
    return (FIXTURES / f"settlement_detail_report_{name}.csv").read_bytes()


def _two_batches() -> bytes:
    """One file holding batch 2 (a donation) and batch 3 (a refund and a fee) of one merchant account."""
    refund = _file("smashpig_refund").split(b"\n", 1)[1]
    return _file("smashpig_donation").rstrip(b"\n") + b"\n" + refund


def _spool(content: bytes) -> IO[bytes]:
    spool = tempfile.SpooledTemporaryFile(max_size=1024)  # noqa: SIM115 - small: it rolls over to disk
    spool.write(content)
    spool.seek(0)
    return spool


def _whole(content: bytes, merchant: str | None) -> list[Movement]:
    """What translating the whole file at once books (``report_movements`` per batch)."""
    moved: list[Movement] = []
    for (account, _), rows in split_batches(read_report(content)).items():
        if merchant is None or account == merchant:
            summary = summarise_batch(rows, merchant_account=merchant)
            moved += report_movements(summary, {r.line: r for r in rows}, fallback_at=AT)
    return moved


def _streamed(content: bytes, merchant: str | None, chunk: int) -> list[Sequence[Movement]]:
    with _spool(content) as spool:
        chunks: list[Sequence[Movement]] = list(
            report_chunks(spool, file="f.csv", merchant=merchant, fallback_at=AT, chunk=chunk)
        )
        assert not spool.closed  # both passes leave the spool open for its owner
    return chunks


@pytest.mark.parametrize("chunk", [1, 2, 1000])
@pytest.mark.parametrize("name", ["batch_complete", "smashpig_refund", "reordered_new_layout"])
def test_streaming_books_what_the_whole_file_books(name: str, chunk: int) -> None:
    content = _file(name)
    merchant = next(read_report(content)).merchant_account
    chunks = _streamed(content, merchant, chunk)
    flat = [m for c in chunks for m in c]
    assert sorted(map(repr, flat)) == sorted(map(repr, _whole(content, merchant)))
    assert isinstance(flat[-1], Payout)
    assert chunks[-1] == [flat[-1]]  # the payout alone, last
    assert all(len(c) <= max(chunk, 2) for c in chunks)  # a reinstatement brings its charge: up to 2
    for c in chunks:  # records_for needs a reinstatement's charge beside it
        credits = [m for m in c if isinstance(m, DisputeCredit)]
        assert all(any(isinstance(m, Charge) and m.object_id == d.charge_id for m in c) for d in credits)
        records_for(c)


def test_each_batch_of_the_file_gets_its_payout_after_its_payments() -> None:
    content = _two_batches()
    chunks = _streamed(content, "WikimediaCOM", chunk=1000)
    kinds = [[type(m).__name__ for m in c] for c in chunks]
    assert kinds == [["Charge"], ["Payout"], ["Refund"], ["Payout"]]
    payouts = [m for c in chunks for m in c if isinstance(m, Payout)]
    assert [(p.object_id, p.amount.minor) for p in payouts] == [
        ("WikimediaCOM_batch_2", 76),
        ("WikimediaCOM_batch_3", 403),
    ]
    assert sorted(map(repr, (m for c in chunks for m in c))) == sorted(map(repr, _whole(content, "WikimediaCOM")))


def test_rows_of_another_merchant_account_are_skipped() -> None:
    content = _file("batch_complete") + _two_batches().split(b"\n", 1)[1]  # + WikimediaCOM's rows
    only = [m for c in _streamed(content, "TestMerchant", chunk=1000) for m in c]
    assert [m.object_id for m in only if isinstance(m, Payout)] == ["TestMerchant_batch_42"]
    every = [m for c in _streamed(content, None, chunk=1000) for m in c]
    assert len([m for m in every if isinstance(m, Payout)]) == 3


def test_a_report_without_the_merchants_batch_or_not_utf8_is_refused() -> None:
    with pytest.raises(TranslationError, match=r"f\.csv has no batch of merchant account 'Nobody'"):
        _streamed(_file("batch_complete"), "Nobody", chunk=10)
    latin1 = _file("batch_complete").replace(b"TestMerchant", "TéstMerchant".encode("latin-1"))
    with pytest.raises(TranslationError, match=r"f\.csv is not UTF-8"):
        _streamed(latin1, None, chunk=10)


def test_rows_that_stop_being_one_batch_are_refused_on_the_first_pass() -> None:
    mixed = _file("batch_complete").replace(b",EUR,1.25,", b",USD,1.25,")
    seen: list[Sequence[Movement]] = []

    def read(spool: IO[bytes]) -> None:
        seen.extend(report_chunks(spool, file="f.csv", merchant=None, fallback_at=AT))

    with _spool(mixed) as spool, pytest.raises(TranslationError, match="net currencies"):
        read(spool)
    assert seen == []  # nothing is booked from a report whose batch does not add up


def test_the_second_pass_reads_what_the_first_read() -> None:
    """The text view over the spool is detached after each pass (closing it would close the spool)."""
    spool = _spool(_file("batch_complete"))
    chunks = report_chunks(spool, file="f.csv", merchant=None, fallback_at=AT)
    assert next(chunks)  # first pass done, second started
    assert not spool.closed
    rest = list(chunks)
    assert isinstance(rest[-1][-1], Payout)
    spool.seek(0)
    assert spool.read(15) == b"Company Account"  # still open and readable
    spool.close()
