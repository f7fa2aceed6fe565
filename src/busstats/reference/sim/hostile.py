"""Bodies a misbehaving upstream sends: a gzip bomb and a city list with broken entries."""

from __future__ import annotations

import functools
import struct
import zlib

GZIP_BOMB_BLOCKS = 1024
"""MiB the bomb expands to: 1 GiB from about 1 MB on the wire, like the case in issue 8."""

BAD_CITY_ENTRIES = [
    '{"id": -1, "name": "Below Zero", "country": "Peru"}',
    '{"id": "31", "name": "Stringville", "country": "Peru"}',
    '{"id": 32.5, "name": "Half Town", "country": "Peru"}',
    '{"id": true, "name": "Booleana", "country": "Peru"}',
    '{"id": 9223372036854775808, "name": "Overflow", "country": "Peru"}',
    '{"id": 33, "name": "Nowhere"}',
    '{"id": 34, "name": null, "country": "Peru"}',
    '{"id": 0, "name": "Lake Amy again", "country": "Peru"}',
    '"Ica\\u001b[2J"',
]
"""Entries `--bad-city-entries` appends to the 30 good ones: each breaks the contract once."""


@functools.cache
def gzip_bomb() -> bytes:
    """A valid gzip body of about 1 MB whose content is `[`, 1 GiB of spaces and `]`
    (an empty JSON array), built in a fraction of a second.

    After a full flush deflate starts afresh, so every MiB of spaces compresses to the same
    bytes: the stream is one compressed MiB repeated, between a head and a tail.
    """
    block = b" " * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate
    head = compressor.compress(b"[") + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(b"]") + compressor.flush()
    crc = zlib.crc32(b"[")
    for _ in range(GZIP_BOMB_BLOCKS):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(b"]", crc)
    size = GZIP_BOMB_BLOCKS * len(block) + 2
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return gzip_header + head + repeated * GZIP_BOMB_BLOCKS + tail + trailer
