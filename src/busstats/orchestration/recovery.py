"""Ending the jobs a dead process left: any process does it, for any process's jobs, never
for a job whose process is alive (its lease is renewed).

A job whose lease expired ends `failed` (its record says its process died, and whether it
had committed: then its data counts); its date is fenced (so a commit still on its way from
the dead process is refused) and swept, unless a live job holds the date (that job sweeps
when it ends). The lease keeper runs `JobRecovery.recover` at start-up and every lease
length, beside the backfills' recovery.
"""

from __future__ import annotations

import datetime as dt
import logging

from busstats.commit.dates import fence_date, read_summary, sweep_date
from busstats.jobs.records import JobStore
from busstats.orchestration.leases import LeaseKeeper
from busstats.storage import PreconditionFailed, Store
from busstats.storage.keys import date_lease_key, job_lease_key

log = logging.getLogger(__name__)

LEFT_BEHIND = "interrupted: the process running this job stopped renewing its lease (it died)"


class JobRecovery:
    """Ends the jobs of dead processes; see the module's docstring."""

    def __init__(self, store: Store, keeper: LeaseKeeper) -> None:
        self._store = store
        self._keeper = keeper
        self._jobs = JobStore(store)

    async def at_start(self) -> None:
        """Remove what writers that died mid-write left in the store (temporary files,
        unfinished uploads), then `recover`; a failure of the first skips the second, which
        would fail the same way."""
        await self._store.remove_leftovers()
        await self.recover()

    async def recover(self) -> None:
        """End the jobs whose lease expired: their process died before recording their end.
        Jobs of live processes (this one or others) are left alone."""
        await self._keeper.recover_expired(job_lease_key(""), self._recover_one)

    async def _recover_one(self, job_id: str) -> bool:
        day = await self._end_left_behind(job_id)
        # the date is busy: that job sweeps it when it ends
        return day is None or await self._sweep_if_free(day, job_id)

    async def _end_left_behind(self, job_id: str) -> dt.date | None:
        """End the job's record (unless it has ended, or keeps changing under us) and index
        it; the job's date, None if there is no record to end."""
        for _ in range(3):
            found = await self._jobs.load_versioned(job_id)
            if found is None:
                return None
            job, etag = found
            if job.finished:
                await self._jobs.index(job)  # its process may have died before indexing it
                return job.date
            summary, _ = await read_summary(self._store, job.date)
            if job_id in summary["commit_id"]:
                job.commit_id = job_id
                job.fail(f"{LEFT_BEHIND}, after it committed the date: its data counts")
            else:
                job.fail(LEFT_BEHIND)
            try:
                await self._jobs.replace(job, etag)
            except PreconditionFailed:
                continue
            await self._jobs.index(job)
            log.warning("job %s was left unfinished by a process that stopped", job_id)
            return job.date
        return None

    async def _sweep_if_free(self, day: dt.date, holder: str) -> bool:
        """Sweep a committed date a dead job wrote to, unless a live job holds it (that job
        sweeps when it ends). A date with no commit keeps the dead job's files: they show
        the date as incomplete until it is ingested again, which sweeps them."""
        async with self._keeper.briefly(date_lease_key(day), holder) as taken:
            if taken and await fence_date(self._store, day, f"recovery of {holder}"):
                await sweep_date(self._store, day)
        return taken
