"""An upload's request, read by the API: the date and city id of its path, and its body,
gzip decoded and capped, into a file. The upload's job half is
`busstats.orchestration.uploads` (`Uploads.receive`, handed `receive_body` to call)."""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib
from collections.abc import AsyncIterator
from typing import BinaryIO

from busstats.model.cities import MAX_CITY_ID
from busstats.orchestration.uploads import UploadRefused
from busstats.reference.client import Download

_GZIP_WBITS = 16 + zlib.MAX_WBITS
"""zlib's window bits for a gzip member, header and trailer included."""
_DECODE_STEP = 1 << 20
"""Bytes of decoded output produced per step of gzip decoding: a small body cannot expand
into more than this at once (a gzip bomb stops at the cap, one step past it at most)."""


def day_of(text: str) -> dt.date:
    """The date of an upload's path, spelled exactly YYYY-MM-DD, or UploadRefused(400).

    >>> day_of("2024-05-01")
    datetime.date(2024, 5, 1)
    """
    if len(text) == 10 and text.isascii():
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise UploadRefused(400, f"the date {text[:40]!r} must be a real date as YYYY-MM-DD")


def city_id_of(text: str) -> int:
    """The city id of an upload's path, or UploadRefused(400).

    >>> city_id_of("42")
    42
    """
    if not text.isascii() or not text.isdigit() or int(text) > MAX_CITY_ID:
        raise UploadRefused(
            400, f"city id {text[:40]!r} is not a whole number from 0 to {MAX_CITY_ID}"
        )
    return int(text)


def _too_large(max_bytes: int) -> UploadRefused:
    return UploadRefused(
        413,
        f"the upload is larger than the cap of {max_bytes:,} bytes "
        f"({max_bytes / 2**20:.4g} MiB, BUSSTATS_CITY_MAX_MB) once decoded",
    )


async def receive_body(
    chunks: AsyncIterator[bytes],
    dest: BinaryIO,
    max_bytes: int,
    content_encoding: str | None,
    content_length: str | None = None,
) -> Download:
    """Write the (gzip-decoded) body to `dest`, never more than `max_bytes` of it, and
    return its size and SHA-256. Stops reading at the cap: UploadRefused(413). An encoding
    other than gzip or identity: 415; a broken gzip stream: 400. A gzip body of several
    members (`cat a.gz b.gz`) is decoded whole, as `gzip -d` does, under the same cap.

    >>> import asyncio, io
    >>> async def body():
    ...     yield b"[]"
    >>> asyncio.run(receive_body(body(), io.BytesIO(), 10, None)).size
    2
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in {"identity", "gzip", "x-gzip"}:
        raise UploadRefused(
            415, f"Content-Encoding {encoding[:40]!r} is not accepted; send gzip or nothing"
        )
    gzipped = encoding != "identity"
    announced = content_length if content_length and content_length.isdigit() else None
    if not gzipped and announced is not None and int(announced) > max_bytes:
        raise _too_large(max_bytes)
    decoder = zlib.decompressobj(wbits=_GZIP_WBITS) if gzipped else None
    digest = hashlib.sha256()
    size = 0

    def write(data: bytes) -> None:
        nonlocal size
        if size + len(data) > max_bytes:
            raise _too_large(max_bytes)
        size += len(data)
        digest.update(data)
        dest.write(data)

    try:
        async for chunk in chunks:
            if decoder is None:
                write(chunk)
                continue
            pending = chunk
            while pending:
                if decoder.eof:  # the next member (RFC 1952 2.2), after any zero padding
                    pending = pending.lstrip(b"\0")
                    if not pending:
                        break
                    decoder = zlib.decompressobj(wbits=_GZIP_WBITS)
                write(decoder.decompress(pending, _DECODE_STEP))
                pending = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
        if decoder is not None and not decoder.eof:
            raise UploadRefused(400, "the gzip body ends before its end (truncated)")
    except zlib.error as exc:
        raise UploadRefused(400, f"the body is not valid gzip: {exc}") from None
    return Download(size=size, sha256=digest.hexdigest())
