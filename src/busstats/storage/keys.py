"""Object keys of the storage layout (docs/storage.md).

Keys are built only from dates, integer city ids and run ids (a job's hex id), never from
upstream free text, so a city name can never reach a key or a file path. A run writes its
files under keys of its own and never overwrites another run's: the date's summary, written
in one PUT, is the commit that says which run's files count.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

RAW = "raw"
PARQUET = "parquet"
SUMMARY = "summary"
JOBS = "jobs"
LEASES = "leases"

_CITY_FILE = re.compile(r"(?:^|/)city=(\d+)(?:\.([0-9a-f]{32}))?\.(?:json|parquet)$")
"""A run's city file; files of the layout before commits existed have no run id."""
_SUMMARY_FILE = re.compile(r"^summary/(\d{4}-\d{2}-\d{2})\.parquet$")


class CityFile(NamedTuple):
    city_id: int
    run_id: str | None


def date_prefix(kind: str, day: dt.date) -> str:
    """The folder holding one kind of file for one date, ending in a slash."""
    return f"{kind}/date={day.isoformat()}/"


def raw_key(day: dt.date, city_id: int, run_id: str) -> str:
    """The bytes one run received for one city and date."""
    return f"{date_prefix(RAW, day)}city={city_id}.{run_id}.json"


def parquet_key(day: dt.date, city_id: int, run_id: str) -> str:
    """One run's typed copy of a city's day; the Hive folder carries the date."""
    return f"{date_prefix(PARQUET, day)}city={city_id}.{run_id}.parquet"


def summary_key(day: dt.date) -> str:
    """The date's commit: a small Parquet file with a row per city (its counts and sums, and
    which raw and Parquet object they come from). `summary/*.parquet` reads as one table."""
    return f"{SUMMARY}/{day.isoformat()}.parquet"


def job_key(job_id: str) -> str:
    return f"{JOBS}/{job_id}.json"


JOB_INDEX = f"{JOBS}/index/"
"""Empty objects whose keys list the jobs newest first (see `busstats.jobindex`)."""
_NEWEST_FIRST = 10**16 - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def job_position(created_at: dt.datetime, job_id: str) -> str:
    """Where a job sorts in the index: its creation time in microseconds, counted down
    from 10**16 - 1 so that newer sorts first (16 digits, until the year 2286), then its id."""
    return f"{_NEWEST_FIRST - (created_at - _EPOCH) // _MICROSECOND:016d}-{job_id}"


def created_at_of_position(position: str) -> dt.datetime:
    """The creation time a `job_position` encodes, to the microsecond."""
    return _EPOCH + (_NEWEST_FIRST - int(position[:16])) * _MICROSECOND


def job_index_key(created_at: dt.datetime, job_id: str, day: dt.date, status: str) -> str:
    """One index entry of a job: where it sorts, its date and a status it had."""
    return f"{JOB_INDEX}{job_position(created_at, job_id)}.{day.isoformat()}.{status}"


def job_lease_key(job_id: str) -> str:
    """The lease of an unfinished job: it exists from submission to the job's recorded end,
    and its process renews it; an expired one tells any process the job was left behind."""
    return f"{JOBS}/running/{job_id}"


BACKFILLS = "backfills"


def backfill_key(backfill_id: str) -> str:
    """A backfill's record: its range, the jobs it created and its progress."""
    return f"{BACKFILLS}/{backfill_id}.json"


def backfill_lease_key(backfill_id: str) -> str:
    """The lease of an unfinished backfill (one per backfill, whatever its length)."""
    return f"{BACKFILLS}/running/{backfill_id}"


def date_lease_key(day: dt.date) -> str:
    """Held by the one job that may write and commit a date, across all processes."""
    return f"{LEASES}/date={day.isoformat()}"


def city_file_of(key: str) -> CityFile | None:
    """The city and run a raw or Parquet key names, or None for any other key."""
    match = _CITY_FILE.search(key)
    return CityFile(int(match.group(1)), match.group(2)) if match else None


def date_of_summary(key: str) -> dt.date | None:
    match = _SUMMARY_FILE.match(key)
    return dt.date.fromisoformat(match.group(1)) if match else None
