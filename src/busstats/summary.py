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

import polars as pl

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


def decode_summaries(blobs: list[bytes]) -> pl.DataFrame:
    """Stored summaries as one frame (one read for all: far cheaper than many).

    Summaries written before commits existed lack the commit columns: their cities count,
    and their Parquet files have the key of that layout, `city=<id>.parquet`.
    """
    if not blobs:
        return pl.DataFrame(schema=SUMMARY_SCHEMA)
    frame = pl.read_parquet(
        [io.BytesIO(blob) for blob in blobs], schema=SUMMARY_SCHEMA, missing_columns="insert"
    )
    day = pl.col("date").dt.to_string("%Y-%m-%d")
    return frame.select(SUMMARY_SCHEMA.names()).with_columns(
        counted=pl.col("counted").fill_null(True),
        raw_key=pl.col("raw_key").fill_null(pl.format("raw/date={}/city={}.json", day, "city_id")),
        parquet_key=pl.col("parquet_key").fill_null(
            pl.format("parquet/date={}/city={}.parquet", day, "city_id")
        ),
    )


def partials_from_parquet(target: ScanTarget) -> pl.LazyFrame:
    """Sums per date and country computed from the full data; the date comes from the Hive
    path. Grouping by country rather than city keeps the groups few."""
    return (
        pl.scan_parquet(
            target.sources, hive_partitioning=True, storage_options=target.storage_options
        )
        .group_by("date", "country")
        .agg(
            buses=pl.len().cast(pl.Int64),
            passengers=pl.col("passengers").cast(pl.Int64).sum(),
            # Exact: |delay| <= 8 h < 2**53 us, so the float round-trips. Summed in Int128:
            # a country's cities together may exceed Int64, and so may files from elsewhere.
            delay_microseconds=(pl.col("delay_seconds") * 1e6).round().cast(pl.Int128).sum(),
            accident=pl.col("accident").any(),
        )
    )
