"""Per-date summaries: one row per city with the sums the stats need.

`/country-stats` reads one small object per date instead of every city's data, so its cost
does not grow with file size. Both the summaries and a scan of the full data give the same
*partials* (one row per date and city), and `stats.country_days` turns partials into the
answer, so both routes agree to the last digit: delays are summed as integer microseconds.
"""

from __future__ import annotations

import datetime as dt
import io

import polars as pl

from busstats.convert import ConversionResult
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


def city_partial(
    day: dt.date, city_id: int, city_name: str, country: str, result: ConversionResult
) -> pl.DataFrame:
    """The summary row of one city, from what its conversion counted."""
    row = {
        "date": day,
        "city_id": city_id,
        "city_name": city_name,
        "country": country,
        "buses": result.rows,
        "passengers": result.passengers,
        "delay_microseconds": result.delay_microseconds,
        "accident": result.accident,
    }
    return pl.DataFrame([row], schema=PARTIAL_SCHEMA)


def encode_summary(partials: pl.DataFrame) -> bytes:
    """A date's summary as Parquet bytes: its cities' partials."""
    sink = io.BytesIO()
    partials.select(PARTIAL_SCHEMA.names()).sort("city_id").write_parquet(sink, compression="zstd")
    return sink.getvalue()


def decode_summaries(blobs: list[bytes]) -> pl.DataFrame:
    """Stored summaries as one frame of partials (one read for all: far cheaper than many)."""
    if not blobs:
        return pl.DataFrame(schema=PARTIAL_SCHEMA)
    frame = pl.read_parquet([io.BytesIO(blob) for blob in blobs])
    return frame.select(PARTIAL_SCHEMA.names()).cast(dict(PARTIAL_SCHEMA.items()))


def partials_from_parquet(target: ScanTarget) -> pl.LazyFrame:
    """Partials computed from the full data; the date comes from the Hive path."""
    return (
        pl.scan_parquet(
            target.sources, hive_partitioning=True, storage_options=target.storage_options
        )
        .group_by("date", "city_id", "city_name", "country")
        .agg(
            buses=pl.len().cast(pl.Int64),
            passengers=pl.col("passengers").cast(pl.Int64).sum(),
            # Exact: |delay| <= 8 h < 2**53 us, so the float round-trips. Summed in Int128, then
            # a checked cast: bounded rows cannot exceed Int64 (convert.MAX_FILE_BYTES), and a
            # file from elsewhere that does fails loudly instead of wrapping.
            delay_microseconds=(pl.col("delay_seconds") * 1e6)
            .round()
            .cast(pl.Int128)
            .sum()
            .cast(pl.Int64),
            accident=pl.col("accident").any(),
        )
    )
