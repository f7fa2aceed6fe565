"""Listing jobs newest first, filtered and paged, from an index of empty objects.

Each job has, beside its record `jobs/<id>.json`, one empty object per status it has been
indexed with:

    jobs/index/<newest-first time>-<job_id>.<date>.<status>

The key alone carries everything the list shows and filters on (creation time, id, date,
status), so a page costs LIST requests (1,000 keys each) and never a GET of a record.

The status changes after submission. `JobStore.index` writes the new entry after the record
is saved, then deletes the entries of earlier statuses; that is not atomic, and a stalled
process may even write a stale `running` entry after another process ended its job. But a
status only moves forward (queued, running, then a final one that never changes), and a
job's entries sit side by side in the listing (they share its position), so a reader takes
the most advanced of them. A process that dies between saving a record and indexing it
leaves the job's lease behind; recovery, in any process, indexes the job when it ends it.

Example (not run: it needs a store holding jobs)::

    page = await list_jobs(store, JobFilter(status=JobStatus.FAILED), limit=20)
    [(job.date, job.status) for job in page.jobs][:1]
    # -> [(datetime.date(2024, 5, 1), <JobStatus.FAILED: 'failed'>)]
    page.next_cursor is None  # else pass it back as `after` for the next page
    # -> True
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass
from itertools import groupby

from busstats.model.jobs import STATUS_ORDER, JobStatus, JobSummary
from busstats.storage import Store
from busstats.storage.keys import JOB_INDEX, created_at_of_position

LIST_CHUNK = 1000
"""Keys asked for per LIST (S3's page size)."""
SCAN_LIMIT = 10_000
"""Index entries one page may look through; past that the page ends short, with a cursor."""

_POSITION = r"\d{16}-[0-9a-f]{32}"
_ENTRY = re.compile(
    rf"^{re.escape(JOB_INDEX)}(?P<position>{_POSITION})\.(?P<date>\d{{4}}-\d{{2}}-\d{{2}})"
    rf"\.(?P<status>[a-z]+)$"
)
_CURSOR = re.compile(rf"^{_POSITION}$")
_AFTER_EVERY_ENTRY = "~"
"""Sorts after `.<date>.<status>`: a position followed by this is past all its entries."""


class BadCursor(ValueError):
    """A cursor this API did not hand out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs to list: by the date they ingest (`first` to `last`, both included) and
    by status; None means any."""

    first: dt.date | None = None
    last: dt.date | None = None
    status: JobStatus | None = None

    def keeps(self, job: JobSummary) -> bool:
        return (
            (self.first is None or job.date >= self.first)
            and (self.last is None or job.date <= self.last)
            and (self.status is None or job.status is self.status)
        )


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[JobSummary]
    next_cursor: str | None
    """Where the next page starts; None when no job is left."""


@dataclass(frozen=True, slots=True)
class _Entry:
    position: str
    date: dt.date
    status: JobStatus


def encode_cursor(position: str) -> str:
    """An opaque cursor for the position of the last job a page showed."""
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The position a cursor names; BadCursor for anything `encode_cursor` did not make."""
    try:
        position = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(cursor) from None
    if not _CURSOR.fullmatch(position) or encode_cursor(position) != cursor:
        raise BadCursor(cursor)
    return position


async def list_jobs(
    store: Store,
    keep: JobFilter,
    limit: int,
    after: str | None = None,
    scan_limit: int = SCAN_LIMIT,
) -> JobPage:
    """Up to `limit` jobs that `keep` keeps, newest first, starting after the cursor `after`.

    A page looks through at most about `scan_limit` index entries: a filter that few jobs
    pass may end a page short of `limit`, with a cursor to go on from. Only a page with no
    cursor is the last one.
    """
    position = None if after is None else decode_cursor(after)
    start = None if position is None else _past(position)
    found: list[tuple[str, JobSummary]] = []
    scanned = 0
    while True:
        keys = await store.list_keys(JOB_INDEX, start_after=start, limit=LIST_CHUNK)
        scanned += len(keys)
        exhausted = len(keys) < LIST_CHUNK
        jobs = [list(group) for _, group in groupby(_entries(keys), key=lambda e: e.position)]
        if not exhausted and len(jobs) > 1:
            jobs.pop()  # its other entries may be in the next chunk
        start = keys[-1] if keys and not jobs else start  # nothing but foreign keys
        for entries in jobs:
            position = entries[0].position
            start = _past(position)
            job = _summary(entries)
            if keep.keeps(job):
                found.append((position, job))
                if len(found) > limit:  # one more than asked: another page exists
                    return JobPage([job for _, job in found[:limit]], encode_cursor(found[-2][0]))
        if exhausted:
            return JobPage([job for _, job in found], None)
        if scanned >= scan_limit and position is not None:
            return JobPage([job for _, job in found], encode_cursor(position))


def _past(position: str) -> str:
    """A `start_after` that skips every entry of the job at `position`."""
    return f"{JOB_INDEX}{position}{_AFTER_EVERY_ENTRY}"


def _entries(keys: list[str]) -> list[_Entry]:
    entries: list[_Entry] = []
    for key in keys:
        match = _ENTRY.match(key)
        if match is None:
            continue  # not an entry this version writes
        try:
            status = JobStatus(match["status"])
            day = dt.date.fromisoformat(match["date"])
        except ValueError:
            continue
        entries.append(_Entry(match["position"], day, status))
    return entries


def _summary(entries: list[_Entry]) -> JobSummary:
    """A job from its entries: the most advanced status is the current one."""
    latest = max(entries, key=lambda entry: STATUS_ORDER[entry.status])
    job_id = latest.position.split("-", 1)[1]
    return JobSummary(
        job_id=job_id,
        date=latest.date,
        status=latest.status,
        created_at=created_at_of_position(latest.position),
        status_url=f"/jobs/{job_id}",
    )
