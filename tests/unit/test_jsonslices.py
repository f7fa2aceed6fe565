"""Cutting a JSON array into slices of whole items: exact whatever the strings hold."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from busstats.ingest.jsonslices import MAX_ITEM_BYTES, NotAnArray, array_slices

# Strings made of the characters that could fool a slicer: brackets, commas, quotes, escapes.
tricky_text = st.text(alphabet=st.sampled_from('},{[]"\\ a\né'), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-9, 9) | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=12,
)


def sliced(body: bytes, slice_bytes: int) -> list[Any]:
    items: list[Any] = []
    for begin, end in array_slices(body, slice_bytes):
        items += msgspec.json.decode(b"[" + body[begin:end] + b"]")
    return items


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(json_values, max_size=12),
    slice_bytes=st.integers(1, 40),
    indent=st.sampled_from([None, 1]),
    ascii_only=st.booleans(),
)
def test_slices_hold_exactly_the_items_of_the_array(
    items: list[Any], slice_bytes: int, indent: int | None, ascii_only: bool
) -> None:
    body = json.dumps(items, indent=indent, ensure_ascii=ascii_only).encode()
    assert sliced(body, slice_bytes) == items
    for begin, end in array_slices(body, slice_bytes):
        longest_item = max(len(json.dumps(item, indent=indent)) for item in items)
        assert end - begin <= slice_bytes + 2 * longest_item + 8


@pytest.mark.parametrize("slice_bytes", range(1, 30))
def test_a_cut_after_a_backslash_or_inside_an_escape_is_exact(slice_bytes: int) -> None:
    items = [{"a": 'x\\"},{\\'}, {"b": "\\\\"}, '\\\\"],[{', {"c": ["},{", {"d": "]"}]}]
    body = json.dumps(items).encode()
    assert sliced(body, slice_bytes) == items


def test_slices_are_cut_near_the_requested_size() -> None:
    body = json.dumps([{"bus": n, "note": "},{" * 3} for n in range(1000)]).encode()
    sizes = [end - begin for begin, end in array_slices(body, 1000)]
    assert len(sizes) == pytest.approx(len(body) / 1000, abs=2)
    assert max(sizes) < 1000 + 60


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not a JSON array"),
        (b"{}", "not a JSON array"),
        (b" [1, 2", "not a JSON array"),
        (b"[1, 2, ]", "a comma ends the array"),
        (b"[1, 2," + b" " * 100 + b"]", "a comma ends the array"),
        (b"[1]] , [[2]", "unbalanced"),
        (b"[1, 2}, {3]", "unbalanced"),
    ],
)
def test_what_is_visibly_no_array_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(NotAnArray, match=message):
        list(array_slices(body, 1))


@pytest.mark.parametrize("slice_bytes", [1, 100])
def test_an_empty_array_has_no_slice(slice_bytes: int) -> None:
    assert list(array_slices(b" [ \n ] ", slice_bytes)) == []


@pytest.mark.parametrize("where", ["string", "nesting"])
def test_an_item_too_long_to_slice_around_is_refused_not_read_whole(where: str) -> None:
    filler = "x" * MAX_ITEM_BYTES if where == "string" else [[]] * MAX_ITEM_BYTES
    body = json.dumps([1, {"huge": filler}, 2]).encode()
    with pytest.raises(NotAnArray, match=f"longer than {MAX_ITEM_BYTES} bytes"):
        list(array_slices(body, 8))
