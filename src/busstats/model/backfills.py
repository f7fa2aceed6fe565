"""Backfill records as stored (`backfills/<id>.json`) and answered (`GET /backfills/{id}`)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import msgspec

from busstats.model.jobs import JobStatus


class BackfillStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class BackfillJob(msgspec.Struct, kw_only=True):
    """A job the backfill created; `status` as the backfill last saw it (the job's own
    record at `/jobs/{job_id}` has the details)."""

    date: dt.date
    job_id: str
    status: JobStatus


class BackfillProgress(msgspec.Struct, kw_only=True):
    total: int
    """Dates in the range."""
    done: int
    """Dates whose job succeeded or was partial (its data is committed)."""
    failed: int
    in_progress: int
    """Jobs created and not ended."""
    left: int
    """Dates not done nor failed: no job yet, a job not ended, or one cut short."""


class BackfillRecord(msgspec.Struct, kw_only=True):
    backfill_id: str
    first: dt.date = msgspec.field(name="from")
    last: dt.date = msgspec.field(name="to")
    status: BackfillStatus
    created_at: dt.datetime
    finished_at: dt.datetime | None = None
    reason: str | None = None
    """Why it ended; set on every end."""
    jobs: list[BackfillJob] = msgspec.field(default_factory=list[BackfillJob])
    dates_done: list[dt.date] = msgspec.field(default_factory=list[dt.date])
    dates_failed: list[dt.date] = msgspec.field(default_factory=list[dt.date])
    dates_left: list[dt.date] = msgspec.field(default_factory=list[dt.date])
    """What to ask for again after a cancel or an interruption."""
    progress: BackfillProgress | None = None

    @property
    def status_url(self) -> str:
        return f"/backfills/{self.backfill_id}"

    @property
    def finished(self) -> bool:
        return self.status is not BackfillStatus.RUNNING

    def count(self) -> None:
        ended = {JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED}
        self.progress = BackfillProgress(
            total=(self.last - self.first).days + 1,
            done=len(self.dates_done),
            failed=len(self.dates_failed),
            in_progress=sum(job.status not in ended for job in self.jobs),
            left=len(self.dates_left),
        )


class BackfillAccepted(msgspec.Struct, kw_only=True):
    """The answer to `POST /process-request?from=&to=`."""

    backfill_id: str
    first: dt.date = msgspec.field(name="from")
    last: dt.date = msgspec.field(name="to")
    status: BackfillStatus
    status_url: str
    jobs: list[BackfillJob]
    """The jobs created so far (up to `max_running_jobs`)."""

    @classmethod
    def of(cls, record: BackfillRecord) -> BackfillAccepted:
        return cls(
            backfill_id=record.backfill_id,
            first=record.first,
            last=record.last,
            status=record.status,
            status_url=record.status_url,
            jobs=list(record.jobs),
        )
