"""Cut a JSON array held in a buffer into slices of whole items, without decoding it.

A slice ends only at a comma between two items of the array: never inside a string, never
inside an item's nested object or array. The JSON state (inside a string or not, nesting
depth) is tracked exactly, so no content, however it is spelled, can make a slice grow past
`slice_bytes + MAX_ITEM_BYTES`: memory follows the slice size, not the file or its content.

How, without a Python loop over every byte: the state at the nominal cut point is computed
with a few C-speed passes (`bytes.translate`, `replace`, `count`, one regex substitution
that only does work on escapes and on strings holding brackets), then a small tokenizer walks
from there to the end of the item in progress.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Generator, Iterator

MAX_ITEM_BYTES = 64 * 1024
"""The longest item the slicer looks through to find where it ends. Upstream rows are about
100 bytes; an item past this is no bus record, and cutting around it would mean parsing an
unbounded amount of junk, so the whole response is refused instead."""

_WHITESPACE = b" \t\r\n"
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_CLOSED_STRING = re.compile(rb'"[^"]*"')
_STRUCTURE = b'"{}[]'
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in _STRUCTURE)
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+"', re.DOTALL)
_OPEN = b"{["
_CLOSE = b"}]"
_COMMA = ord(",")
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[][{},"]', re.DOTALL)


class NotAnArray(Exception):
    """The buffer is not one JSON array, or an item in it is too long to slice around."""


def array_slices(
    buf: bytes | mmap.mmap, slice_bytes: int
) -> Generator[tuple[int, int], None, None]:
    """Byte ranges `(begin, end)` of `buf`, each a comma-separated run of whole items of the
    top-level array, together holding every item. Each is about `slice_bytes` long and never
    longer than `slice_bytes + MAX_ITEM_BYTES`; `b"[" + buf[begin:end] + b"]"` is a JSON
    array when `buf` is valid JSON.

    Lazy: it reads the buffer only up to the slice it yields, so a memory map stays mostly
    unread until the caller gets there. Close the generator (or exhaust it) before closing
    a memory map: it holds a view of it until then.

    Raises NotAnArray when `buf` visibly is not an array (its first and last characters),
    when brackets do not balance, or when an item is longer than MAX_ITEM_BYTES. Anything
    else wrong inside the slices is for the JSON decoder to find.

    >>> body = b'[{"a": "},{"}, {"b": [1, 2]}, 3]'
    >>> [body[begin:end] for begin, end in array_slices(body, 1)]
    [b'{"a": "},{"}', b' {"b": [1, 2]}', b' 3']
    """
    with memoryview(buf) as data:
        yield from _slices(data, slice_bytes)


def _slices(data: memoryview, slice_bytes: int) -> Iterator[tuple[int, int]]:
    start, end = _strip(data)
    if start == end or data[start] != ord("[") or data[end - 1] != ord("]"):
        head = bytes(data[start : start + 80]).decode("utf-8", "replace")
        raise NotAnArray(f"the response is not a JSON array (it starts with {head!r})")
    position, end = start + 1, end - 1
    after_comma = False
    while position + slice_bytes < end:
        target = position + slice_bytes
        comma = _end_of_item(data, target, _state(data, position, target), end)
        if comma is None:
            break
        yield position, comma
        position, after_comma = comma + 1, True
    empty = not bytes(data[position:end]).strip(_WHITESPACE)
    if empty and after_comma:
        raise NotAnArray("the response is not valid JSON: a comma ends the array")
    if not empty:
        yield position, end


def _strip(data: memoryview) -> tuple[int, int]:
    start, end = 0, len(data)
    while start < end and data[start] in _WHITESPACE:
        start += 1
    while end > start and data[end - 1] in _WHITESPACE:
        end -= 1
    return start, end


class _State:
    """Where a cut at some point of the array's inside lands."""

    __slots__ = ("depth", "escaped", "in_string")

    def __init__(self, in_string: bool, escaped: bool, depth: int) -> None:
        self.in_string = in_string
        self.escaped = escaped
        """The cut falls right after a backslash inside a string: the next byte is escaped."""
        self.depth = depth
        """Open objects and arrays, counted from the array's own level (0: between items)."""


def _state(data: memoryview, begin: int, end: int) -> _State:
    """The state at `end`, given that `begin` is between two items of the array.

    Escapes are removed first (only strings hold backslashes in valid JSON), then everything
    but quotes and brackets; adjacent quote pairs are dropped (an empty string, or the end of
    one string and the start of the next: either way nothing between them counts), and what
    strings are left (those holding brackets) are removed by a regex. Brackets outside
    strings remain.
    """
    region = bytes(data[begin:end])
    escaped = False
    if b"\\" in region:
        region = _ESCAPE.sub(b"", region)
        escaped = region.endswith(b"\\")  # a lone backslash can only be the last byte left
    skeleton = region.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = _CLOSED_STRING.sub(b"", skeleton)
    outside, quote, _ = skeleton.partition(b'"')
    depth = outside.count(b"{") + outside.count(b"[") - outside.count(b"}") - outside.count(b"]")
    return _State(in_string=bool(quote), escaped=escaped and bool(quote), depth=depth)


def _end_of_item(data: memoryview, position: int, state: _State, end: int) -> int | None:
    """The position of the first comma between items at or after `position`, or None when
    the array ends first. Looks at most MAX_ITEM_BYTES ahead."""
    limit = min(end, position + MAX_ITEM_BYTES)
    depth = state.depth
    if depth < 0:
        raise NotAnArray(
            f"the response is not valid JSON: unbalanced brackets before byte {position}"
        )
    if state.in_string:
        position += state.escaped
        rest = _STRING_REST.match(data, position, limit)
        if rest is None:
            return _too_long(position, limit, end)
        position = rest.end()
    for token in _TOKEN.finditer(data, position, limit):
        at = token.start()
        if token.end() - at > 1:
            continue  # a whole string
        char = data[at]
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth < 0:
                raise NotAnArray(
                    f"the response is not valid JSON: unbalanced brackets at byte {at}"
                )
        elif char == _COMMA:
            if depth == 0:
                return at
        else:  # a quote: a string that does not close before the limit
            return _too_long(at, limit, end)
    return _too_long(position, limit, end)


def _too_long(position: int, limit: int, end: int) -> None:
    if limit < end:
        raise NotAnArray(
            f"an item of the array around byte {position} is longer than {MAX_ITEM_BYTES} bytes"
        )
