"""The answer of `GET /country-stats`."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import msgspec


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
    cities_counted: int
    """Cities of this country whose data this row sums (cities with no bus that day included)."""


class IncompleteDate(msgspec.Struct, frozen=True):
    date: dt.date
    cities_listed: int | None
    """Cities upstream listed when the date was committed; None when nothing was committed."""
    cities_counted: int
    reason: str


class CountryStats(msgspec.Struct, frozen=True, rename={"start": "from", "end": "to"}):
    start: dt.date
    end: dt.date
    stats: list[CountryDay]
    dates_without_data: list[dt.date]
    incomplete_dates: list[IncompleteDate]
    """Dates whose committed data misses cities upstream listed, or that have stored data but
    no commit (a first ingest still running or interrupted)."""
