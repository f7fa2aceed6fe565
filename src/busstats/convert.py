"""Turn one city's day, a JSON array as upstream sent it, into a typed Parquet file.

The array is decoded in slices of about `SLICE_BYTES`, each becoming one Parquet row
group, so memory follows the slice size rather than the file size. Rows that do not fit
the schema are counted and described, never guessed at.
"""

from __future__ import annotations

import datetime as dt
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

SLICE_BYTES = 16 * 1024 * 1024
MAX_EXAMPLES = 5
MAX_PASSENGERS = 2**31 - 1

PARQUET_SCHEMA = pa.schema(
    [
        ("departure_time", pa.timestamp("us")),
        ("bus_type", pa.string()),
        ("passengers", pa.int64()),
        ("delay_seconds", pa.float64()),
        ("accident", pa.bool_()),
        ("city_id", pa.int64()),
        ("city_name", pa.string()),
        ("country", pa.string()),
    ]
)

# Between two objects of the array: `}`, a comma, `{`, maybe with white space. Inside a JSON
# string this text can occur too, but a slice cut there leaves an unterminated string, so
# decoding fails loudly and the file is decoded whole instead (see `convert_file`).
_ROW_BOUNDARY = re.compile(rb"\}\s*,\s*\{")
_WHITESPACE = b" \t\r\n"


class UpstreamRow(msgspec.Struct, rename="kebab"):
    """One bus as upstream writes it; unknown extra fields are ignored."""

    departure_time: dt.datetime
    bus_type: str
    passengers: Annotated[int, msgspec.Meta(ge=0, le=MAX_PASSENGERS)]
    delay: str
    accident: bool


class InvalidRow(msgspec.Struct, frozen=True):
    index: int
    """Position of the row in the upstream array, from 0."""
    reason: str


class UnusableResponse(Exception):
    """The response as a whole is not a JSON array of rows (HTML, truncated, not JSON...)."""


@dataclass(frozen=True, slots=True)
class CityInfo:
    """The constant columns written into every row of a city's file."""

    city_id: int
    city_name: str
    country: str


@dataclass(slots=True)
class ConversionResult:
    rows: int = 0
    invalid_rows: int = 0
    invalid_examples: list[InvalidRow] = field(default_factory=list[InvalidRow])

    def add_invalid(self, index: int, reason: str) -> None:
        self.invalid_rows += 1
        if len(self.invalid_examples) < MAX_EXAMPLES:
            self.invalid_examples.append(InvalidRow(index, reason))


_ROWS = msgspec.json.Decoder(list[UpstreamRow])
_ROW = msgspec.json.Decoder(UpstreamRow)
_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])


def parse_duration_seconds(text: str) -> float:
    """Seconds in an ISO 8601 duration such as `PT2460S`, `P0D`, `PT1H5M` or `PT3.5S`.

    Raises ValueError for anything else, including years and months, whose length in
    seconds is not defined.
    """
    try:
        return msgspec.convert(text, dt.timedelta).total_seconds()
    except msgspec.ValidationError as exc:
        raise ValueError(f"delay {text!r} is not an ISO 8601 duration: {exc}") from None


def convert_file(
    raw_path: Path,
    parquet_path: Path,
    city: CityInfo,
    day: dt.date,
    *,
    provenance: dict[str, str] | None = None,
    slice_bytes: int = SLICE_BYTES,
) -> ConversionResult:
    """Convert the upstream file at `raw_path`; write Parquet to `parquet_path`.

    `provenance` goes into the Parquet footer's key-value metadata as `busstats.<key>`, so a
    reader can tell which run and which raw file a Parquet file came from.
    Raises UnusableResponse when the file is not a JSON array; then no Parquet is written.
    """
    schema = pa.schema(
        PARQUET_SCHEMA,
        metadata={f"busstats.{key}": value for key, value in (provenance or {}).items()},
    )
    if raw_path.stat().st_size == 0:
        raise UnusableResponse("the response body is empty")
    with raw_path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        spans = _array_item_spans(buf, slice_bytes)
        try:
            return _write_parquet(buf, spans, parquet_path, schema, city, day)
        except _SliceUndecodable:
            # A slice boundary fell inside a string; decoding the array whole is exact.
            whole = _array_item_spans(buf, len(buf))
            try:
                return _write_parquet(buf, whole, parquet_path, schema, city, day)
            except _SliceUndecodable as exc:
                parquet_path.unlink(missing_ok=True)
                raise UnusableResponse(str(exc)) from None


class _SliceUndecodable(Exception):
    pass


def _array_item_spans(buf: mmap.mmap, slice_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges, each holding whole array items, that together cover the array's inside."""
    start, end = 0, len(buf)
    while start < end and buf[start] in _WHITESPACE:
        start += 1
    while end > start and buf[end - 1] in _WHITESPACE:
        end -= 1
    if start == end or buf[start] != ord("[") or buf[end - 1] != ord("]"):
        head = bytes(buf[start : start + 80]).decode("utf-8", "replace")
        raise UnusableResponse(f"the response is not a JSON array (it starts with {head!r})")
    spans: list[tuple[int, int]] = []
    position, end = start + 1, end - 1
    while position < end:
        boundary = _ROW_BOUNDARY.search(buf, position + slice_bytes, end)
        if boundary is None:
            spans.append((position, end))
            break
        spans.append((position, boundary.start() + 1))
        position = boundary.end() - 1
    return spans


def _write_parquet(
    buf: mmap.mmap,
    spans: list[tuple[int, int]],
    parquet_path: Path,
    schema: pa.Schema,
    city: CityInfo,
    day: dt.date,
) -> ConversionResult:
    result = ConversionResult()
    delays: dict[str, float | None] = {}
    first_index = 0
    with pq.ParquetWriter(parquet_path, schema, compression="zstd") as writer:
        for begin, end in spans:
            text = b"[" + buf[begin:end] + b"]"
            rows, invalid = _decode_rows(text)
            table, off_schema = _to_table(rows, day, city, delays)
            for index, reason in sorted(invalid + off_schema):
                result.add_invalid(first_index + index, reason)
            if table.num_rows:
                writer.write_table(table)
            result.rows += table.num_rows
            first_index += len(rows) + len(invalid)
        if result.rows == 0:
            writer.write_table(PARQUET_SCHEMA.empty_table())
    return result


def _decode_rows(text: bytes) -> tuple[list[tuple[int, UpstreamRow]], list[tuple[int, str]]]:
    """Rows with their index in the slice, and (index, reason) for items that do not fit."""
    try:
        return list(enumerate(_ROWS.decode(text))), []
    except msgspec.ValidationError:
        pass  # some item is off; decode item by item to find which
    except msgspec.DecodeError as exc:
        raise _SliceUndecodable(f"the response is not valid JSON: {exc}") from None
    good: list[tuple[int, UpstreamRow]] = []
    bad: list[tuple[int, str]] = []
    for index, item in enumerate(_RAW_ITEMS.decode(text)):
        try:
            good.append((index, _ROW.decode(item)))
        except msgspec.ValidationError as exc:
            bad.append((index, str(exc)))
    return good, bad


def _to_table(
    rows: list[tuple[int, UpstreamRow]],
    day: dt.date,
    city: CityInfo,
    delays: dict[str, float | None],
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """The valid rows as an Arrow table, and (index, reason) for rows off the date or with a
    delay that is no duration. `delays` caches parsed delays: they repeat a lot."""
    for _, row in rows:
        if row.delay not in delays:
            try:
                delays[row.delay] = parse_duration_seconds(row.delay)
            except ValueError:
                delays[row.delay] = None
    times = [_wall_clock(row.departure_time) for _, row in rows]
    delay_seconds = [delays[row.delay] for _, row in rows]
    keep: list[bool] = []
    invalid: list[tuple[int, str]] = []
    for (index, row), moment, seconds in zip(rows, times, delay_seconds, strict=True):
        if seconds is None:
            reason = f"delay {row.delay!r} is not an ISO 8601 duration"
        elif moment.date() != day:
            reason = f"departure-time {row.departure_time.isoformat()} is not on {day.isoformat()}"
        else:
            keep.append(True)
            continue
        keep.append(False)
        invalid.append((index, reason))
    count = len(rows)
    columns: dict[str, Any] = {
        "departure_time": pa.array(times, pa.timestamp("us")),
        "bus_type": [row.bus_type for _, row in rows],
        "passengers": [row.passengers for _, row in rows],
        "delay_seconds": pa.array(delay_seconds, pa.float64()),
        "accident": [row.accident for _, row in rows],
        "city_id": [city.city_id] * count,
        "city_name": [city.city_name] * count,
        "country": [city.country] * count,
    }
    table = pa.Table.from_pydict(columns, schema=PARQUET_SCHEMA)
    if invalid:
        table = table.filter(pa.array(keep, pa.bool_()))
    return table, invalid


def _wall_clock(moment: dt.datetime) -> dt.datetime:
    """The time as written: an offset, which we never ask for, is dropped, not applied."""
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment
