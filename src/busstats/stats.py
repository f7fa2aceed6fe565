"""Per-country, per-day statistics over the Parquet partitions of a date range."""

from __future__ import annotations

import asyncio
import datetime as dt

import msgspec
import polars as pl

from busstats.layout import PARQUET, date_prefix
from busstats.store import ScanTarget, Store, StoreError

LISTING_CONCURRENCY = 16


class CountryDay(msgspec.Struct, frozen=True):
    country: str
    date: dt.date
    buses_started: int
    total_passengers: int
    accident: bool
    average_delay_minutes: float
    """Mean over every bus of the country and day (not a mean of city means)."""


class CountryStats(msgspec.Struct, frozen=True, rename={"start": "from", "end": "to"}):
    start: dt.date
    end: dt.date
    stats: list[CountryDay]
    dates_without_data: list[dt.date]


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every date from `start` to `end`, both included."""
    return [start + dt.timedelta(days=offset) for offset in range((end - start).days + 1)]


async def country_stats(store: Store, start: dt.date, end: dt.date) -> CountryStats:
    days = days_between(start, end)
    files = await _parquet_files(store, days)
    rows: list[CountryDay] = []
    if files:
        try:
            rows = await asyncio.to_thread(aggregate, store.scan_target(files))
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise StoreError(f"could not read the Parquet files of {start}..{end}: {exc}") from exc
    with_data = {row.date for row in rows}
    return CountryStats(
        start=start,
        end=end,
        stats=rows,
        dates_without_data=[day for day in days if day not in with_data],
    )


async def _parquet_files(store: Store, days: list[dt.date]) -> list[str]:
    """The Parquet keys of exactly these dates: one listing per date, never the whole bucket."""
    slots = asyncio.Semaphore(LISTING_CONCURRENCY)

    async def listing(day: dt.date) -> list[str]:
        async with slots:
            return await store.list_keys(date_prefix(PARQUET, day))

    listings = await asyncio.gather(*(listing(day) for day in days))
    return [key for keys in listings for key in keys if key.endswith(".parquet")]


def aggregate(target: ScanTarget) -> list[CountryDay]:
    """Group the rows of the files by country and date (the date comes from the path)."""
    frame = (
        pl.scan_parquet(
            target.sources,
            hive_partitioning=True,
            storage_options=target.storage_options,
        )
        .group_by("country", "date")
        .agg(
            buses_started=pl.len(),
            total_passengers=pl.col("passengers").cast(pl.Int64).sum(),
            accident=pl.col("accident").any(),
            average_delay_minutes=pl.col("delay_seconds").mean() / 60,
        )
        .sort("date", "country")
        .collect(engine="streaming")
    )
    return [CountryDay(**row) for row in frame.iter_rows(named=True)]
