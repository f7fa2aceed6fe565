"""The job lifecycle: runs jobs in the background of the process, safely beside other
processes.

Each job holds a lease (`jobs/running/<id>`) from submission to its recorded end, and while
it runs, the lease of its date; the process's `LeaseKeeper` renews both every few seconds. A
job whose lease expired was left behind by a process that died: any process ends it
(`busstats.orchestration.recovery`, run by the keeper at start-up and periodically), never
a job whose process is alive. What a job does is handed in (`JobWork`): an ingest
(`busstats.orchestration.ingest_job`) or an upload (`busstats.orchestration.uploads`); the
runner knows neither the reference server nor the executor.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from busstats.commit.dates import drop_placeholder, sweep_date
from busstats.core import metrics
from busstats.core.errors import NotFound
from busstats.core.settings import Settings
from busstats.jobs.logs import job_seconds, log_job_finished
from busstats.jobs.recorder import JobRecorder, RecordTakenOver
from busstats.jobs.records import JobStore
from busstats.model.jobs import JobRecord, Trigger
from busstats.orchestration.leases import HeldLease, LeaseKeeper
from busstats.storage import PreconditionFailed, Store, StoreError
from busstats.storage.keys import date_lease_key, job_lease_key
from busstats.storage.leases import LeaseLost

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the service stopped before the job finished"
PROGRESS_SAVE_SECONDS = 1.0
SHUTDOWN_SAVE_SECONDS = 4.0
ANSWER_SECONDS = 5.0
"""How long `run_to_end` waits for a job's end to be recorded once the end is known: with
the store down, the caller is answered and the recording goes on in the background."""
CANCELLED = "cancelled"
COMMITTED = "has committed and is finishing; its data counts"


ConfirmLease = Callable[[], Awaitable[None]]
"""Renews the job's date lease now; raises LeaseLost if another process took it."""


class JobWork(Protocol):
    """What a job does under its date's lease: fetch every city, or store an upload. It
    sets the job's status and counts on `recorder.job` and raises only for a failure of the
    whole job."""

    async def run(self) -> None: ...


WorkFactory = Callable[[JobRecorder, ConfirmLease], JobWork]
"""Makes a job's work, once the job holds its date's lease."""


class CannotCancel(Exception):
    """The job cannot be cancelled by this process: it has ended, or another process runs it
    (the message says which)."""

    @classmethod
    def run_elsewhere(cls, what: str, holder: str | None) -> CannotCancel:
        """`what` (a job, a backfill) is run by the process `holder` names, or by one that
        stopped (no holder): where the cancel must go instead."""
        return cls(
            f"{what} is run by another process ({holder or 'a process that has stopped'});"
            " send the cancel to that process, or wait for its lease to expire if it has died"
        )


@dataclass(eq=False)
class RunningJob:
    recorder: JobRecorder
    job_lease: HeldLease
    date_lease: HeldLease | None = None
    """None until taken, and again once another process took it: never swept nor released."""
    abort_reason: str | None = None
    task: asyncio.Task[None] | None = None
    finishing: bool = False
    """Set once the job records its end: from then on nothing may cancel it."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the job's end is known (`finishing`), before it is recorded."""

    @property
    def job(self) -> JobRecord:
        return self.recorder.job

    @property
    def committed(self) -> bool:
        """The job's commit is written: from then on nothing may cancel it (its data counts
        whatever a cancel would say)."""
        return self.job.commit_id is not None

    def abort(self, reason: str) -> None:
        """Stop the job's remaining work; it ends `failed` with `reason`. Nothing once it
        has committed or is recording its end."""
        if self.abort_reason is None and not self.finishing and not self.committed:
            self.abort_reason = reason
            if self.task is not None:
                self.task.cancel()

    def lost(self, exc: LeaseLost) -> None:
        """The keeper found one of the job's leases taken by another process."""
        self.abort(f"stopped: another process took this job over ({exc})")

    def lost_date(self, exc: LeaseLost) -> None:
        """The keeper found the job's date lease taken: never sweep nor release it."""
        self.date_lease = None
        self.lost(exc)


class JobRunner:
    """Starts jobs as tasks; jobs for the same date run one after the other, across processes.

    `ingest` makes the work of the jobs `submit` starts; the keeper renews their leases."""

    def __init__(
        self, store: Store, settings: Settings, keeper: LeaseKeeper, ingest: WorkFactory
    ) -> None:
        self._store = store
        self._settings = settings
        self._keeper = keeper
        self._ingest = ingest
        self.jobs = JobStore(store)
        self._running: dict[str, RunningJob] = {}
        self._date_locks: defaultdict[dt.date, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._job_slots = asyncio.Semaphore(settings.max_running_jobs)
        """Jobs beyond `max_running_jobs` wait here, `queued`, before taking their date."""
        self._closing = False

    async def find(self, job_id: str) -> JobRecord | None:
        """A job as it stands: from memory while this process runs it (no read of a record
        that grows with its cities), else as recorded in the store, so that an end is shown
        only once it is recorded."""
        running = self._running.get(job_id)
        if running is not None and not running.job.finished:
            return running.job
        return await self.jobs.load(job_id)

    async def submit(
        self, day: dt.date, backfill_id: str | None = None, trigger: Trigger = Trigger.REQUEST
    ) -> JobRecord:
        """Record a queued job and start it; returns once the record is saved. It runs when
        one of the process's `max_running_jobs` slots is free."""
        job = JobRecord.new(day, backfill_id=backfill_id, trigger=trigger)
        await self._start(job, lambda running: self._run(running, self._ingest), "ingest")
        return job

    async def _start(
        self, job: JobRecord, run: Callable[[RunningJob], Coroutine[Any, Any, None]], kind: str
    ) -> RunningJob:
        """Take the new job's lease, record it, and start `run` as its task; a job created
        while the service stops gets no task and ends interrupted."""
        lease = await self._keeper.take(job_lease_key(job.job_id), job.job_id)
        if lease is None:  # a fresh random id: only a store gone wrong could do this
            raise StoreError(f"the lease of new job {job.job_id} exists already")
        try:
            etag = await self.jobs.create(job)
        except BaseException:
            self._keeper.let_go(lease)  # no record: recovery removes the lease once expired
            raise
        running = RunningJob(JobRecorder(self.jobs, job, etag, PROGRESS_SAVE_SECONDS), lease)
        lease.on_lost = running.lost
        if await self._interrupted_if_closing(running):
            return running
        running.task = asyncio.create_task(run(running), name=f"{kind} {job.date} {job.job_id}")
        self._running[job.job_id] = running
        return running

    async def _interrupted_if_closing(self, running: RunningJob) -> bool:
        """A job created while the service stops (its creation was under way when `close()`
        ran) is never started: it ends interrupted, like the jobs `close()` stopped."""
        if not self._closing:
            return False
        running.job.fail(INTERRUPTED)
        await self._finish(running, swept=True)  # it never touched its date
        return True

    async def wait_for_end(self, job_id: str) -> JobRecord | None:
        """Wait until a job this process runs has ended and recorded its end (or given up
        recording it), and return its record; for a job this process does not run, its
        record as stored (None if there is none).

        Example (not run: it needs a service)::

            job = await runner.submit(day)
            (await runner.wait_for_end(job.job_id)).finished
            # -> True
        """
        running = self._running.get(job_id)
        if running is None or running.task is None:
            return await self.jobs.load(job_id)
        await asyncio.wait({running.task})  # never cancelled along with the job
        return running.job

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job this process runs: a queued one never starts, a running one stops
        its cities; either ends `failed` with the reason "cancelled", and the date keeps its
        previous commit (the placeholder of a date without one is dropped: it reads as
        without data, as before). Returns the ended record.

        Raises CannotCancel for a job that has ended, has committed (its data counts), or
        that another process runs, and NotFound for no such job."""
        running = self._running.get(job_id)
        if running is not None and running.committed and not running.job.finished:
            raise CannotCancel(f"job {job_id} {COMMITTED}")
        if running is not None:
            was_ending = running.finishing
            running.abort(CANCELLED)
            ended = await self.wait_for_end(job_id)
            if ended is not None and not was_ending:
                return ended
        job = await self.jobs.load(job_id)  # ended here just now, elsewhere, or not at all
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        if job.finished:
            raise CannotCancel(f"job {job_id} has ended ({job.status.value}); nothing to cancel")
        holder = await self._keeper.holder_of(job_lease_key(job_id))
        raise CannotCancel.run_elsewhere(f"job {job_id}", holder)

    async def _run(self, running: RunningJob, work: WorkFactory) -> None:
        """Run the job once one of the process's job slots is free (uploads included)."""
        try:
            await self._job_slots.acquire()
        except asyncio.CancelledError:  # cancelled or interrupted while queued
            running.job.fail(running.abort_reason or INTERRUPTED)
            await self._finish(running, swept=False)
            if running.abort_reason is None:
                raise
            return
        try:
            await self._run_in_slot(running, work)
        finally:
            self._job_slots.release()

    async def _run_in_slot(self, running: RunningJob, work: WorkFactory) -> None:
        """The job's work under its date's lease, and its end, whatever happens."""
        job = running.job
        running.recorder.start(
            lambda why: running.abort(f"stopped: another process ended this job ({why})")
        )
        swept = False
        try:
            async with self._date_locks[job.date]:
                running.date_lease = await self._take_date_lease(running)
                await work(running.recorder, lambda: self._confirm_date(running)).run()
                swept = True
        except asyncio.CancelledError:
            job.fail(running.abort_reason or INTERRUPTED)
            if running.abort_reason is None:
                raise
        except (LeaseLost, RecordTakenOver) as exc:
            self._lose_date(running)  # not ours any more: neither sweep nor release it
            job.fail(f"stopped: another process took this job over ({exc})")
        except (StoreError, PreconditionFailed) as exc:
            job.fail(f"the store failed: {exc}")
        except Exception:
            log.exception("job %s failed unexpectedly", job.job_id)
            job.fail("internal error; see the service log")
        finally:
            await self._finish(running, swept)

    async def run_to_end(
        self, job: JobRecord, work: WorkFactory, cleanup: Callable[[], None]
    ) -> JobRecord:
        """Record `job` (new, queued), run it like an ingest (job lease, then the date's
        lease, waiting behind jobs of that date) with `work`, and return it once its end is
        recorded, or once its end is known if recording it takes longer than ANSWER_SECONDS
        (the store is down: recording goes on in the background). `cleanup` runs once the
        job has ended (or was never started), even if the caller is cancelled meanwhile.

        Example (not run: it needs a service)::

            job = await runner.run_to_end(job, upload_work, upload.discard)
            job.finished
            # -> True
        """
        try:
            running = await self._start(
                job, lambda running: self._run_then(running, work, cleanup), job.source.value
            )
        except BaseException:
            cleanup()
            raise
        if running.task is None:  # created while the service stops
            cleanup()
            return running.job
        ended = asyncio.ensure_future(running.ended.wait())
        try:  # asyncio.wait never cancels the job along with this request
            await asyncio.wait({running.task, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if not running.task.done():
            await asyncio.wait({running.task}, timeout=ANSWER_SECONDS)
        return running.job

    async def _run_then(
        self, running: RunningJob, work: WorkFactory, cleanup: Callable[[], None]
    ) -> None:
        try:
            await self._run(running, work)
        finally:
            cleanup()

    async def _finish(self, running: RunningJob, swept: bool) -> None:
        """Record the end (retrying while the store is down), give back the leases."""
        job = running.job
        running.finishing = True
        running.ended.set()
        metrics.record_job(job.status, job_seconds(job))
        log_job_finished(job)
        await running.recorder.stop()
        timeout = SHUTDOWN_SAVE_SECONDS if self._closing else None
        recorded = await running.recorder.save_end(timeout)
        if (
            not swept
            and running.date_lease is not None
            and running.abort_reason in (None, CANCELLED)
        ):
            swept = await self._sweep_holding_lease(running, timeout)
        if running.date_lease is not None:
            await self._quietly(self._keeper.release(running.date_lease), "release a date lease")
        self._running.pop(job.job_id, None)
        # A lease left in place (end not recorded, or files not swept) expires, and recovery
        # in any process then finishes the job's record and sweeps its date.
        if recorded and swept:
            await self._quietly(self._keeper.release(running.job_lease), "release a job lease")
        else:
            self._keeper.let_go(running.job_lease)

    async def _sweep_holding_lease(self, running: RunningJob, limit: float | None) -> bool:
        """Remove what a job cut short left under its date, after making sure the date is
        still its own, and the placeholder of a date it began without committing (the date
        then reads as without data, as before); False if that failed."""
        day = running.job.date
        try:
            async with asyncio.timeout(limit):
                await self._confirm_date(running)
                await sweep_date(self._store, day)
                if running.job.commit_id is None:
                    await drop_placeholder(self._store, day)
        except LeaseLost:
            self._lose_date(running)
            return False
        except (StoreError, TimeoutError) as exc:
            log.warning("files of %s left for the next clean-up: %r", day, exc)
            return False
        return True

    async def _take_date_lease(self, running: RunningJob) -> HeldLease:
        """Wait, queued, until this job holds its date's lease."""
        key = date_lease_key(running.job.date)
        poll = min(1.0, self._settings.lease_renew_seconds)
        while True:
            try:
                lease = await self._keeper.take(key, running.job.job_id, running.lost_date)
            except StoreError as exc:
                log.warning(
                    "job %s waits for the store to take its date: %s", running.job.job_id, exc
                )
                lease = None
            if lease is not None:
                return lease
            await asyncio.sleep(poll)

    async def _confirm_date(self, running: RunningJob) -> None:
        """Renew the job's date lease now; LeaseLost if another process took it. Nothing
        once the keeper found it lost (the job is stopped then)."""
        if running.date_lease is not None:
            await self._keeper.confirm(running.date_lease)

    def _lose_date(self, running: RunningJob) -> None:
        if running.date_lease is not None:
            self._keeper.let_go(running.date_lease)
            running.date_lease = None

    async def _quietly(self, action: Awaitable[object], what: str) -> None:
        try:
            await action
        except (StoreError, PreconditionFailed) as exc:  # recovery's fence may lose its races
            log.error("could not %s: %s", what, exc)

    async def close(self) -> None:
        """Cancel running jobs; each records itself as interrupted."""
        self._closing = True
        tasks = [r.task for r in self._running.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for running in list(self._running.values()):
            if not running.job.finished:  # its task was cancelled before it ever ran
                running.job.fail(INTERRUPTED)
                await self._finish(running, swept=True)
