"""Ingest job records and where they are kept (`jobs/<id>.json` in the store)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum

import msgspec

from busstats.cities import RejectedCity
from busstats.convert import InvalidRow
from busstats.layout import job_index_key, job_key
from busstats.store import ObjectNotFound, Store, Versioned


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


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id))


class JobStore:
    """Saves and loads job records; ids are checked so that no caller text reaches a key.

    Saves are conditional on the version last written, so a process that lost a job (it
    was ended by another process after its lease expired) cannot overwrite its end."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, job: JobRecord) -> str:
        """Save a new record and its index entry; returns the record's version tag."""
        etag = await self._store.put_bytes(
            job_key(job.job_id), msgspec.json.encode(job), if_absent=True
        )
        await self.index(job)
        return etag

    async def index(self, job: JobRecord) -> None:
        """Write the index entry of the job's status, then remove those of earlier statuses
        (see `busstats.jobindex`). Call it after saving a record whose status changed; it
        is idempotent, so a failed call is repaired by calling it again."""
        await self._store.put_bytes(
            job_index_key(job.created_at, job.job_id, job.date, job.status), b""
        )
        rank = STATUS_ORDER[job.status]
        earlier = [
            status
            for status in (JobStatus.QUEUED, JobStatus.RUNNING)
            if STATUS_ORDER[status] < rank
        ]
        if earlier:
            await self._store.delete(
                [job_index_key(job.created_at, job.job_id, job.date, s) for s in earlier]
            )

    async def replace(self, job: JobRecord, etag: str) -> str:
        """Save over the version `etag`; PreconditionFailed if the record changed since."""
        return await self._store.put_bytes(
            job_key(job.job_id), msgspec.json.encode(job), if_match=etag
        )

    async def load_versioned(self, job_id: str) -> tuple[JobRecord, str] | None:
        if not valid_job_id(job_id):
            return None
        try:
            found: Versioned = await self._store.get_versioned(job_key(job_id))
        except ObjectNotFound:
            return None
        return msgspec.json.decode(found.data, type=JobRecord), found.etag

    async def load(self, job_id: str) -> JobRecord | None:
        found = await self.load_versioned(job_id)
        return None if found is None else found[0]
