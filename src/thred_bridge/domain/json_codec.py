"""Reading JSON the bridge stored or received, with the parser that suits the document's size.

orjson is the fastest on the many small documents (events, records, answers), but it builds a whole
document in C before making its Python objects, which costs about three times the result at the peak: a
payout's 50,000 parent ids parsed to 15 MB after holding 47 MB. The standard library's parser builds the
objects as it goes (17 MB at the peak, and no slower at that size), so documents above ``LARGE`` take it.

A delivery's body is read strictly (:func:`loads_delivery`): a key twice in one object is refused, since
parsers disagree on which one wins and the bridge must book what the processor signed, nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

LARGE = 256 * 1024


def loads(data: bytes | str) -> Any:
    """The JSON in ``data``; raises a ValueError (``json.JSONDecodeError``) when it is not JSON."""
    if len(data) > LARGE:
        return json.loads(data)
    return orjson.loads(data)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key[:40]!r} appears twice in one object (duplicate keys are refused)")
        found[key] = value
    return found


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_delivery(data: bytes) -> Any:
    """A received body's JSON: UTF-8, at most 1,024 levels deep, no key twice in one object; ValueError if not.

    orjson checks the first two (in C, however deep the input), the standard library's pair hook the third."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    return json.loads(data, object_pairs_hook=_unique, parse_constant=_no_constant)
