"""The outbox's unit: a :class:`Record` is one Thred create request — its kind, its external id, its body
in Thred's field names, and ``parents``: body fields that hold the Thred id of another record, named by
that record's (kind, external id). The outbox sends a record only once its parents are sent and fills
those fields with their Thred ids then, so records wait for their parents whatever order the processor's
events arrive in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson

from thred_bridge.domain import json_codec

Kind = Literal["customer", "invoice", "payment", "refund", "refund_payment", "payout"]
ORDER: tuple[Kind, ...] = ("customer", "invoice", "payment", "refund", "refund_payment", "payout")


AFTER = "~"
"""Prefix of a ``parents`` key that only orders: e.g. ``~payment``, a refund sent after its charge's payment."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A parent record, by kind and external id."""

    kind: Kind
    external_id: str


@dataclass(frozen=True, slots=True)
class Lookup:
    """A body field read from an existing Thred record at send time (``field`` is a dotted path)."""

    kind: Kind
    thred_id: str
    field: str


@dataclass(frozen=True, slots=True)
class Record:
    """One Thred create request, waiting for ``parents`` (body path → parent)."""

    kind: Kind
    external_id: str
    body: Mapping[str, Any]
    parents: Mapping[str, Ref] = field(default_factory=dict)
    idempotency_key: str | None = None
    parent_path: Ref | None = None  # the record whose id is part of the URL (a refund payment's refund)
    # delete: remove the record named by parents["id"]; adopt: stand for the existing Thred record body["id"]
    op: Literal["create", "delete", "adopt"] = "create"
    updatable: bool = False  # a newer body replaces a stored one and is sent again (payouts)
    lookups: Mapping[str, Lookup] = field(default_factory=dict)  # body path → a field of a Thred record
    # held: never sent as it is; a later plan of the same record that is not held replaces its body (its
    # parents stay) and sends it: a webhook's reading the settlement report corrects (movements ``held``)
    held: bool = False


def when(at: datetime) -> str:
    """Thred's timestamp text: ISO 8601 in UTC with a Z."""
    return at.isoformat().replace("+00:00", "Z")


def fill(body: Mapping[str, Any], resolved: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``body`` with each dotted path in ``resolved`` set to its Thred id.

    Paths are dotted keys with list indexes (``allocations.0.invoice_id``). A path starting with ``~`` is
    an ordering-only parent (:data:`AFTER`): the record waits for it, and its body is left alone.
    """
    out: Any = _deep_copy(body)
    for path, value in resolved.items():
        if path.startswith(AFTER):
            continue
        target = out
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    assert isinstance(out, dict)
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_copy(v) for v in value]
    return value


def record_json(record: Record) -> bytes:
    """``record`` as one line of JSON, newline included, for a plan spooled to disk; :func:`record_of` reads
    it. orjson writes the dataclasses itself: building dicts first cost 18 MB for a payout's 50,000 parents."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def record_of(line: bytes) -> Record:
    """The :class:`Record` that :func:`record_json` wrote."""
    data = json_codec.loads(line)  # a payout's line is megabytes
    parent_path = data["parent_path"]
    return Record(
        kind=data["kind"],
        external_id=data["external_id"],
        body=data["body"],
        parents={path: Ref(**ref) for path, ref in data["parents"].items()},
        idempotency_key=data["idempotency_key"],
        parent_path=Ref(**parent_path) if parent_path else None,
        op=data["op"],
        updatable=data["updatable"],
        lookups={path: Lookup(**spec) for path, spec in data["lookups"].items()},
    )
