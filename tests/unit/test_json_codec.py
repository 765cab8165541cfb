"""``json_codec.loads``: one answer whichever parser a document's size picks."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain import json_codec

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@given(_values)
def test_small_and_large_documents_read_the_same(value: object) -> None:
    small = orjson.dumps(value)
    padding = "x" * (json_codec.LARGE + 1)
    large = orjson.dumps({"value": value, "padding": padding})
    assert len(small) <= json_codec.LARGE < len(large)
    assert json_codec.loads(small) == value
    assert json_codec.loads(large) == {"value": value, "padding": padding}
    assert json_codec.loads(large.decode()) == json_codec.loads(large)


@pytest.mark.parametrize("size", [10, json_codec.LARGE + 10])
def test_what_is_not_json_is_a_value_error(size: int) -> None:
    with pytest.raises(ValueError, match=r"(?i)expect|eof|unexpected"):
        json_codec.loads(b"{" + b" " * size)
