"""Per-country, per-day statistics over a date range.

By default from the per-date summaries (one object per date); dates without a summary, and
`source=full`, are computed from the Parquet data of exactly those dates.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
from typing import TypeVar

import msgspec
import polars as pl

from busstats.layout import PARQUET, date_prefix, summary_key
from busstats.store import ObjectNotFound, Store, StoreError
from busstats.summary import decode_summaries, partials_from_parquet

STORE_CONCURRENCY = 32
READ_ATTEMPTS = 3
T = TypeVar("T")
MICROSECONDS_PER_MINUTE = 60_000_000


class Source(StrEnum):
    SUMMARY = "summary"
    FULL = "full"


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


async def country_stats(
    store: Store, start: dt.date, end: dt.date, source: Source = Source.SUMMARY
) -> CountryStats:
    days = days_between(start, end)
    summaries: dict[dt.date, bytes] = {}
    if source is Source.SUMMARY:
        summaries = await _summaries(store, days)
    unsummarised = [day for day in days if day not in summaries]
    rows = await _read(store, summaries, unsummarised)
    with_data = {row.date for row in rows}
    return CountryStats(
        start=start,
        end=end,
        stats=rows,
        dates_without_data=[day for day in days if day not in with_data],
    )


async def _read(
    store: Store, summaries: dict[dt.date, bytes], unsummarised: list[dt.date]
) -> list[CountryDay]:
    """The answer from the summaries plus the Parquet files of the other dates.

    A date being re-ingested replaces its files while we read them: then list again and retry.
    """
    for attempt in range(1, READ_ATTEMPTS + 1):
        files = await _parquet_files(store, unsummarised)
        try:
            return await asyncio.to_thread(_answer, store, summaries, files)
        except (pl.exceptions.PolarsError, OSError) as exc:
            if attempt == READ_ATTEMPTS:
                raise StoreError(f"could not read the data: {exc}") from exc
    raise AssertionError("unreachable: the last attempt returns or raises")


def _answer(store: Store, summaries: dict[dt.date, bytes], files: list[str]) -> list[CountryDay]:
    partials = [decode_summaries(list(summaries.values())).lazy()]
    if files:
        partials.append(partials_from_parquet(store.scan_target(files)))
    return country_days(pl.concat(partials, how="diagonal_relaxed"))


def country_days(partials: pl.LazyFrame) -> list[CountryDay]:
    """Partials (a row per date and city) summed per date and country."""
    frame = (
        partials.group_by("date", "country")
        .agg(
            # Int128: each city's sums fit Int64 (convert.MAX_FILE_BYTES); their total over
            # any number of cities might not.
            buses_started=pl.col("buses").cast(pl.Int128).sum(),
            total_passengers=pl.col("passengers").cast(pl.Int128).sum(),
            accident=pl.col("accident").any(),
            delay_microseconds=pl.col("delay_microseconds").cast(pl.Int128).sum(),
        )
        .filter(pl.col("buses_started") > 0)
        .with_columns(
            average_delay_minutes=pl.col("delay_microseconds")
            / pl.col("buses_started")
            / MICROSECONDS_PER_MINUTE
        )
        .drop("delay_microseconds")
        .sort("date", "country")
        .collect(engine="streaming")
    )
    return [CountryDay(**row) for row in frame.iter_rows(named=True)]


async def _summaries(store: Store, days: list[dt.date]) -> dict[dt.date, bytes]:
    """The summary of each date that has one: one GET per date."""

    async def fetch(day: dt.date) -> bytes | None:
        try:
            return await store.get_bytes(summary_key(day))
        except ObjectNotFound:
            return None

    found = await _bounded(fetch, days)
    return {day: data for day, data in zip(days, found, strict=True) if data is not None}


async def _parquet_files(store: Store, days: list[dt.date]) -> list[str]:
    """The Parquet keys of exactly these dates: one listing per date, never the whole bucket."""
    listings = await _bounded(lambda day: store.list_keys(date_prefix(PARQUET, day)), days)
    return [key for keys in listings for key in keys if key.endswith(".parquet")]


async def _bounded(call: Callable[[dt.date], Awaitable[T]], days: Iterable[dt.date]) -> list[T]:
    slots = asyncio.Semaphore(STORE_CONCURRENCY)

    async def one(day: dt.date) -> T:
        async with slots:
            return await call(day)

    return await asyncio.gather(*(one(day) for day in days))
