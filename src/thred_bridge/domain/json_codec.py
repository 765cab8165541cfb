"""Reading JSON the bridge stored or received, with the parser that suits the document's size.

orjson is the fastest on the many small documents (events, records, answers), but it builds a whole
document in C before making its Python objects, which costs about three times the result at the peak: a
payout's 50,000 parent ids parsed to 15 MB after holding 47 MB. The standard library's parser builds the
objects as it goes (17 MB at the peak, and no slower at that size), so documents above ``LARGE`` take it.
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
