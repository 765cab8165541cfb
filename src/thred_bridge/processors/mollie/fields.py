"""Small readers of Mollie JSON shared by the webhook and the translators: ids, text, timestamps, amounts.

Each reader names what it read in its error, so a TranslationError says which object and field was
wrong. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeGuard

from thred_bridge.domain.money import Money, MoneyError
from thred_bridge.errors import TranslationError
from thred_bridge.processors.mollie.money import parse_amount

PROCESSOR = "mollie"

ID_MIN_CHARS = 4
"""Fewest characters after the prefix. Mollie's ids have 6 to 22 (``chb_n9z0tp``, ``tr_5B8cwPMGnU6qLbRvo7qEZo``);
the 5-character ``tr_12345`` of mollie-api-php's tests is accepted too."""

ID_MAX_CHARS = 64
"""Most characters after the prefix: three times the longest id seen, so a longer one is garbage."""

MOLLIE_ID = re.compile(r"([a-z]{2,8})_([A-Za-z0-9]+)")
"""A Mollie object id: a lower-case resource prefix, ``_``, then ASCII letters and digits."""


def is_mollie_id(value: object, prefix: str | None = None) -> TypeGuard[str]:
    """Whether ``value`` is a well-formed Mollie id (with ``prefix``, e.g. ``"tr"``, when given)."""
    if not isinstance(value, str):
        return False
    match = MOLLIE_ID.fullmatch(value)
    if match is None or not ID_MIN_CHARS <= len(match.group(2)) <= ID_MAX_CHARS:
        return False
    return prefix is None or match.group(1) == prefix


def id_of(value: object, prefix: str, what: str) -> str:
    """``value`` as a Mollie id starting ``<prefix>_``; TranslationError naming ``what`` otherwise."""
    if is_mollie_id(value, prefix):
        return value
    raise TranslationError(f"{what} is not a Mollie {prefix}_ id: {value!r}"[:200])


def text_of(value: object) -> str | None:
    """A non-blank string, stripped; None for anything else."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def time_of(value: object, what: str) -> datetime:
    """A Mollie ISO 8601 timestamp (``2024-04-06T09:41:44+00:00``, ``2018-03-14T17:09:02.0Z``) → aware datetime."""
    if not isinstance(value, str):
        raise TranslationError(f"{what} has no timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise TranslationError(f"{what}: {value!r} is not an ISO 8601 timestamp ({exc})") from exc
    if parsed.tzinfo is None:
        raise TranslationError(f"{what}: {value!r} has no UTC offset")
    return parsed


def money_of(amount: object, what: str) -> Money:
    """A Mollie amount object → Money, exactly; TranslationError naming ``what`` if it cannot be read."""
    try:
        return parse_amount(amount, what)
    except MoneyError as exc:
        raise TranslationError(str(exc)) from exc


def optional_money_of(amount: object, what: str) -> Money | None:
    """Like :func:`money_of`, but None for an absent or null amount (e.g. ``settlementAmount`` for PayPal)."""
    return None if amount is None else money_of(amount, what)


def settled_of(amount: object, what: str) -> Money | None:
    """A ``settlementAmount`` as given (either sign), or None when Mollie settled nothing: absent, null, or
    zero (a PayPal refund, PROCESSORS.md §6)."""
    settled = optional_money_of(amount, what)
    return None if settled is None or settled.minor == 0 else settled


def embedded(obj: Mapping[str, Any], key: str, what: str) -> Sequence[Mapping[str, Any]]:
    """The ``_embedded.<key>`` list of ``obj`` (``[]`` when absent), each entry checked to be an object."""
    holder = obj.get("_embedded")
    if holder is None:
        return []
    if not isinstance(holder, Mapping):
        raise TranslationError(f"{what}: _embedded is not an object")
    items = holder.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise TranslationError(f"{what}: _embedded.{key} is not a list of objects")
    return items


def decimal_text(money: Money) -> str:
    """Money as plain decimal text in major units (``Money(1050, "EUR")`` → ``"10.50"``)."""
    return format(money.to_decimal(), "f")
