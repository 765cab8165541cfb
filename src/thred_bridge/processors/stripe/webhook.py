"""Stripe webhook deliveries: the ``Stripe-Signature`` check on the raw bytes, and snapshot-event parsing.

Pure: the clock is passed in, nothing is fetched. Not stripe's ``WebhookSignature.verify_header``:
its tolerance defaults to None (no replay check), it never refuses a timestamp from the future, and
it decodes the body before hashing (PROCESSORS.md §1.1, §6). Here the HMAC runs over the bytes as
received, every ``v1`` is compared with every configured secret (rotation), and ``v0`` is ignored
(downgrade protection, §1.1).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from thred_bridge.domain.json_codec import loads_delivery
from thred_bridge.errors import PayloadError, SignatureError
from thred_bridge.processors.stripe.translate import charge_id_of_payment_intent, id_of

TOLERANCE_S = 300
"""Seconds a signature stays valid either side of ``now`` (Stripe's ``DEFAULT_TOLERANCE``)."""

CHARGE_TYPES: frozenset[str] = frozenset({"charge.succeeded", "charge.captured", "payment_intent.succeeded"})
"""Events about a charge's own payment (the object is a charge, or a PaymentIntent naming one)."""

REFUND_TYPES: frozenset[str] = frozenset(
    {"charge.refunded", "charge.refund.updated", "refund.created", "refund.updated", "refund.failed"}
)
"""Events about refunds: ``charge.refunded`` carries the charge, the others the refund."""

DISPUTE_TYPES: frozenset[str] = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.updated",
        "charge.dispute.closed",
    }
)
"""Events about a dispute; the money moves at ``funds_withdrawn`` and ``funds_reinstated`` (§4 fact 8).
The backfill offers each listed dispute as ``charge.dispute.updated``."""

PAYOUT_TYPES: frozenset[str] = frozenset(
    {"payout.paid", "payout.failed", "payout.canceled", "payout.updated", "payout.reconciliation_completed"}
)
"""Events about a payout; ``payout.created`` is left out: nothing has been paid or itemised yet."""

HANDLED_TYPES: frozenset[str] = CHARGE_TYPES | REFUND_TYPES | DISPUTE_TYPES | PAYOUT_TYPES
"""Event types the worker turns into records; any other type is stored as ignored, not refused."""

THIN_EVENT_OBJECT = "v2.core.event"


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """What the bridge needs from a snapshot (``object: "event"``) Stripe event."""

    id: str
    type: str
    account: str | None
    livemode: bool
    created: int
    object_id: str | None
    object_type: str | None
    charge_id: str | None
    """The charge the event is about (to serialise a charge's events, its refunds' and its disputes'), if
    any; None for a payout, whose events are then serialised by the payout's own id."""

    @property
    def handled(self) -> bool:
        return self.type in HANDLED_TYPES

    @property
    def object_key(self) -> str:
        """The inbox key that serialises the event's processing: a charge's events, its refunds' and its
        disputes' share the charge's id; a payout's events its id; on a connected account, prefixed with it."""
        key = self.charge_id or self.object_id or self.id
        return f"{self.account}/{key}" if self.account else key


def _signature(secret: str, signed_payload: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), signed_payload, hashlib.sha256).hexdigest().encode("ascii")


def sign_header(body: bytes, secret: str, timestamp: int, *, more_secrets: Sequence[str] = ()) -> str:
    """A real ``Stripe-Signature`` header for ``body``: ``t=<timestamp>,v1=<hex>`` (one ``v1`` per secret).

    ``more_secrets`` adds a ``v1`` per extra secret, as Stripe does while a secret is being rolled.
    """
    signed = b"%d." % timestamp + bytes(body)
    parts = [f"t={timestamp}"]
    parts += [f"v1={_signature(s, signed).decode('ascii')}" for s in (secret, *more_secrets)]
    return ",".join(parts)


def _parse_header(header: str) -> tuple[int, list[bytes]]:
    timestamps: list[str] = []
    v1: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(value.strip())
        elif key == "v1":
            v1.append(value.strip().encode("utf-8", "replace"))
    if not timestamps:
        raise SignatureError("garbled Stripe-Signature header: no t= timestamp")
    if len(timestamps) > 1:
        raise SignatureError("garbled Stripe-Signature header: more than one t= timestamp")
    text = timestamps[0]
    if not (text.isascii() and text.isdigit() and len(text) <= 15):
        raise SignatureError(f"garbled Stripe-Signature header: t={text[:20]!r} is not an integer")
    if not v1:
        raise SignatureError("Stripe-Signature header has no v1 signature (v0 and other schemes are ignored)")
    return int(text), v1


def verify(body: bytes, header: str | None, secrets: Sequence[str], now: datetime) -> None:
    """Accept a delivery only if a ``v1`` signature matches and its timestamp is within 300 s of ``now``.

    ``body`` is the raw request body, byte for byte; ``now`` must be timezone-aware. Raises
    SignatureError saying why the delivery is refused.
    """
    if not isinstance(body, bytes | bytearray):
        raise TypeError("verify the raw request bytes, not decoded or re-serialised text")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if header is None or not header.strip():
        raise SignatureError("no Stripe-Signature header")
    usable = [s for s in secrets if s]
    if not usable:
        raise SignatureError("no Stripe signing secret is configured for this connection")
    timestamp, sent = _parse_header(header)
    # The signature is checked before the timestamp (as Stripe does), so "stale" is only ever said
    # of a genuine delivery: a clock problem or a replay, not a forgery.
    signed = b"%d." % timestamp + bytes(body)
    expected = [_signature(s, signed) for s in usable]
    if not any(hmac.compare_digest(e, v) for e in expected for v in sent):
        raise SignatureError(
            "no v1 signature matches any configured secret (wrong endpoint secret, or the body was altered)"
        )
    age = now.timestamp() - timestamp
    if age > TOLERANCE_S:
        raise SignatureError(f"stale timestamp: signed {age:.0f} s ago (tolerance {TOLERANCE_S} s)")
    if -age > TOLERANCE_S:
        raise SignatureError(f"timestamp is {-age:.0f} s in the future (tolerance {TOLERANCE_S} s)")


# Event-type prefix → the object it carries, for an object without ``object`` (some hand-made fixtures).
_OBJECT_BY_PREFIX = (
    ("charge.dispute.", "dispute"),
    ("charge.refund.", "refund"),
    ("charge.", "charge"),
    ("refund.", "refund"),
    ("payout.", "payout"),
    ("payment_intent.", "payment_intent"),
)


def _object_type(obj: Mapping[str, Any], event_type: str) -> str | None:
    kind = obj.get("object")
    if isinstance(kind, str):
        return kind
    return next((name for prefix, name in _OBJECT_BY_PREFIX if event_type.startswith(prefix)), None)


def _charge_id_of(obj: Mapping[str, Any], kind: str | None) -> str | None:
    if kind == "charge":
        return id_of(obj.get("id"))
    if kind == "payment_intent":
        return charge_id_of_payment_intent(obj)
    if kind in {"refund", "dispute"}:
        return id_of(obj.get("charge"))
    return None


def parse_event(body: bytes) -> StripeEvent:
    """A snapshot event's raw body → :class:`StripeEvent`. Raises PayloadError if it is not one."""
    try:
        data = loads_delivery(body)
    except ValueError as exc:
        raise PayloadError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"the body is a JSON {type(data).__name__}, not an event object")
    kind = data.get("object")
    if kind == THIN_EVENT_OBJECT:
        raise PayloadError("thin events are not supported; configure a snapshot (v1) endpoint")
    if kind is not None and kind != "event":
        raise PayloadError(f"not a Stripe event: object is {kind!r}")
    event_id, event_type = data.get("id"), data.get("type")
    if not isinstance(event_id, str) or not event_id:
        raise PayloadError("the event has no id")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError(f"event {event_id} has no type")
    account = data.get("account")
    if account is not None and not isinstance(account, str):
        raise PayloadError(f"event {event_id}: account is not a string")
    livemode = data.get("livemode", False)
    if not isinstance(livemode, bool):
        raise PayloadError(f"event {event_id}: livemode is not a boolean")
    created = data.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        raise PayloadError(f"event {event_id}: created is not a Unix timestamp")
    payload = data.get("data")
    obj = payload.get("object") if isinstance(payload, dict) else None
    if not isinstance(obj, dict):
        raise PayloadError(f"event {event_id} has no data.object")
    object_type = _object_type(obj, event_type)
    return StripeEvent(
        id=event_id,
        type=event_type,
        account=account or None,
        livemode=livemode,
        created=created,
        object_id=id_of(obj.get("id")),
        object_type=object_type,
        charge_id=_charge_id_of(obj, object_type),
    )
