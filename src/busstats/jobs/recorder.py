"""Writes one job's record: progress coalesced, the end retried until the store takes it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import stamina

from busstats.jobs.records import JobStore
from busstats.model.jobs import JobRecord
from busstats.storage import PreconditionFailed, StoreError, store_down

log = logging.getLogger(__name__)


class RecordTakenOver(Exception):
    """Another process wrote this job's record: it ended the job after its lease expired."""


class JobRecorder:
    """Saves at most one progress update per `interval` however many cities finish, so a
    job's record costs O(cities) writes in all rather than one full rewrite per city.

    Every save replaces exactly the version this recorder wrote last (If-Match)."""

    def __init__(self, jobs: JobStore, job: JobRecord, etag: str, interval: float) -> None:
        self.job = job
        self._jobs = jobs
        self._etag = etag
        self._indexed = job.status
        """The status of the job's index entry (`JobStore.create` wrote the first)."""
        self._interval = interval
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._saver: asyncio.Task[None] | None = None

    def start(self, on_taken_over: Callable[[str], None]) -> None:
        """Start saving progress in the background; `on_taken_over` is told if another
        process ended the job."""
        self._saver = asyncio.create_task(self._keep_saving(on_taken_over))

    async def stop(self) -> None:
        """Stop saving progress. Never cancels a save half-way: a write cancelled in flight
        may still land, and the version this recorder expects would then be wrong."""
        if self._saver is None:
            return
        async with self._lock:
            self._saver.cancel()
        await asyncio.gather(self._saver, return_exceptions=True)

    def changed(self) -> None:
        """Note that the record changed; a save follows within `interval`."""
        self._dirty.set()

    async def save(self) -> None:
        async with self._lock:
            self._dirty.clear()
            try:
                self._etag = await self._jobs.replace(self.job, self._etag)
            except PreconditionFailed as exc:
                raise RecordTakenOver(f"job {self.job.job_id} was ended elsewhere") from exc
            if self.job.status != self._indexed:  # a failure here is retried with the save
                await self._jobs.index(self.job)
                self._indexed = self.job.status

    async def _keep_saving(self, on_taken_over: Callable[[str], None]) -> None:
        """Save progress whenever it changed, at most once an interval. A store that is down
        only delays progress."""
        while True:
            await self._dirty.wait()
            try:
                await self.save()
            except RecordTakenOver as exc:
                on_taken_over(str(exc))
                return
            except StoreError as exc:
                log.warning("progress of job %s not saved yet: %s", self.job.job_id, exc)
                self._dirty.set()
            await asyncio.sleep(self._interval)

    async def save_end(self, give_up_after: float | None) -> bool:
        """Save the finished record, retrying with backoff while the store is down (for ever
        when `give_up_after` is None). False if it could not be saved or was ended elsewhere."""
        try:
            async for attempt in stamina.retry_context(
                on=store_down, attempts=None, timeout=give_up_after, wait_initial=0.2, wait_max=10
            ):
                with attempt:
                    await self.save()
        except RecordTakenOver:
            log.warning("job %s was ended by another process; its end stands", self.job.job_id)
            return False
        except StoreError as exc:
            log.error("could not record the end of job %s: %s", self.job.job_id, exc)
            return False
        return True
