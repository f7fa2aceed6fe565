"""Turn one city's day, a JSON array as upstream sent it, into a typed Parquet file.

The array is decoded in slices of about `SLICE_BYTES` and written in row groups of about
`ROW_GROUP_ROWS`, so memory follows the slice size rather than the file size. Rows that do
not fit the schema are counted and described, never guessed at.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

from busstats.ingest.jsonslices import NotAnArray, array_slices
from busstats.model.cities import City
from busstats.model.jobs import InvalidRow

SLICE_BYTES = 4 * 1024 * 1024
"""JSON decoded at once. Decoding takes about 14 times a slice's size in Python objects and
Arrow buffers (measured), so slices stay small; row groups are larger (ROW_GROUP_ROWS)."""
ROW_GROUP_ROWS = 128 * 1024
MAX_EXAMPLES = 5

# Bounds of a valid row. Every one is far outside what a bus does, so no real row is lost,
# and close enough that no sum can overflow (see MAX_FILE_BYTES).
MAX_PASSENGERS = 10_000
"""The largest buses carry about 300 people; even boardings summed over a long run stay far
below this. Passengers may be written `3` or `3.0` (an integral float); `3.5` is invalid."""
MIN_DELAY = -dt.timedelta(hours=1)
"""An early departure is real and is kept as a negative delay (`-PT5M` counts as -5 minutes
in the mean); an hour early is no longer an early bus but a timetable error."""
MAX_DELAY = dt.timedelta(hours=8)
"""A bus eight hours late did not run in its shift; a larger delay is an error upstream, and
this bound is what keeps the delay sums exact (see MAX_FILE_BYTES)."""

DELAY_BOUNDS = "-PT1H to PT8H"
"""MIN_DELAY to MAX_DELAY as invalid-row reasons spell them."""

MAX_FILE_BYTES = 16 * 1024**3
"""The largest response converted (the service caps bodies well below). With it, no delay
sum can wrap, on any route:

* every valid row spells the five keys `"departure-time":`, `"bus-type":`, `"passengers":`,
  `"delay":` and `"accident":`, 60 bytes before any value (MIN_ROW_BYTES), so a file holds at
  most MAX_ROWS = 16 GiB / 60 = 286,331,153 valid rows;
* each delay is within MIN_DELAY..MAX_DELAY, at most 8 h = 2.88e10 microseconds in size;
* so a city's sum of delays in microseconds is at most 286,331,153 * 2.88e10 = 8.25e18 in
  size, below 2**63 - 1 = 9.22e18: the Int64 sums in ConversionResult, in the summary and in
  `summary.partials_from_parquet` cannot wrap (the last checks these bounds per group and
  sums in Int128 when a file from elsewhere breaks them).
  Passengers: at most 286,331,153 * 10,000 = 2.9e12 a city.
* Countries add cities, any number of them: `stats.country_days` sums in Int128.
"""
MIN_ROW_BYTES = len('"departure-time":"bus-type":"passengers":"delay":"accident":')
MAX_ROWS = MAX_FILE_BYTES // MIN_ROW_BYTES
_MICROSECOND = dt.timedelta(microseconds=1)
_MIN_DELAY_US = MIN_DELAY // _MICROSECOND
_MAX_DELAY_US = MAX_DELAY // _MICROSECOND
_WHOLE_PASSENGERS = msgspec.Meta(ge=0, le=MAX_PASSENGERS)

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


class UpstreamRow(msgspec.Struct, rename="kebab"):
    """One bus as upstream writes it; unknown extra fields are ignored.

    `departure_time` keeps an offset if upstream wrote one; `_to_table` decides what it means.
    """

    departure_time: dt.datetime
    bus_type: str
    passengers: Annotated[int, _WHOLE_PASSENGERS] | Annotated[float, _WHOLE_PASSENGERS]
    delay: str
    accident: bool


class UnusableResponse(Exception):
    """The response as a whole is not a JSON array of rows (HTML, truncated, not JSON...)."""


@dataclass(slots=True)
class ConversionResult:
    """What was stored, with the sums a per-day summary needs, and what was not."""

    rows: int = 0
    passengers: int = 0
    delay_microseconds: int = 0
    """Exact integer sum, so totals do not depend on the order they are added in."""
    accident: bool = False
    invalid_rows: int = 0
    invalid_examples: list[InvalidRow] = field(default_factory=list[InvalidRow])

    def add_rows(self, table: pa.Table, delay_us: pa.Int64Array) -> None:
        self.rows += table.num_rows
        self.passengers += pc.sum(table["passengers"]).as_py() or 0
        self.delay_microseconds += pc.sum(delay_us).as_py() or 0
        self.accident = self.accident or bool(pc.any(table["accident"]).as_py())

    def add_invalid(self, index: int, reason: str) -> None:
        self.invalid_rows += 1
        if len(self.invalid_examples) < MAX_EXAMPLES:
            self.invalid_examples.append(InvalidRow(index, reason))


# pyarrow-stubs' overloads leave compute results partially unknown; treat them as Any here.
pc: Any = pyarrow.compute

_ROWS = msgspec.json.Decoder(list[UpstreamRow])
_ROW = msgspec.json.Decoder(UpstreamRow)
_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])


def duration_microseconds(text: str) -> int:
    """Microseconds in an ISO 8601 duration such as `PT2460S`, `P0D`, `PT1H5M` or `PT3.5S`.

    Raises ValueError for anything else, including years and months, whose length in
    seconds is not defined.
    """
    try:
        return msgspec.convert(text, dt.timedelta) // _MICROSECOND
    except (msgspec.ValidationError, OverflowError) as exc:
        raise ValueError(f"delay {text!r} is not an ISO 8601 duration: {exc}") from None


def parse_duration_seconds(text: str) -> float:
    """Seconds in an ISO 8601 duration; see `duration_microseconds`."""
    return duration_microseconds(text) / 1_000_000


def convert_file(
    raw_path: Path,
    parquet_path: Path,
    city: City,
    day: dt.date,
    *,
    provenance: dict[str, str] | None = None,
    slice_bytes: int = SLICE_BYTES,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> ConversionResult:
    """Convert the upstream file at `raw_path`; write Parquet to `parquet_path`.

    `provenance` goes into the Parquet footer's key-value metadata as `busstats.<key>`, so a
    reader can tell which run and which raw file a Parquet file came from.
    Raises UnusableResponse when the file is not a JSON array (or is larger than
    MAX_FILE_BYTES); then no Parquet is written. A row that is merely wrong never raises: it
    is counted in `invalid_rows` with its reason, and the other rows are kept.

    Memory follows `slice_bytes`, whatever the content: the array is cut only between items
    (see `busstats.jsonslices`), never decoded whole.
    """
    schema = pa.schema(
        PARQUET_SCHEMA,
        metadata={f"busstats.{key}": value for key, value in (provenance or {}).items()},
    )
    size = raw_path.stat().st_size
    if size == 0:
        raise UnusableResponse("the response body is empty")
    if size > MAX_FILE_BYTES:
        raise UnusableResponse(f"the response is {size} bytes, more than {MAX_FILE_BYTES}")
    with (
        raw_path.open("rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf,
        contextlib.closing(array_slices(buf, slice_bytes)) as spans,
    ):
        try:
            return _write_parquet(buf, spans, parquet_path, schema, city, day, row_group_rows)
        except (NotAnArray, _SliceUndecodable) as exc:
            parquet_path.unlink(missing_ok=True)
            raise UnusableResponse(str(exc)) from None


TOO_DEEP = "the response nests JSON arrays or objects too deeply to be rows of buses"


class _SliceUndecodable(Exception):
    pass


def _write_parquet(
    buf: mmap.mmap,
    spans: Iterator[tuple[int, int]],
    parquet_path: Path,
    schema: pa.Schema,
    city: City,
    day: dt.date,
    row_group_rows: int,
) -> ConversionResult:
    result = ConversionResult()
    delays: dict[str, int | str] = {}
    first_index = 0
    with pq.ParquetWriter(parquet_path, schema, compression="zstd") as writer:
        pending: list[pa.Table] = []
        for begin, end in spans:
            rows, positions, invalid = _decode_rows(b"[" + buf[begin:end] + b"]")
            table, delay_us, off_schema = _to_table(rows, day, city, delays)
            invalid += [(positions[i] if positions else i, reason) for i, reason in off_schema]
            for index, reason in sorted(invalid):
                result.add_invalid(first_index + index, reason)
            if table.num_rows:
                pending.append(table)
                result.add_rows(table, delay_us)
            if sum(part.num_rows for part in pending) >= row_group_rows:
                writer.write_table(pa.concat_tables(pending))
                pending.clear()
            first_index += len(rows) + len(invalid) - len(off_schema)
            _release(buf, begin, end)
        if pending or result.rows == 0:
            writer.write_table(
                pa.concat_tables(pending) if pending else PARQUET_SCHEMA.empty_table()
            )
    return result


def _release(buf: mmap.mmap, begin: int, end: int) -> None:
    """Drop a done slice's pages from this process (they stay in the page cache), so the
    resident memory of a large file stays about one slice, not the file."""
    start = begin - begin % mmap.PAGESIZE
    buf.madvise(mmap.MADV_DONTNEED, start, end - start)


def _decode_rows(text: bytes) -> tuple[list[UpstreamRow], list[int] | None, list[tuple[int, str]]]:
    """The rows that fit the schema, their positions in the slice (None: all of them, in
    order), and (position, reason) for the items that do not."""
    try:
        return _ROWS.decode(text), None, []
    except msgspec.ValidationError:
        pass  # some item is off; decode item by item to find which
    except msgspec.DecodeError as exc:
        raise _SliceUndecodable(f"the response is not valid JSON: {exc}") from None
    except RecursionError:
        raise _SliceUndecodable(TOO_DEEP) from None
    rows: list[UpstreamRow] = []
    positions: list[int] = []
    bad: list[tuple[int, str]] = []
    try:
        items = _RAW_ITEMS.decode(text)
    except RecursionError:
        raise _SliceUndecodable(TOO_DEEP) from None
    for index, item in enumerate(items):
        try:
            rows.append(_ROW.decode(item))
            positions.append(index)
        except msgspec.ValidationError as exc:
            bad.append((index, str(exc)))
    return rows, positions, bad


def _to_table(
    rows: list[UpstreamRow], day: dt.date, city: City, delays: dict[str, int | str]
) -> tuple[pa.Table, pa.Int64Array, list[tuple[int, str]]]:
    """The valid rows as an Arrow table, their delays in microseconds, and (index in `rows`,
    reason) for the others. `delays` caches parsed delays (or why they are refused): they
    repeat.

    A row is on `day` when the date of its departure-time *as written* is `day`: upstream
    writes the city's wall clock, and a `Z` or an offset, which we never ask for, is dropped,
    not applied (`2024-05-01T23:30:00-05:00` is on 2024-05-01, 23:30). Converting to UTC
    instead would move a city's evening buses to the next day and lose them.

    Columns are built by Arrow from plain lists; only rows that fail are looked at one by one.
    """
    for text in {row.delay for row in rows}.difference(delays):
        delays[text] = _delay_or_reason(text)
    times = [row.departure_time for row in rows]
    if any(moment.tzinfo is not None for moment in times):
        times = [moment.replace(tzinfo=None) for moment in times]
    departure = pa.array(times, pa.timestamp("us"))
    parsed = [delays[row.delay] for row in rows]
    delay_us = pa.array([None if isinstance(us, str) else us for us in parsed], pa.int64())
    passengers: list[int | None] | list[int | float] = [row.passengers for row in rows]
    if any(isinstance(count, float) for count in passengers):
        passengers = [_whole(count) for count in passengers]
    passengers_column = pa.array(passengers, pa.int64())
    keep = pc.and_(
        pc.and_(
            pc.equal(pc.cast(departure, pa.date32()), pa.scalar(day, pa.date32())),
            pc.is_valid(delay_us),
        ),
        pc.is_valid(passengers_column),
    )
    count = len(rows)
    table = pa.Table.from_arrays(
        [
            departure,
            pa.array([row.bus_type for row in rows], pa.string()),
            passengers_column,
            pc.divide(pc.cast(delay_us, pa.float64()), 1e6),
            pa.array([row.accident for row in rows], pa.bool_()),
            _constant(city.id, pa.int64(), count),
            _constant(city.name, pa.string(), count),
            _constant(city.country, pa.string(), count),
        ],
        schema=PARQUET_SCHEMA,
    )
    if pc.all(keep).as_py() is not False:
        return table, delay_us, []
    invalid: list[tuple[int, str]] = []
    failed: list[int] = pc.indices_nonzero(pc.invert(keep)).to_pylist()
    for index in failed:
        row = rows[index]
        delay = parsed[index]
        if isinstance(delay, str):
            reason = delay
        elif passengers[index] is None:
            reason = f"passengers {row.passengers!r} is not a whole number"
        else:
            reason = f"departure-time {row.departure_time.isoformat()} is not on {day.isoformat()}"
        invalid.append((index, reason))
    return table.filter(keep), delay_us.filter(keep), invalid


def _constant(value: object, type_: pa.DataType, count: int) -> Any:
    nulls: Any = pa.nulls  # the stubs accept only extension types here
    return pc.fill_null(nulls(count, type_), pa.scalar(value, type_))


def _delay_or_reason(text: str) -> int | str:
    """The delay in microseconds, or why it is refused (not a duration, or out of bounds)."""
    try:
        delay = duration_microseconds(text)
    except ValueError:
        return f"delay {text!r} is not an ISO 8601 duration"
    if not _MIN_DELAY_US <= delay <= _MAX_DELAY_US:
        return f"delay {text!r} is outside {DELAY_BOUNDS}"
    return delay


def _whole(count: int | float) -> int | None:
    """An integral float as the int it spells (`3.0` is 3); None for `3.5`."""
    if isinstance(count, int):
        return count
    return int(count) if count.is_integer() else None
