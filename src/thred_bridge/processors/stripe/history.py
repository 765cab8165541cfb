"""Stripe history for the backfill: one list page of charges, refunds, disputes or payouts created in a
time range → inbox notices shaped exactly like webhook deliveries.

Each object becomes a snapshot event (``object: "event"``, ``data.object`` the object) of a type the
worker already routes, so a backfilled object is booked through the same fetch-and-translate path as a
delivered one: a succeeded, captured charge is ``charge.succeeded`` (a failed or only authorised one
books nothing and is skipped), a refund ``refund.updated``, a dispute ``charge.dispute.updated``, a
payout ``payout.paid`` / ``payout.failed`` / ``payout.canceled`` by its status, else ``payout.updated``
(the payout's record is upserted as its status moves on). The event id is ``bf_<object id>``, so a rerun
or a page fetched twice stores nothing twice; the object key is the one a webhook of the object gets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, get_args

import orjson

from thred_bridge.domain.queue import Connection, HistoryPage, Notice
from thred_bridge.errors import TranslationError
from thred_bridge.processors.stripe import webhook
from thred_bridge.processors.stripe.api import ListedResource, StripeApi, Window

HISTORY_KINDS: tuple[ListedResource, ...] = get_args(ListedResource)
"""What the backfill lists, in the order its slices are queued: charges, refunds, disputes, payouts."""

_PAYOUT_EVENTS = {"paid": "payout.paid", "failed": "payout.failed", "canceled": "payout.canceled"}
BACKFILL_PREFIX = "bf_"


def window(since: datetime, until: datetime) -> Window:
    """``[since, until)`` in whole Unix seconds, exactly: an object created at integer second ``t`` is in it
    when ``ceil(since) <= t < ceil(until)``; adjacent ranges share their bound, so no object is in two."""
    return math.ceil(since.timestamp()), math.ceil(until.timestamp())


def event_type(kind: str, obj: Mapping[str, Any]) -> str | None:
    """The webhook type the object is offered as; None for a charge there is nothing to book for."""
    if kind == "charges":
        booked = obj.get("status") == "succeeded" and obj.get("captured") is True
        return "charge.succeeded" if booked else None
    if kind == "refunds":
        return "refund.updated"
    if kind == "disputes":
        return "charge.dispute.updated"
    if kind == "payouts":
        status = obj.get("status")
        return _PAYOUT_EVENTS.get(status, "payout.updated") if isinstance(status, str) else "payout.updated"
    raise ValueError(f"Stripe history has no kind {kind!r}; it lists {', '.join(HISTORY_KINDS)}")


def snapshot(event: str, obj: Mapping[str, Any], *, account: str | None, livemode: bool) -> bytes:
    """A snapshot event envelope around ``obj``, as Stripe would deliver it (without a signature)."""
    object_id, created = obj.get("id"), obj.get("created")
    if not isinstance(object_id, str) or not object_id:
        raise TranslationError(f"Stripe listed an object without an id: {dict(obj)!r}"[:200])
    if isinstance(created, bool) or not isinstance(created, int):
        raise TranslationError(f"Stripe listed {object_id} without a created timestamp")
    envelope: dict[str, Any] = {"id": f"{BACKFILL_PREFIX}{object_id}", "object": "event", "type": event}
    envelope["created"] = created
    envelope["data"] = {"object": obj}
    if account:
        envelope["account"] = account
    envelope["livemode"] = obj["livemode"] if isinstance(obj.get("livemode"), bool) else livemode
    return orjson.dumps(envelope)


def to_notices(kind: str, objects: Sequence[Mapping[str, Any]], *, account: str | None, livemode: bool) -> list[Notice]:
    """The page's objects as notices, as :meth:`StripeProcessor.verify` would make them from a delivery."""
    notices = []
    for obj in objects:
        event = event_type(kind, obj)
        if event is None:
            continue
        body = snapshot(event, obj, account=account, livemode=livemode)
        parsed = webhook.parse_event(body)
        notices.append(Notice(parsed.id, parsed.type, parsed.object_key, body, parsed.account, parsed.handled))
    return notices


async def history_page(
    api: StripeApi, connection: Connection, kind: str, since: datetime, until: datetime, cursor: str | None
) -> HistoryPage:
    """One page (up to 100, newest first) of ``kind`` created in ``[since, until)``, after ``cursor``."""
    resource = next((k for k in HISTORY_KINDS if k == kind), None)
    if resource is None:
        raise ValueError(f"Stripe history has no kind {kind!r}; it lists {', '.join(HISTORY_KINDS)}")
    objects, after = await api.list_page(
        resource, created=window(since, until), starting_after=cursor, account=connection.account
    )
    key = connection.credentials.get("api_key", "")
    live = key.startswith(("sk_live_", "rk_live_"))
    return HistoryPage(to_notices(kind, objects, account=connection.account, livemode=live), after)
