"""Per-date summaries, which are also the dates' commits.

A date's summary (`summary/<date>.parquet`) has one row per city upstream listed when the
date was committed: the city's counts and sums, and the raw and Parquet object they come
from. Writing it, in one PUT, is what commits a run; `/country-stats` reads one small object
per date instead of every city's data, so its cost does not grow with file size.

Both the summaries and a scan of the full data give the same *partials* (sums per date and
city, or per date and country), and `stats` turns partials into the answer, so both routes
agree to the last digit: delays are summed as integer microseconds.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable

import polars as pl

from busstats import convert
from busstats.store import ScanTarget

PARTIAL_SCHEMA = pl.Schema(
    {
        "date": pl.Date,
        "city_id": pl.Int64,
        "city_name": pl.String,
        "country": pl.String,
        "buses": pl.Int64,
        "passengers": pl.Int64,
        "delay_microseconds": pl.Int64,
        "accident": pl.Boolean,
    }
)
SUMMARY_SCHEMA = pl.Schema(
    {
        **PARTIAL_SCHEMA,
        # False for a city upstream listed that has no data (its sums are zero).
        "counted": pl.Boolean,
        "missing_reason": pl.String,
        # The job whose run stored the city's files (an earlier one when this run failed).
        "run_id": pl.String,
        "raw_key": pl.String,
        "parquet_key": pl.String,
        # The job that wrote this summary.
        "commit_id": pl.String,
    }
)
SUM_COLUMNS = ("buses", "passengers", "delay_microseconds", "accident")


def encode_summary(rows: pl.DataFrame, writer: str) -> bytes:
    """A date's summary as Parquet bytes; `writer` (who wrote this version, in the footer as
    `busstats.writer`) makes every write's bytes, and so its version tag, unique."""
    sink = io.BytesIO()
    rows.select(SUMMARY_SCHEMA.names()).cast(dict(SUMMARY_SCHEMA.items())).sort(
        "city_id"
    ).write_parquet(sink, compression="zstd", metadata={"busstats.writer": writer})
    return sink.getvalue()


def decode_summaries(blobs: list[bytes], columns: Iterable[str] | None = None) -> pl.DataFrame:
    """Stored summaries as one frame (one read for all: far cheaper than many); `columns`
    (default: all of SUMMARY_SCHEMA) are the only ones decoded, in SUMMARY_SCHEMA's order,
    so a reader that needs no file keys does not pay for them.

    Summaries written before commits existed lack the commit columns: their cities count,
    and their Parquet files have the key of that layout, `city=<id>.parquet`.

    >>> decode_summaries(blobs, ["date", "country", "buses"]).columns
    ['date', 'country', 'buses']
    """
    wanted = set(SUMMARY_SCHEMA.names() if columns is None else columns)
    unknown = wanted - set(SUMMARY_SCHEMA.names())
    if unknown:
        raise ValueError(f"not summary columns: {sorted(unknown)}")
    # The file keys of an old summary are made from its date and city id.
    key_parts: set[str] = {"date", "city_id"} if wanted & {"raw_key", "parquet_key"} else set()
    needed = wanted | key_parts
    schema = pl.Schema({name: kind for name, kind in SUMMARY_SCHEMA.items() if name in needed})
    if not blobs:
        return pl.DataFrame(schema=schema).select(name for name in schema if name in wanted)
    frame = pl.scan_parquet(
        [io.BytesIO(blob) for blob in blobs],
        schema=schema,
        missing_columns="insert",
        extra_columns="ignore",
    ).collect()
    day = pl.col("date").dt.to_string("%Y-%m-%d")
    defaults = {
        "counted": pl.col("counted").fill_null(True),
        "raw_key": pl.col("raw_key").fill_null(
            pl.format("raw/date={}/city={}.json", day, "city_id")
        ),
        "parquet_key": pl.col("parquet_key").fill_null(
            pl.format("parquet/date={}/city={}.parquet", day, "city_id")
        ),
    }
    return frame.with_columns(expr for name, expr in defaults.items() if name in wanted).select(
        name for name in schema if name in wanted
    )


_ROW_BOUNDS = {
    "passengers_min": 0,
    "passengers_max": convert.MAX_PASSENGERS,
    "delay_seconds_min": convert.MIN_DELAY.total_seconds(),
    "delay_seconds_max": convert.MAX_DELAY.total_seconds(),
}
_MAX_DELAY_US = convert.MAX_DELAY // dt.timedelta(microseconds=1)
# A group of at most MAX_ROWS rows, each within the bounds of a valid row, sums in Int64
# without wrapping (see convert.MAX_FILE_BYTES); the scan checks both before it trusts them.
assert convert.MAX_ROWS * max(_MAX_DELAY_US, convert.MAX_PASSENGERS) < 2**63 - 1


def partials_from_parquet(target: ScanTarget) -> pl.LazyFrame:
    """Sums per date and country computed from the full data; the date comes from the Hive
    path. Grouping by country rather than city keeps the groups few.

    Summed in Int64, which is the fast path and exact when every group has at most
    convert.MAX_ROWS rows, each within the bounds of a valid row: all busstats' own files.
    The same pass takes each group's row count and smallest and largest values; should any
    group be outside those bounds (a file written by something else), the sums are taken
    again in Int128, so they are exact either way and never wrap.

    >>> partials_from_parquet(store.scan_target(keys)).collect().columns
    ['date', 'country', 'buses', 'passengers', 'delay_microseconds', 'accident']
    """
    checked = _sums(target, pl.Int64(), checked=True)
    within = (pl.col("buses") <= convert.MAX_ROWS) & pl.all_horizontal(
        (pl.col(name) >= bound) if name.endswith("_min") else (pl.col(name) <= bound)
        for name, bound in _ROW_BOUNDS.items()
    )
    if checked.select(within.all()).item() is not False:
        return checked.drop(*_ROW_BOUNDS).lazy()
    return _sums(target, pl.Int128(), checked=False).lazy()


def _sums(target: ScanTarget, width: pl.DataType, *, checked: bool) -> pl.DataFrame:
    bounds = (
        [
            pl.col("passengers").min().alias("passengers_min"),
            pl.col("passengers").max().alias("passengers_max"),
            pl.col("delay_seconds").min().alias("delay_seconds_min"),
            pl.col("delay_seconds").max().alias("delay_seconds_max"),
        ]
        if checked
        else []
    )
    return (
        pl.scan_parquet(
            target.sources, hive_partitioning=True, storage_options=target.storage_options
        )
        .group_by("date", "country")
        .agg(
            *bounds,
            buses=pl.len().cast(pl.Int64),
            passengers=pl.col("passengers").cast(width, strict=not checked).sum(),
            # Exact: |delay| <= 8 h < 2**53 us, so the float round-trips. A value too large
            # for Int64 becomes null in the checked pass, whose bounds then fail.
            delay_microseconds=(pl.col("delay_seconds") * 1e6)
            .round()
            .cast(width, strict=not checked)
            .sum(),
            accident=pl.col("accident").any(),
        )
        .collect(engine="streaming")
    )
