"""Ingest job records and where they are kept (`jobs/<id>.json` in the store)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum

import msgspec

from busstats.cities import RejectedCity
from busstats.convert import InvalidRow
from busstats.layout import job_key, running_marker_key
from busstats.store import ObjectNotFound, Store


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # some cities failed; the others are stored
    FAILED = "failed"


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


class JobRecord(msgspec.Struct, kw_only=True):
    job_id: str
    date: dt.date
    status: JobStatus
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    cities: list[CityReport] = msgspec.field(default_factory=list[CityReport])
    rejected_cities: list[RejectedCity] = msgspec.field(default_factory=list[RejectedCity])
    """Entries of upstream's city list that were unusable and skipped; any makes the job partial."""

    @classmethod
    def new(cls, day: dt.date) -> JobRecord:
        return cls(job_id=uuid.uuid4().hex, date=day, status=JobStatus.QUEUED, created_at=now())

    def fail(self, reason: str) -> None:
        """End the job as failed, whatever its cities did."""
        self.status = JobStatus.FAILED
        self.error = reason
        self.finished_at = now()

    def conclude(self) -> None:
        """Set the overall status from the cities' outcomes and stamp the end time."""
        succeeded = sum(city.status is CityStatus.SUCCEEDED for city in self.cities)
        if succeeded == 0:
            self.status = JobStatus.FAILED
            if self.error is None:
                if self.cities:
                    self.error = "no city could be ingested"
                elif self.rejected_cities:
                    self.error = "no usable city listed; see rejected_cities"
                else:
                    self.error = "no cities listed"
        elif succeeded < len(self.cities) or self.error is not None or self.rejected_cities:
            self.status = JobStatus.PARTIAL
        else:
            self.status = JobStatus.SUCCEEDED
        self.finished_at = now()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class JobStore:
    """Saves and loads job records; ids are checked so that no caller text reaches a key."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def mark_running(self, job_id: str) -> None:
        await self._store.put_bytes(running_marker_key(job_id), b"")

    async def unmark_running(self, job_id: str) -> None:
        await self._store.delete([running_marker_key(job_id)])

    async def marked_running(self) -> list[str]:
        """Ids of jobs whose process may have died before they finished."""
        prefix = running_marker_key("")
        return [key.removeprefix(prefix) for key in await self._store.list_keys(prefix)]

    async def save(self, job: JobRecord) -> None:
        await self._store.put_bytes(job_key(job.job_id), msgspec.json.encode(job))

    async def load(self, job_id: str) -> JobRecord | None:
        if not _JOB_ID.match(job_id):
            return None
        try:
            data = await self._store.get_bytes(job_key(job_id))
        except ObjectNotFound:
            return None
        return msgspec.json.decode(data, type=JobRecord)
