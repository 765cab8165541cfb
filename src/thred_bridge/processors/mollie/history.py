"""Mollie history for the backfill and the settlement poll: list pages of payments and settlements → inbox
notices shaped exactly like classic webhook calls. Pure.

Mollie's lists are newest first, one page at a time, behind a ``from`` cursor, and cannot be filtered by
date (PROCESSORS.md §3.3, §6). So a range ``[since, until)`` is read by paging from the newest object:
objects created at or after ``until`` are skipped, and the paging stops at the first page whose last
object was created before ``since`` (:func:`select`). Time slices cannot be cut, since each slice would
page from the newest again: the Mollie source asks the backfill for one slice per kind.

Each object becomes a classic call about it (body ``id=tr_…`` / ``id=stl_…``, type ``payment.ping`` /
``settlement.ping``, object key the id), so the worker fetches its current state and books it through
the very path a webhook takes: a payment with its refunds and chargebacks embedded, a settlement with
every page of what it settled. Only what can book something is offered: payments ``paid`` or
``authorized`` (captured ones are ``paid``), settlements past ``open``.

Event ids are ``bf_<id>.<state>``: the state is the settlement's status, or for a payment a short digest
of what its list entry shows moving money (status, amounts refunded, charged back, captured). So a page
read twice, a resumed backfill, or the poll and a backfill offering the same settlement in the same state
store nothing twice, while a payment refunded since an earlier backfill is offered again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from thred_bridge.domain.queue import Notice
from thred_bridge.errors import TranslationError
from thred_bridge.processors.mollie.fields import is_mollie_id, time_of

HISTORY_KINDS: tuple[str, ...] = ("payments", "settlements")
"""What a Mollie backfill lists, in the order its slices are queued."""

LISTED_PREFIX = "bf_"
BOOKABLE_PAYMENTS = frozenset({"paid", "authorized"})
"""Payment statuses that may book something (refunds and chargebacks leave a payment ``paid``)."""
SETTLEMENT_SKIPPED = frozenset({"open"})
"""The settlement still collecting (Mollie's ``open``/``next``) is not a payout yet."""
_MONEY_FIELDS = ("status", "amountRefunded", "amountChargedBack", "amountCaptured", "settlementAmount")


def created_of(obj: Mapping[str, Any], what: str) -> datetime:
    """When a listed object was created (``createdAt``); TranslationError if it does not say."""
    return time_of(obj.get("createdAt"), f"{what} {obj.get('id')!r}")


def state_of(kind: str, obj: Mapping[str, Any]) -> str:
    """The part of the event id that changes when the object moves money (module docstring)."""
    if kind == "settlements":
        status = obj.get("status")
        return status if isinstance(status, str) and status.replace("-", "").isalnum() else "unknown"
    shown = orjson.dumps([obj.get(name) for name in _MONEY_FIELDS], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(shown).hexdigest()[:12]


def notice(kind: str, obj: Mapping[str, Any]) -> Notice | None:
    """The classic call a listed payment or settlement is offered as; None when it can book nothing."""
    object_id = obj.get("id")
    prefix, resource = ("tr", "payment") if kind == "payments" else ("stl", "settlement")
    if kind not in HISTORY_KINDS:
        raise ValueError(f"Mollie history has no kind {kind!r}; it lists {', '.join(HISTORY_KINDS)}")
    if not is_mollie_id(object_id, prefix):
        raise TranslationError(f"Mollie listed a {resource} without a well-formed id: {object_id!r}"[:200])
    status = obj.get("status")
    if kind == "payments" and status not in BOOKABLE_PAYMENTS:
        return None
    if kind == "settlements" and (not isinstance(status, str) or status in SETTLEMENT_SKIPPED):
        return None
    return Notice(
        event_id=f"{LISTED_PREFIX}{object_id}.{state_of(kind, obj)}",
        event_type=f"{resource}.ping",
        object_key=object_id,
        body=f"id={object_id}".encode("ascii"),
        account=None,
        handled=True,
    )


def select(
    kind: str, objects: Sequence[Mapping[str, Any]], since: datetime, until: datetime
) -> tuple[list[Notice], bool]:
    """The notices of one list page's objects created in ``[since, until)``, and whether the page reached
    past ``since`` (its last object is older: the newest-first paging can stop)."""
    what = "Mollie payment" if kind == "payments" else "Mollie settlement"
    notices = []
    for obj in objects:
        if since <= created_of(obj, what) < until:
            made = notice(kind, obj)
            if made is not None:
                notices.append(made)
    past = bool(objects) and created_of(objects[-1], what) < since
    return notices, past
