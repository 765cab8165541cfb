"""Mollie webhook deliveries: classic pings (an unsigned resource id) and next-gen signed events. Pure.

**Classic** (PROCESSORS.md §3.1): ``POST`` form body ``id=tr_…``, no signature. Trust comes from the
fetch that follows, made with the connection's own credentials; so a ping is accepted only if its id is a
well-formed Mollie id with a known prefix (:data:`CLASSIC_RESOURCES`), and refused with the precise reason
otherwise. A ping carries no event id. Mollie pings the same payment again for each change (paid, each
refund, each chargeback, §4 fact 17), so the notice's event id is the resource id plus a time bucket
(``tr_…@<bucket start, Unix seconds>``): pings for one object within the same ``window_s``-second bucket
(default :data:`DEDUPE_WINDOW_S`) collapse into one inbox row, pings in different buckets do not. The
window only has to absorb a burst; keep it short, because a ping arriving in the bucket of one that was
already processed is dropped, and only a later ping (or a backfill) would then see that change. Mollie's
own retries come minutes apart and are harmless: every ping makes the worker fetch the current state.

**Next-gen** (§3.2): a JSON event signed with ``X-Mollie-Signature: sha256=<hex>``, the lowercase hex
HMAC-SHA256 of the raw body keyed with the webhook's signing secret (UTF-8). While a secret is rotated,
Mollie sends several signatures: as repeated headers, which HTTP joins into one value with commas (RFC 9110
§5.3), so the header value is split on ``,``; a sequence of header values is accepted as well. Every
signature is compared with the HMAC under every configured secret (``hmac.compare_digest``); one match is
enough. Entries with another scheme than ``sha256`` are ignored; a bare 64-digit hex value is read as
sha256, as mollie-api-php does. Mollie signs no timestamp, so there is no replay window: a replayed event
carries its old event id and is deduplicated by the inbox. No signature header means a classic ping
(:func:`notices`), never an unsigned next-gen event: a JSON body is not a classic form body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from thred_bridge.domain.json_codec import loads_delivery
from thred_bridge.domain.queue import Notice
from thred_bridge.errors import PayloadError, PayloadTooLargeError, SignatureError
from thred_bridge.processors.mollie.fields import ID_MAX_CHARS, ID_MIN_CHARS, is_mollie_id

SIGNATURE_HEADER = "X-Mollie-Signature"
SIGNATURE_SCHEME = "sha256"
MAX_SIGNATURES = 16
"""Most signatures read from one delivery (Mollie sends two during a rotation)."""

DEDUPE_WINDOW_S = 10
"""Default width, in seconds, of the time bucket that collapses repeated classic pings (module docstring)."""

CLASSIC_MAX_BYTES = 1024
"""Largest classic body accepted: ``id=`` and one id is under 100 bytes."""

CLASSIC_RESOURCES: Mapping[str, str] = {
    "tr": "payment",
    "re": "refund",
    "chb": "chargeback",
    "stl": "settlement",
    "cpt": "capture",
    "ord": "order",
    "pl": "payment-link",
    "sub": "subscription",
}
"""Id prefix → Mollie resource, for the objects a classic ping may name (PROCESSORS.md §3.1-§3.3).

Payments ping their own ``webhookUrl`` (also for their refunds and chargebacks); orders, payment links and
subscriptions have one too. Refund, chargeback, capture and settlement ids are accepted in case a ping
names them directly."""

CLASSIC_HANDLED: frozenset[str] = frozenset({"payment", "refund", "chargeback", "settlement"})
"""Resources the worker books; a ping for another known resource is stored as ignored, not refused."""

NEXTGEN_HANDLED_TYPES: frozenset[str] = frozenset(
    {
        "payment.paid",
        "payment.authorized",
        "refund.queued",
        "refund.pending",
        "refund.processing",
        "refund.refunded",
        "refund.failed",
        "refund.canceled",
        "chargeback.received",
        "chargeback.reversed",
        "capture.succeeded",
    }
)
"""Next-gen event types that move money the bridge books (§3.2); others (``payment.failed``,
``payment-link.paid``, ``balance-transaction.created``, ``payout.*``, …) are stored as ignored."""

EVENT_ID_PREFIXES = ("event", "whe")
"""Next-gen event ids: ``event_…`` (Mollie's API spec) and ``whe_…`` (mollie-api-php's fake)."""

_EVENT_TYPE = re.compile(r"[a-z*][a-z0-9*-]*(?:\.[a-z0-9*-]+)*")
_HEX = frozenset(string.hexdigits)


# --------------------------------------------------------------------------------------------------
# Classic pings


@dataclass(frozen=True, slots=True)
class ClassicPing:
    """A classic webhook call: which Mollie object to fetch."""

    resource_id: str
    resource: str

    @property
    def event_type(self) -> str:
        """``payment.ping``, ``refund.ping``, …: the resource, then ``ping`` (it says nothing about what changed)."""
        return f"{self.resource}.ping"

    @property
    def handled(self) -> bool:
        return self.resource in CLASSIC_HANDLED


def check_id(value: str, resources: Mapping[str, str] = CLASSIC_RESOURCES) -> str:
    """The Mollie resource ``value`` names (``"tr_5B8c…"`` → ``"payment"``); PayloadError saying why it is not one.

    A well-formed id is a prefix from ``resources``, ``_``, then ASCII letters and digits only, between
    ``ID_MIN_CHARS`` and ``ID_MAX_CHARS`` of them.
    """
    shown = repr(value[:40]) + ("…" if len(value) > 40 else "")
    if not value:
        raise PayloadError("the id is empty")
    limit = max(map(len, resources)) + 1 + ID_MAX_CHARS
    if len(value) > limit:
        raise PayloadError(f"the id is {len(value)} characters long (at most {limit}): {shown}")
    prefix, sep, rest = value.partition("_")
    if not sep:
        raise PayloadError(f"the id {shown} has no resource prefix (like tr_)")
    if prefix not in resources:
        known = ", ".join(f"{p}_" for p in resources)
        raise PayloadError(f"the id {shown} has an unknown prefix {prefix + '_'!r} (expected one of {known})")
    if not (rest.isascii() and rest.isalnum()):
        raise PayloadError(f"the id {shown} has characters other than ASCII letters and digits after {prefix}_")
    if not ID_MIN_CHARS <= len(rest) <= ID_MAX_CHARS:
        raise PayloadError(
            f"the id {shown} has {len(rest)} characters after {prefix}_ (expected {ID_MIN_CHARS} to {ID_MAX_CHARS})"
        )
    return resources[prefix]


def parse_classic(body: bytes) -> ClassicPing:
    """A classic webhook body (``id=tr_5B8cwPMGnU6qLbRvo7qEZo``) → :class:`ClassicPing`.

    Other form fields are ignored; exactly one ``id`` is required. Raises PayloadTooLargeError for a body
    over :data:`CLASSIC_MAX_BYTES` and PayloadError saying what is wrong with any other.
    """
    if not isinstance(body, bytes | bytearray):
        raise TypeError("parse the raw request bytes")
    if len(body) > CLASSIC_MAX_BYTES:
        raise PayloadTooLargeError(f"a classic Mollie webhook body is {len(body)} bytes (at most {CLASSIC_MAX_BYTES})")
    try:
        text = bytes(body).decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError("the body is not ASCII form data (a classic Mollie webhook posts id=<id>)") from exc
    if not text:
        raise PayloadError("the body is empty (a classic Mollie webhook posts id=<id>)")
    if text.startswith("{"):
        raise PayloadError(f"a JSON body without an {SIGNATURE_HEADER} header: not a classic ping, and not signed")
    try:
        fields = parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=16)
    except ValueError as exc:
        raise PayloadError(f"the body is not form data (a classic Mollie webhook posts id=<id>): {exc}") from exc
    ids = [value for key, value in fields if key == "id"]
    if not ids:
        raise PayloadError("the form has no id field")
    if len(ids) > 1:
        raise PayloadError(f"the form has {len(ids)} id fields; a classic Mollie webhook names one object")
    resource = check_id(ids[0])
    return ClassicPing(ids[0], resource)


def bucket_of(now: datetime, window_s: int = DEDUPE_WINDOW_S) -> int:
    """The start (Unix seconds) of the ``window_s``-second bucket ``now`` falls in."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if isinstance(window_s, bool) or not isinstance(window_s, int) or window_s <= 0:
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    seconds = int(now.timestamp())
    return seconds - seconds % window_s


def classic_notice(body: bytes, now: datetime, *, window_s: int = DEDUPE_WINDOW_S) -> Notice:
    """A classic ping → :class:`Notice`: event id ``<id>@<bucket>``, type ``<resource>.ping``, object key the id.

    The object key serialises the processing of every ping and event about one object (a payment's pings
    and its next-gen events share ``tr_…``).
    """
    ping = parse_classic(body)
    return Notice(
        event_id=f"{ping.resource_id}@{bucket_of(now, window_s)}",
        event_type=ping.event_type,
        object_key=ping.resource_id,
        body=bytes(body),
        account=None,
        handled=ping.handled,
    )


# --------------------------------------------------------------------------------------------------
# Next-gen signed events


def sign(body: bytes, secret: str) -> str:
    """The ``X-Mollie-Signature`` value for ``body``: ``sha256=<lowercase hex HMAC-SHA256>``."""
    return f"{SIGNATURE_SCHEME}={_hex_mac(secret, bytes(body)).decode('ascii')}"


def _hex_mac(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode("ascii")


def signatures_of(header: str | Sequence[str] | None) -> list[bytes]:
    """The sha256 signatures (lowercase hex, as bytes) in one header value or several.

    Raises SignatureError when there is no header, or when nothing in it is a sha256 signature.
    """
    values = [header] if isinstance(header, str) else list(header or [])
    entries = [e.strip() for v in values for e in v.split(",") if e.strip()]
    if not entries:
        raise SignatureError(f"no {SIGNATURE_HEADER} header (or an empty one)")
    if len(entries) > MAX_SIGNATURES:
        raise SignatureError(f"garbled {SIGNATURE_HEADER} header: {len(entries)} entries (at most {MAX_SIGNATURES})")
    found: list[bytes] = []
    refused: list[str] = []
    for entry in entries:
        scheme, sep, value = entry.partition("=")
        if not sep:
            scheme, value = SIGNATURE_SCHEME, entry  # bare hex, as mollie-api-php accepts
        if scheme.strip().lower() != SIGNATURE_SCHEME:
            refused.append(f"scheme {scheme.strip()[:16]!r} is not {SIGNATURE_SCHEME}")
            continue
        value = value.strip()
        if len(value) != 64 or not set(value) <= _HEX:
            refused.append(f"{entry[:24]!r}… is not {SIGNATURE_SCHEME}=<64 hex digits>")
            continue
        found.append(value.lower().encode("ascii"))
    if not found:
        raise SignatureError(f"garbled {SIGNATURE_HEADER} header: {'; '.join(refused)}")
    return found


def verify_signature(body: bytes, header: str | Sequence[str] | None, secrets: Sequence[str]) -> None:
    """Accept the raw ``body`` only if one of its sha256 signatures matches under one of ``secrets``.

    Raises SignatureError saying why: no header, a garbled one, no secret configured, or no match.
    """
    if not isinstance(body, bytes | bytearray):
        raise TypeError("verify the raw request bytes, not decoded or re-serialised text")
    sent = signatures_of(header)
    usable = [s for s in secrets if s]
    if not usable:
        raise SignatureError("no Mollie webhook signing secret is configured for this connection")
    expected = [_hex_mac(s, bytes(body)) for s in usable]
    if not any(hmac.compare_digest(e, s) for e in expected for s in sent):
        raise SignatureError(
            f"no {SIGNATURE_HEADER} signature matches any configured secret "
            f"({len(sent)} signature(s), {len(usable)} secret(s): wrong secret, or the body was altered)"
        )


@dataclass(frozen=True, slots=True)
class MollieEvent:
    """What the bridge needs from a next-gen event (``resource: "event"``)."""

    id: str
    type: str
    entity_id: str
    created_at: str | None
    entity: Mapping[str, Any] | None
    """The ``_embedded.entity`` snapshot, when Mollie sent one."""

    @property
    def handled(self) -> bool:
        return self.type in NEXTGEN_HANDLED_TYPES

    @property
    def payment_id(self) -> str | None:
        """The payment the event is about: the entity itself (``tr_…``), or a refund's, chargeback's or
        capture's ``paymentId`` from the snapshot; None when neither says."""
        if is_mollie_id(self.entity_id, "tr"):
            return self.entity_id
        given = self.entity.get("paymentId") if self.entity is not None else None
        return given if is_mollie_id(given, "tr") else None

    @property
    def object_key(self) -> str:
        """Serialises processing: a payment's events, and its refunds' and chargebacks' (when the snapshot
        names the payment), share the payment id, as its classic pings do; others use the entity id."""
        return self.payment_id or self.entity_id


def parse_event(body: bytes) -> MollieEvent:
    """A next-gen event's raw body → :class:`MollieEvent`. Raises PayloadError if it is not one."""
    try:
        data = loads_delivery(body)
    except ValueError as exc:
        raise PayloadError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"the body is a JSON {type(data).__name__}, not an event object")
    resource = data.get("resource", "event")
    if resource != "event":
        raise PayloadError(f"not a Mollie event: resource is {resource!r}"[:200])
    event_id = data.get("id")
    if not isinstance(event_id, str) or not any(is_mollie_id(event_id, p) for p in EVENT_ID_PREFIXES):
        raise PayloadError(f"the event id {event_id!r} is not an event_… or whe_… id"[:200])
    event_type = data.get("type")
    if not isinstance(event_type, str) or len(event_type) > 64 or not _EVENT_TYPE.fullmatch(event_type):
        raise PayloadError(f"event {event_id} has no well-formed type: {event_type!r}"[:200])
    entity_id = data.get("entityId")
    if not is_mollie_id(entity_id):
        raise PayloadError(f"event {event_id} has no well-formed entityId: {entity_id!r}"[:200])
    holder = data.get("_embedded")
    entity = holder.get("entity") if isinstance(holder, dict) else None
    if entity is not None and not isinstance(entity, dict):
        raise PayloadError(f"event {event_id}: _embedded.entity is not an object")
    if entity is not None and entity.get("id") not in (None, entity_id):
        # Mollie's own example has this mismatch (pl_qng5… vs pl_4Y0e…): entityId wins, the snapshot is dropped.
        entity = None
    created = data.get("createdAt")
    return MollieEvent(
        id=event_id,
        type=event_type,
        entity_id=entity_id,
        created_at=created if isinstance(created, str) else None,
        entity=entity,
    )


def nextgen_notice(body: bytes, header: str | Sequence[str] | None, secrets: Sequence[str]) -> Notice:
    """Verify a next-gen delivery and parse it → :class:`Notice`, deduplicated on the event id."""
    verify_signature(body, header, secrets)
    event = parse_event(body)
    return Notice(
        event_id=event.id,
        event_type=event.type,
        object_key=event.object_key,
        body=bytes(body),
        account=None,
        handled=event.handled,
    )


def header_values(headers: Mapping[str, str] | Sequence[tuple[str, str]], name: str) -> list[str]:
    """Every value of header ``name`` (any case) in a mapping or a list of (name, value) pairs."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    wanted = name.lower()
    return [value for key, value in pairs if key.lower() == wanted]


def notices(
    body: bytes,
    headers: Mapping[str, str] | Sequence[tuple[str, str]],
    secrets: Sequence[str],
    now: datetime,
    *,
    window_s: int = DEDUPE_WINDOW_S,
) -> list[Notice]:
    """One delivery → its notices: a signed next-gen event when an ``X-Mollie-Signature`` header is present
    (verified against ``secrets``), else a classic ping. Raises DeliveryError subclasses to refuse it."""
    signatures = header_values(headers, SIGNATURE_HEADER)
    if signatures:
        return [nextgen_notice(body, signatures, secrets)]
    return [classic_notice(body, now, window_s=window_s)]
