"""Runs ingest jobs in the background of the API process."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict

from busstats import logs, metrics
from busstats.config import Settings
from busstats.ingest import Ingest
from busstats.jobs import JobRecord, JobStatus, JobStore
from busstats.store import Store, StoreError

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the service stopped before the job finished"
LEFT_BEHIND = "interrupted: the service ended before the job finished (found at start-up)"
UNFINISHED = {JobStatus.QUEUED, JobStatus.RUNNING}


class JobRunner:
    """Starts jobs as tasks; jobs for the same date run one after the other, never interleaved."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self.jobs = JobStore(store)
        self._tasks: set[asyncio.Task[None]] = set()
        self._date_locks: defaultdict[dt.date, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def submit(self, day: dt.date) -> JobRecord:
        """Record a queued job and start it; returns once the record is saved."""
        job = JobRecord.new(day)
        await self.jobs.mark_running(job.job_id)
        await self.jobs.save(job)
        task = asyncio.create_task(self._run(job), name=f"ingest {day} {job.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: JobRecord) -> None:
        try:
            async with self._date_locks[job.date]:
                await Ingest(job, self._store, self.jobs, self._settings).run()
        except asyncio.CancelledError:
            job.fail(INTERRUPTED)
            if await self._save_quietly(job):
                await self._unmark_quietly(job.job_id)
            raise
        except StoreError as exc:
            log.error("job %s could not record its progress: %s", job.job_id, exc)
        except Exception:
            log.exception("job %s failed unexpectedly", job.job_id)
            job.fail("internal error; see the service log")
            if await self._save_quietly(job):
                await self._unmark_quietly(job.job_id)
        else:
            await self._unmark_quietly(job.job_id)
        finally:
            metrics.record_job(job.status, logs.job_seconds(job))
            logs.log_job_finished(job)

    async def recover(self) -> None:
        """Fail the jobs a previous process left unfinished, so none stays `running` forever.

        Assumes one API process per store: it would also fail another live process's jobs.
        """
        for job_id in await self.jobs.marked_running():
            job = await self.jobs.load(job_id)
            if job is not None and job.status in UNFINISHED:
                job.fail(LEFT_BEHIND)
                await self.jobs.save(job)
                log.warning("job %s was left unfinished by an earlier process", job_id)
            await self.jobs.unmark_running(job_id)

    async def _unmark_quietly(self, job_id: str) -> None:
        try:
            await self.jobs.unmark_running(job_id)
        except StoreError as exc:
            log.error("could not clear the running mark of job %s: %s", job_id, exc)

    async def _save_quietly(self, job: JobRecord) -> bool:
        try:
            await self.jobs.save(job)
        except StoreError as exc:
            log.error("could not record the end of job %s: %s", job.job_id, exc)
            return False
        return True

    async def close(self) -> None:
        """Cancel running jobs; each records itself as interrupted."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
