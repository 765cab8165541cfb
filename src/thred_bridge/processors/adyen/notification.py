"""Adyen Standard webhooks: the per-item HMAC check, and ``NotificationRequestItem`` parsing.

Pure. Not ``Adyen.util.is_valid_hmac_notification``: given a batch it checks only the first item, it
returns None (falsy, no reason) for an item without ``additionalData``, and it signs whatever Python
``str()`` makes of a value, so a re-serialised ``True`` or ``1130.0`` fails with no word why
(PROCESSORS.md §2.2, §4 facts 11-14, §6). Here every item is checked on its own, against every
configured key (rotation), and a refusal says why.

The signature is Adyen's (§2.2): HMAC-SHA256 keyed with the hex-decoded HMAC key, over
``pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success``
with ``""`` for a missing field and no escaping, base64-encoded, compared in constant time with
``additionalData.hmacSignature``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import orjson

from thred_bridge.domain.json_codec import loads_delivery
from thred_bridge.errors import PayloadError

SIGNED_FIELDS: tuple[str, ...] = (
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "value",
    "currency",
    "eventCode",
    "success",
)
"""The signing string's fields, in order (``value`` and ``currency`` are read from ``amount``)."""

CHARGE_EVENT_CODES: frozenset[str] = frozenset({"AUTHORISATION", "CAPTURE"})
REFUND_EVENT_CODES: frozenset[str] = frozenset({"REFUND", "CANCEL_OR_REFUND", "REFUND_FAILED", "REFUNDED_REVERSED"})
DISPUTE_EVENT_CODES: frozenset[str] = frozenset(
    {"CHARGEBACK", "SECOND_CHARGEBACK", "PREARBITRATION_LOST", "CHARGEBACK_REVERSED", "PREARBITRATION_WON"}
)
MONEY_EVENT_CODES: frozenset[str] = CHARGE_EVENT_CODES | REFUND_EVENT_CODES | DISPUTE_EVENT_CODES
"""Event codes that can move money (``translate`` decides whether this one does)."""

REPORT_AVAILABLE = "REPORT_AVAILABLE"
SETTLEMENT_REPORT_PREFIX = "settlement_detail_report_batch_"
"""REPORT_AVAILABLE also announces other reports; only these are settlement batches (§6)."""

MAX_KEY_LENGTH = 255
"""The inbox's ``event_id`` and ``object_key`` columns hold this many characters."""

_HEX_KEY = re.compile(r"(?:[0-9A-Fa-f]{2})+")


@dataclass(frozen=True, slots=True)
class NotificationItem:
    """One verified ``NotificationRequestItem``, typed. ``raw`` is the item exactly as received."""

    psp_reference: str
    original_reference: str | None
    merchant_account_code: str
    merchant_reference: str
    amount_value: int
    amount_currency: str
    event_code: str
    success: bool
    event_date: datetime
    reason: str | None
    operations: tuple[str, ...]
    payment_method: str | None
    additional_data: Mapping[str, object]
    raw: Mapping[str, Any]
    live: bool

    @property
    def dedupe_key(self) -> str:
        """The inbox event id: pspReference, eventCode, success and originalReference (a redelivery of the
        same item has the same key). ``:`` and ``%`` inside a reference are percent-escaped, so the four
        parts never run together (a report file name may contain ``:``)."""
        success = "true" if self.success else "false"
        parts = (_escape(self.psp_reference), self.event_code, success, _escape(self.original_reference or ""))
        return _bounded(":".join(parts))

    @property
    def object_key(self) -> str:
        """The key that serialises processing: the payment's pspReference (``originalReference`` on a
        modification or dispute event, else ``pspReference``), so a payment's events run one at a time."""
        return _bounded(self.original_reference or self.psp_reference)

    @property
    def is_settlement_report(self) -> bool:
        """A REPORT_AVAILABLE for a settlement details report (``reason`` is then its download URL)."""
        return self.event_code == REPORT_AVAILABLE and self.psp_reference.startswith(SETTLEMENT_REPORT_PREFIX)

    @property
    def handled(self) -> bool:
        """Whether the worker has anything to do with it; anything else is stored as ignored."""
        return self.success and (self.event_code in MONEY_EVENT_CODES or self.is_settlement_report)


@dataclass(frozen=True, slots=True)
class RefusedItem:
    """An item of a batch that is not stored, and why. ``index`` is its position in ``notificationItems``."""

    index: int
    reason: str
    psp_reference: str | None
    event_code: str | None


@dataclass(frozen=True, slots=True)
class VerifiedBatch:
    """A delivery split in two: the items to store, and the refused ones with their reasons."""

    live: bool
    valid: tuple[NotificationItem, ...]
    refused: tuple[RefusedItem, ...]


def _escape(text: str) -> str:
    return quote(text, safe="") if (":" in text or "%" in text) else text


def _bounded(value: str) -> str:
    if len(value) <= MAX_KEY_LENGTH:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    return value[: MAX_KEY_LENGTH - 17] + "_" + digest


_EXPECTED_TYPE = {field: "a string" for field in SIGNED_FIELDS} | {"value": "an integer"}


def _signing_value(item: Mapping[str, Any], field: str) -> str:
    """One field as Adyen signs it; PayloadError for a value Adyen never sends (so cannot have signed)."""
    if field in ("value", "currency"):
        amount = item.get("amount")
        if amount is None:
            return ""
        if not isinstance(amount, Mapping):
            raise PayloadError(f"amount is a {type(amount).__name__}, not an object")
        value = amount.get(field)
        name = f"amount.{field}"
    else:
        value = item.get(field)
        name = field
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if field == "value" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    # A bool or a float is what a re-serialising proxy makes of "true" or 1130: Adyen signed the text,
    # and str(True) == "True", str(1130.0) == "1130.0" would never match (§2.2, fact 13).
    raise PayloadError(f"{name} is {value!r} ({type(value).__name__}); Adyen sends {_EXPECTED_TYPE[field]}")


def signing_string(item: Mapping[str, Any]) -> str:
    """The text Adyen signs for ``item`` (a ``NotificationRequestItem`` object), without escaping.

    Raises PayloadError for a field of a type Adyen never sends (a boolean ``success``, a float value).
    """
    return ":".join(_signing_value(item, field) for field in SIGNED_FIELDS)


def _key_bytes(hmac_key_hex: str) -> bytes | None:
    text = hmac_key_hex.strip() if isinstance(hmac_key_hex, str) else ""
    return bytes.fromhex(text) if _HEX_KEY.fullmatch(text) else None


def sign_item(item: Mapping[str, Any], hmac_key_hex: str) -> str:
    """The ``hmacSignature`` Adyen puts on ``item`` with this (hex) HMAC key: base64 of HMAC-SHA256.

    Raises ValueError for a key that is not hex, PayloadError for an unsignable item.
    """
    key = _key_bytes(hmac_key_hex)
    if key is None:
        raise ValueError("the HMAC key is not hex (Adyen's keys are hex strings, e.g. 64 hex digits)")
    digest = hmac.new(key, signing_string(item).encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_problem(item: Mapping[str, Any], hmac_keys: Sequence[str]) -> str | None:
    """None if ``item``'s ``additionalData.hmacSignature`` matches one of ``hmac_keys``; else why not.

    The reasons: no additionalData, no (or an empty) hmacSignature, a field Adyen would not have sent,
    no key configured, every key garbled (not hex), or no key matching (naming any garbled ones).
    """
    additional = item.get("additionalData")
    if additional is None:
        return "no additionalData, so no hmacSignature (is HMAC signing enabled for this webhook?)"
    if not isinstance(additional, Mapping):
        return f"additionalData is a {type(additional).__name__}, not an object"
    sent = additional.get("hmacSignature")
    if sent is None:
        return "additionalData has no hmacSignature (is HMAC signing enabled for this webhook?)"
    if not isinstance(sent, str) or not sent.strip():
        return "additionalData.hmacSignature is empty or not a string"
    try:
        message = signing_string(item).encode("utf-8")
    except PayloadError as exc:
        return f"cannot be verified: {exc.message}"
    if not hmac_keys:
        return "no HMAC key is configured for this connection"
    garbled: list[int] = []
    keys: list[bytes] = []
    for position, text in enumerate(hmac_keys, start=1):
        key = _key_bytes(text)
        if key is None:
            garbled.append(position)
        else:
            keys.append(key)
    named = ", ".join(f"#{p}" for p in garbled)
    if not keys:
        return f"no usable HMAC key: configured key {named} is not hex"
    received = sent.encode("utf-8")
    for key in keys:
        expected = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest())
        if hmac.compare_digest(expected, received):
            return None
    why = f"hmacSignature matches none of the {len(keys)} usable HMAC key(s) (wrong key, or the item was altered)"
    return f"{why}; configured key {named} is not hex" if garbled else why


def parse_envelope(body: bytes) -> tuple[bool, list[object]]:
    """A raw Standard-webhook body → (``live``, the ``notificationItems`` list, unchecked).

    Raises PayloadError for a body that is not JSON, not an object, or has no non-empty
    ``notificationItems`` list, or whose ``live`` is not ``"true"``/``"false"``.
    """
    if not isinstance(body, bytes | bytearray):
        raise TypeError("parse the raw request bytes, not decoded or re-serialised text")
    try:
        data = loads_delivery(body)
    except ValueError as exc:
        raise PayloadError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"the body is a JSON {type(data).__name__}, not an Adyen notification object")
    if "notificationItems" not in data:
        raise PayloadError("the body has no notificationItems (not an Adyen Standard webhook)")
    items = data["notificationItems"]
    if not isinstance(items, list):
        raise PayloadError(f"notificationItems is a {type(items).__name__}, not a list")
    if not items:
        raise PayloadError("notificationItems is empty")
    live = data.get("live")
    if live in ("true", True):
        return True, items
    if live in ("false", False):
        return False, items
    raise PayloadError(f'live is {live!r}, not "true" or "false"')


def _text(item: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    value = item.get(field)
    if value is None or value == "":
        if required and value is None:
            raise PayloadError(f"{field} is missing")
        return "" if required else None
    if not isinstance(value, str):
        raise PayloadError(f"{field} is a {type(value).__name__}, not a string")
    return value


def _required(item: Mapping[str, Any], field: str) -> str:
    value = _text(item, field, required=True)
    if not value:
        raise PayloadError(f"{field} is empty")
    return value


def _event_date(item: Mapping[str, Any]) -> datetime:
    text = _required(item, "eventDate")
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PayloadError(f"eventDate {text!r} is not an ISO 8601 date-time") from exc
    if when.tzinfo is None:
        raise PayloadError(f"eventDate {text!r} has no UTC offset")
    return when


def _amount(item: Mapping[str, Any]) -> tuple[int, str]:
    amount = item.get("amount")
    if not isinstance(amount, Mapping):
        raise PayloadError("amount is missing or not an object")
    value, currency = amount.get("value"), amount.get("currency")
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"amount.value is {value!r}, not an integer")
    if not isinstance(currency, str) or len(currency.strip()) != 3:
        raise PayloadError(f"amount.currency is {currency!r}, not a currency code")
    return value, currency.strip().upper()


def _success(item: Mapping[str, Any]) -> bool:
    value = item.get("success")
    if value == "true":
        return True
    if value == "false":
        return False
    raise PayloadError(f'success is {value!r}, not "true" or "false"')


def _operations(item: Mapping[str, Any]) -> tuple[str, ...]:
    value = item.get("operations")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PayloadError("operations is not a list of strings")
    return tuple(value)


def parse_item(item: Mapping[str, Any], *, live: bool) -> NotificationItem:
    """A ``NotificationRequestItem`` object → :class:`NotificationItem`. Checks shapes, not the signature.

    Raises PayloadError naming the first field that is missing or of the wrong type. Required, as in
    Adyen's OpenAPI: pspReference, merchantAccountCode, merchantReference (may be ""), eventCode,
    eventDate, amount, success.
    """
    additional = item.get("additionalData")
    if additional is not None and not isinstance(additional, Mapping):
        raise PayloadError("additionalData is not an object")
    value, currency = _amount(item)
    return NotificationItem(
        psp_reference=_required(item, "pspReference"),
        original_reference=_text(item, "originalReference", required=False),
        merchant_account_code=_required(item, "merchantAccountCode"),
        merchant_reference=_text(item, "merchantReference", required=True) or "",
        amount_value=value,
        amount_currency=currency,
        event_code=_required(item, "eventCode"),
        success=_success(item),
        event_date=_event_date(item),
        reason=_text(item, "reason", required=False),
        operations=_operations(item),
        payment_method=_text(item, "paymentMethod", required=False),
        additional_data=MappingProxyType(dict(additional or {})),
        raw=MappingProxyType(dict(item)),
        live=live,
    )


def _label(item: Mapping[str, Any], field: str) -> str | None:
    value = item.get(field)
    return value if isinstance(value, str) and value else None


def stored_body(item: NotificationItem) -> bytes:
    """One item as stored: an Adyen body holding just it, exactly as received (its signature too)."""
    live = "true" if item.live else "false"
    return orjson.dumps({"live": live, "notificationItems": [{"NotificationRequestItem": dict(item.raw)}]})


def verify_notification(body: bytes, hmac_keys: Sequence[str], merchant_account: str) -> VerifiedBatch:
    """Verify EVERY item of a Standard-webhook body and split them: valid items, refused items with reasons.

    An item is refused when its HMAC does not verify (:func:`signature_problem`), when it is for another
    merchant account than the connection's, or when it is malformed. The body itself is refused with
    PayloadError when it is not JSON or has no ``notificationItems``. Whether a batch with no valid item
    is acknowledged is the caller's choice; nothing refused here may be stored.
    """
    live, items = parse_envelope(body)
    valid: list[NotificationItem] = []
    refused: list[RefusedItem] = []
    for index, wrapper in enumerate(items):
        inner = wrapper.get("NotificationRequestItem") if isinstance(wrapper, Mapping) else None
        if not isinstance(inner, Mapping):
            reason = 'not a {"NotificationRequestItem": {...}} object'
            refused.append(RefusedItem(index, reason, None, None))
            continue
        psp, code = _label(inner, "pspReference"), _label(inner, "eventCode")
        problem = signature_problem(inner, hmac_keys)
        if problem is not None:
            refused.append(RefusedItem(index, f"bad HMAC signature: {problem}", psp, code))
            continue
        account = inner.get("merchantAccountCode")
        if account != merchant_account:
            reason = f"merchantAccountCode {account!r} is not this connection's merchant account {merchant_account!r}"
            refused.append(RefusedItem(index, reason, psp, code))
            continue
        try:
            valid.append(parse_item(inner, live=live))
        except PayloadError as exc:
            refused.append(RefusedItem(index, f"malformed item: {exc.message}", psp, code))
    return VerifiedBatch(live=live, valid=tuple(valid), refused=tuple(refused))
