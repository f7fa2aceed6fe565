"""Job records as stored (`jobs/<id>.json`) and answered (`GET /jobs/{id}`, `GET /jobs`)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum

import msgspec

from busstats.core.clock import now
from busstats.model.cities import RejectedCity


class InvalidRow(msgspec.Struct, frozen=True):
    index: int
    """Position of the row in the upstream array, from 0."""
    reason: str


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # some cities failed; the others are stored
    FAILED = "failed"


FINAL = {JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED}


STATUS_ORDER = {JobStatus.QUEUED: 0, JobStatus.RUNNING: 1} | dict.fromkeys(FINAL, 2)
"""A job's status only moves forward in this order; a final status never changes."""


class JobSource(StrEnum):
    """Where a job's data came from."""

    UPSTREAM = "upstream"  # fetched from the reference server (POST /process-request)
    UPLOAD = "upload"  # sent to PUT /raw/{date}/{city_id}


class CityStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class CityReport(msgspec.Struct, kw_only=True):
    city_id: int
    city_name: str
    country: str
    status: CityStatus = CityStatus.PENDING
    rows: int = 0
    """Rows stored in Parquet, i.e. counted by the stats."""
    raw_bytes: int = 0
    parquet_bytes: int = 0
    invalid_rows: int = 0
    invalid_examples: list[InvalidRow] = msgspec.field(default_factory=list[InvalidRow])
    error: str | None = None
    duration_seconds: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in {CityStatus.SUCCEEDED, CityStatus.FAILED}


class Trigger(StrEnum):
    """What submitted a job."""

    REQUEST = "request"  # POST /process-request
    SCHEDULE = "schedule"  # the daily schedule (busstats.schedule)


class JobRecord(msgspec.Struct, kw_only=True):
    job_id: str
    date: dt.date
    status: JobStatus
    created_at: dt.datetime
    trigger: Trigger = Trigger.REQUEST
    """What submitted the job; records from before this field read as `request`."""
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    """Why the job did not fully succeed; None when it did."""
    source: JobSource = JobSource.UPSTREAM
    """Where the data came from; records written before uploads existed decode as upstream."""
    commit_id: str | None = None
    """Set when the job committed the date (its own id); None when it changed nothing."""
    cities: list[CityReport] = msgspec.field(default_factory=list[CityReport])
    rejected_cities: list[RejectedCity] = msgspec.field(default_factory=list[RejectedCity])
    """Entries of upstream's city list that were unusable and skipped; any makes the job partial."""
    backfill_id: str | None = None
    """The backfill that created the job (`/backfills/{id}`); None for a single-date request."""

    @classmethod
    def new(
        cls,
        day: dt.date,
        source: JobSource = JobSource.UPSTREAM,
        backfill_id: str | None = None,
        trigger: Trigger = Trigger.REQUEST,
    ) -> JobRecord:
        return cls(
            job_id=uuid.uuid4().hex,
            date=day,
            status=JobStatus.QUEUED,
            created_at=now(),
            source=source,
            backfill_id=backfill_id,
            trigger=trigger,
        )

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    def fail(self, reason: str) -> None:
        """End the job as failed, whatever its cities did; unfinished cities fail with it."""
        self._end_unfinished_cities(reason)
        self.status = JobStatus.FAILED
        self.error = reason
        self.finished_at = now()

    def conclude(self) -> None:
        """Set the overall status from the cities' outcomes and stamp the end time."""
        self._end_unfinished_cities("the job ended before this city was done")
        succeeded = sum(city.status is CityStatus.SUCCEEDED for city in self.cities)
        failed = len(self.cities) - succeeded
        if succeeded == 0:
            self.status = JobStatus.FAILED
            if self.error is None:
                if self.cities:
                    self.error = "no city could be ingested"
                elif self.rejected_cities:
                    self.error = "no usable city listed; see rejected_cities"
                else:
                    self.error = "no cities listed"
        elif failed or self.error is not None or self.rejected_cities:
            self.status = JobStatus.PARTIAL
            if self.error is None:
                self.error = (
                    f"{failed} of {len(self.cities)} cities failed"
                    if failed
                    else f"{len(self.rejected_cities)} entries of the city list were unusable"
                )
        else:
            self.status = JobStatus.SUCCEEDED
        self.finished_at = now()

    def _end_unfinished_cities(self, reason: str) -> None:
        for city in self.cities:
            if not city.finished:
                city.status = CityStatus.FAILED
                city.error = city.error or f"not finished: {reason}"


_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id))


class JobSummary(msgspec.Struct, kw_only=True):
    """A job as the list shows it; its record at `status_url` has the rest."""

    job_id: str
    date: dt.date
    status: JobStatus
    created_at: dt.datetime
    status_url: str


class JobList(msgspec.Struct, kw_only=True):
    """A page of `GET /jobs`."""

    jobs: list[JobSummary]
    next: str | None
    """The URL of the next page, None on the last one."""
