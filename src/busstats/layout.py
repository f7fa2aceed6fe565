"""Object keys of the storage layout (see DESIGN.md).

Keys are built only from dates and integer city ids, never from upstream free text,
so a city name can never reach a key or a file path.
"""

from __future__ import annotations

import datetime as dt
import re

RAW = "raw"
PARQUET = "parquet"
SUMMARY = "summary"
JOBS = "jobs"

_CITY_FILE = re.compile(r"(?:^|/)city=(\d+)\.(?:json|parquet)$")


def date_prefix(kind: str, day: dt.date) -> str:
    """The folder holding one kind of file for one date, ending in a slash."""
    return f"{kind}/date={day.isoformat()}/"


def raw_key(day: dt.date, city_id: int) -> str:
    return f"{date_prefix(RAW, day)}city={city_id}.json"


def parquet_key(day: dt.date, city_id: int) -> str:
    return f"{date_prefix(PARQUET, day)}city={city_id}.parquet"


def summary_key(day: dt.date) -> str:
    """One small Parquet file per date: a row per city with its counts and sums, and the
    date as a column, so a glob of `summary/*.parquet` reads as one table."""
    return f"{SUMMARY}/{day.isoformat()}.parquet"


def job_key(job_id: str) -> str:
    return f"{JOBS}/{job_id}.json"


def running_marker_key(job_id: str) -> str:
    """An empty object that exists while a job runs, so a restart finds jobs left behind."""
    return f"{JOBS}/running/{job_id}"


def city_id_of(key: str) -> int | None:
    """The city id a raw or Parquet key names, or None for any other key."""
    match = _CITY_FILE.search(key)
    return int(match.group(1)) if match else None
