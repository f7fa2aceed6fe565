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

import io
from collections.abc import Iterable

import polars as pl

from busstats.storage import ScanTarget

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

    >>> decode_summaries([], ["date", "country", "buses"]).columns  # no summary: no row
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
    # One chunk rather than one per summary: every later step over a year of summaries
    # (365 chunks) was several times slower than the copy into one (0.2 ms).
    frame = (
        pl.scan_parquet(
            [io.BytesIO(blob) for blob in blobs],
            schema=schema,
            missing_columns="insert",
            extra_columns="ignore",
        )
        .collect()
        .rechunk()
    )
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


INT64_MAX = 2**63 - 1


def partials_from_parquet(target: ScanTarget) -> pl.LazyFrame:
    """Sums per date and city computed from the full data; the date comes from the Hive
    path (the country, from the summary: see `stats`).

    A city's day is one file, and its sums are taken in Int64: exact for every file
    busstats writes (see convert.MAX_FILE_BYTES) and much cheaper over millions of rows than
    Int128. The same pass takes each file's largest absolute values: should rows times that
    not fit in Int64 for any file (one written by something else), the sums are taken again
    in Int128, so they are exact either way and never wrap.

    Example (not run: it needs a store holding Parquet files)::

        partials_from_parquet(store.scan_target(keys)).collect().columns
        # -> ['date', 'city_id', 'buses', 'passengers', 'delay_microseconds', 'accident']
    """
    scan = pl.scan_parquet(
        target.sources, hive_partitioning=True, storage_options=target.storage_options
    ).select("date", "city_id", "passengers", "delay_seconds", "accident")
    sums = _sums_per_city(scan, pl.Int64()).collect(engine="streaming")
    if not sums["fits_int64"].all():
        sums = _sums_per_city(scan, pl.Int128()).collect(engine="streaming")
    return sums.drop("fits_int64").lazy()


def _sums_per_city(scan: pl.LazyFrame, width: pl.DataType) -> pl.LazyFrame:
    rows = pl.len().cast(pl.Float64)
    return scan.group_by("date", "city_id").agg(
        buses=pl.len().cast(pl.Int64),
        passengers=pl.col("passengers").cast(width, strict=False).sum(),
        # Exact: |delay| <= 8 h < 2**53 us, so the float round-trips. A value too large for
        # Int64 becomes null here, and fails the check below.
        delay_microseconds=(pl.col("delay_seconds") * 1e6).round().cast(width, strict=False).sum(),
        accident=pl.col("accident").any(),
        # Half of Int64 leaves room for the float's rounding.
        fits_int64=(rows * pl.col("passengers").abs().max() < INT64_MAX / 2)
        & (rows * pl.col("delay_seconds").abs().max() * 1e6 < INT64_MAX / 2),
    )
