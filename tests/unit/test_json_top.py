"""``TopLevel``: a document's top-level fields read as it streams in, whatever its chunks."""

from __future__ import annotations

import json

import orjson
from hypothesis import given
from hypothesis import strategies as st

from thred_bridge.domain.json_top import TopLevel

_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text()
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=15
)
_objects = st.dictionaries(st.text(), _values, max_size=6)


def _fed(document: bytes, cuts: list[int], keep: int) -> TopLevel:
    reader = TopLevel(keep)
    at = 0
    for cut in sorted({min(c, len(document)) for c in cuts}):
        reader.feed(document[at:cut])
        at = cut
    reader.feed(document[at:])
    return reader


@given(_objects, st.lists(st.integers(0, 400), max_size=30))
def test_a_large_document_becomes_its_top_level(value: dict[str, object], cuts: list[int]) -> None:
    document = orjson.dumps(value)
    reader = _fed(document, cuts, keep=0)
    assert reader.ok
    assert not reader.whole or not document
    expected = {k: None if isinstance(v, dict | list) else v for k, v in value.items()}
    assert json.loads(reader.body()) == expected


@given(_objects, st.lists(st.integers(0, 400), max_size=30))
def test_a_small_document_is_kept_whole(value: dict[str, object], cuts: list[int]) -> None:
    document = orjson.dumps(value)
    reader = _fed(document, cuts, keep=len(document))
    assert reader.whole
    assert reader.ok
    assert reader.body() == document


@given(_objects.filter(bool), st.data())
def test_a_document_cut_short_is_not_ok(value: dict[str, object], data: st.DataObject) -> None:
    document = orjson.dumps(value)
    end = data.draw(st.integers(1, len(document) - 1))
    assert not _fed(document[:end], [end // 2], keep=0).ok


def test_strings_that_look_like_brackets_and_escapes_are_text() -> None:
    value = {"id": "po_1", "s": 'a"b\\c{[', "nested": [{"x": ']}\\"', "y": {"z": []}}], "n": 1.5, "t": True}
    document = orjson.dumps(value)
    for size in (1, 2, 3, 5, 64):
        reader = _fed(document, list(range(size, len(document), size)), keep=0)
        assert json.loads(reader.body()) == {"id": "po_1", "s": 'a"b\\c{[', "nested": None, "n": 1.5, "t": True}


def test_what_is_not_json_is_not_ok() -> None:
    for broken in (b'{"a": 1}]', b'{"a": [1}', b'{"a": \\1}', b'{"a": {"b": 1]}'):
        assert not _fed(broken, [], keep=0).ok, broken
    assert _fed(b'[{"a": 1}]', [], keep=0).body() == b"[null]"  # an array at the top: the caller refuses it
