"""A delivery's JSON is read strictly: what orjson reads, minus duplicate keys, constants and deep nesting."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.json_codec import loads_delivery

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@given(json_values)
def test_what_orjson_writes_is_read_back_the_same(value: Any) -> None:
    assert loads_delivery(orjson.dumps(value)) == value


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "evt_1", "id": "evt_2"}',
        b'{"data": {"object": {"amount": 1, "amount": 9000}}}',
        b'[{"a": 1}, {"b": 2, "b": 3}]',
    ],
)
def test_a_key_twice_in_one_object_is_refused_at_any_depth(body: bytes) -> None:
    with pytest.raises(ValueError, match="appears twice"):
        loads_delivery(body)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a": NaN}', b'{"a": Infinity}', b'{"id": "\xff"}', b"", b"{", b'{"a": 1} x'],
)
def test_what_is_not_strict_json_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- each body fails for its own reason
        loads_delivery(body)
