"""Ingest job records and where they are kept (`jobs/<id>.json` in the store)."""

from __future__ import annotations

import msgspec

from busstats.model.jobs import (
    STATUS_ORDER,
    JobRecord,
    JobStatus,
    valid_job_id,
)
from busstats.storage import ObjectNotFound, Store, Versioned, decode_stored
from busstats.storage.keys import job_index_key, job_key


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
        return decode_stored(found.data, JobRecord, job_key(job_id)), found.etag

    async def load(self, job_id: str) -> JobRecord | None:
        found = await self.load_versioned(job_id)
        return None if found is None else found[0]
