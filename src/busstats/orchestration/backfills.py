"""Backfills: one request that ingests a range of dates, a job per date, a few at a time.

A backfill is one record (`backfills/<id>.json`) and one lease (`backfills/running/<id>`),
whatever its length: a year is not 365 job records and leases from the start. Its process
creates the next date's job only when one of the backfill's jobs has ended, so at most
`max_running_jobs` of its jobs exist unfinished at once (the process's job slots bound all
its jobs together). The record lists the jobs created so far, the dates done, failed and
left, and, once it ends, why.

Ends: `succeeded` (every date ingested), `partial` (some dates failed or were partial),
`failed` (no date ingested), `cancelled` (`DELETE /backfills/{id}`: no new job, its running
jobs end `failed` "cancelled"), `interrupted` (the service stopped: its running jobs end
interrupted; or its process died: recovery in any process ends it). An interrupted or
cancelled backfill is not resumed: `dates_left` says which dates to ask for again. The
process's `LeaseKeeper` renews the backfills' leases with its jobs' and runs `recover`.

Example (not run: it needs a service)::

    backfills = Backfills(store, settings, keeper, runner)
    record = await backfills.start(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    record.status, record.status_url
    # -> (<BackfillStatus.RUNNING: 'running'>, '/backfills/...')
    (await backfills.cancel(record.backfill_id)).status
    # -> <BackfillStatus.CANCELLED: 'cancelled'>
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field

import msgspec
import stamina

from busstats.core.clock import now
from busstats.core.errors import NotFound
from busstats.core.settings import Settings
from busstats.model.backfills import (
    BackfillJob,
    BackfillRecord,
    BackfillStatus,
)
from busstats.model.jobs import JobRecord, JobStatus, valid_job_id
from busstats.orchestration.leases import HeldLease, LeaseKeeper
from busstats.orchestration.runner import INTERRUPTED, CannotCancel, JobRunner
from busstats.storage import (
    ObjectNotFound,
    PreconditionFailed,
    Store,
    StoreError,
    decode_stored,
    store_down,
)
from busstats.storage.keys import backfill_key, backfill_lease_key
from busstats.storage.leases import LeaseLost

log = logging.getLogger(__name__)

LEFT_BEHIND = "interrupted: the process running this backfill stopped renewing its lease (it died)"
SHUTDOWN_SAVE_SECONDS = 4.0
CANCEL_WAIT_SECONDS = 10.0


class BackfillEnded(Exception):
    """The backfill has ended; nothing to cancel."""


@dataclass(eq=False)
class _Running:
    record: BackfillRecord
    etag: str
    lease: HeldLease
    room: asyncio.Semaphore
    stop_with: BackfillStatus | None = None
    """Set by a cancel (CANCELLED) or the service stopping (INTERRUPTED): no new job."""
    created: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first jobs are created (what the POST answers with)."""
    followers: set[asyncio.Task[None]] = field(default_factory=set[asyncio.Task[None]])
    save_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None


def _cancelled(running: _Running) -> bool:
    return running.stop_with is BackfillStatus.CANCELLED


class Backfills:
    """Runs backfills through a `JobRunner`; see the module's docstring."""

    def __init__(
        self, store: Store, settings: Settings, keeper: LeaseKeeper, runner: JobRunner
    ) -> None:
        self._store = store
        self._settings = settings
        self._keeper = keeper
        self._runner = runner
        self._running: dict[str, _Running] = {}

    async def start(self, first: dt.date, last: dt.date) -> BackfillRecord:
        """Record a backfill of `first` to `last` (both included) and start it; returns once
        its first jobs are created."""
        backfill_id = uuid.uuid4().hex
        days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
        record = BackfillRecord(
            backfill_id=backfill_id,
            first=first,
            last=last,
            status=BackfillStatus.RUNNING,
            created_at=now(),
            dates_left=list(days),
        )
        record.count()
        lease = await self._keeper.take(backfill_lease_key(backfill_id), backfill_id)
        if lease is None:  # a fresh random id: only a store gone wrong could do this
            raise StoreError(f"the lease of new backfill {backfill_id} exists already")
        try:
            etag = await self._store.put_bytes(
                backfill_key(backfill_id), msgspec.json.encode(record), if_absent=True
            )
        except BaseException:
            self._keeper.let_go(lease)  # no record: recovery removes the lease once expired
            raise
        running = _Running(record, etag, lease, asyncio.Semaphore(self._settings.max_running_jobs))
        lease.on_lost = lambda exc: self._taken_over(running, exc)
        self._running[backfill_id] = running
        running.task = asyncio.create_task(self._drive(running, days), name=f"backfill {first}")
        await running.created.wait()  # the driver sets it whatever happens
        return record

    async def find(self, backfill_id: str) -> BackfillRecord | None:
        """A backfill as it stands: from memory while this process runs it, else as recorded
        (so an end is shown only once it is recorded)."""
        running = self._running.get(backfill_id)
        if running is not None and not running.record.finished:
            return running.record
        found = await self._load(backfill_id)
        return None if found is None else found[0]

    async def cancel(self, backfill_id: str) -> BackfillRecord:
        """Cancel a backfill: no new job; its unfinished jobs end `failed` "cancelled";
        it ends `cancelled`. Returns its record (still `running` if its jobs took longer
        than a few seconds to stop).

        Raises NotFound for no such backfill, BackfillEnded for one that has ended, and
        CannotCancel for one another process runs."""
        running = self._running.get(backfill_id)
        if running is None:
            found = await self._load(backfill_id)
            if found is None:
                raise NotFound(f"no backfill with id {backfill_id!r}")
            record = found[0]
            if record.finished:
                raise BackfillEnded(f"backfill {backfill_id} has ended ({record.status.value})")
            holder = await self._keeper.holder_of(backfill_lease_key(backfill_id))
            raise CannotCancel.run_elsewhere(f"backfill {backfill_id}", holder)
        if running.record.finished:  # its end is being recorded
            raise BackfillEnded(f"backfill {backfill_id} has ended ({running.record.status.value})")
        self._stop(running, BackfillStatus.CANCELLED)
        for job in list(running.record.jobs):
            with contextlib.suppress(CannotCancel, NotFound):
                await self._runner.cancel(job.job_id)
        if running.task is not None:
            await asyncio.wait({running.task}, timeout=CANCEL_WAIT_SECONDS)
        return running.record

    def _stop(self, running: _Running, status: BackfillStatus) -> None:
        if running.stop_with is None:
            running.stop_with = status
            running.room.release()  # wakes the driver should it wait for room

    async def _drive(self, running: _Running, days: list[dt.date]) -> None:
        record = running.record
        failure: str | None = None
        try:
            for day in days:
                await running.room.acquire()
                if running.stop_with is not None:
                    break
                job = await self._runner.submit(day, record.backfill_id)
                record.jobs.append(BackfillJob(date=day, job_id=job.job_id, status=job.status))
                record.count()
                follower = asyncio.create_task(self._follow(running, job))
                running.followers.add(follower)
                if _cancelled(running):  # while the job was being created
                    with contextlib.suppress(CannotCancel, NotFound):
                        await self._runner.cancel(job.job_id)
                if len(record.jobs) >= min(len(days), self._settings.max_running_jobs):
                    running.created.set()
                await self._save_progress(running)
        except (StoreError, PreconditionFailed) as exc:
            failure = f"the store failed while creating jobs: {exc}"
        except Exception:
            log.exception("backfill %s failed unexpectedly", record.backfill_id)
            failure = "internal error; see the service log"
        finally:
            running.created.set()
        await asyncio.gather(*running.followers, return_exceptions=True)
        self._conclude(record, running.stop_with, failure)
        await self._save_end(running)

    async def _follow(self, running: _Running, job: JobRecord) -> None:
        """Note the job's end in the backfill's record, then make room for the next job."""
        record = running.record
        try:
            ended = await self._runner.wait_for_end(job.job_id) or job
            entry = next(entry for entry in record.jobs if entry.job_id == job.job_id)
            entry.status = ended.status
            cut_short = running.stop_with is not None and ended.status is JobStatus.FAILED
            if ended.finished and not cut_short:
                record.dates_left.remove(job.date)
                ended_dates = (
                    record.dates_failed if ended.status is JobStatus.FAILED else record.dates_done
                )
                bisect.insort(ended_dates, job.date)  # in date order, whichever job ends first
            record.count()
            if running.stop_with is None:
                await self._save_progress(running)
        finally:
            running.room.release()

    @staticmethod
    def _conclude(record: BackfillRecord, stop: BackfillStatus | None, failure: str | None) -> None:
        done, failed, left = (
            len(record.dates_done),
            len(record.dates_failed),
            len(record.dates_left),
        )
        partial = sum(job.status is JobStatus.PARTIAL for job in record.jobs)
        counts = f"{done} of {done + failed + left} dates ingested, {failed} failed, {left} left"
        if stop is BackfillStatus.CANCELLED:
            record.status, record.reason = stop, f"cancelled: {counts}"
        elif stop is BackfillStatus.INTERRUPTED:
            record.status, record.reason = stop, f"{INTERRUPTED}: {counts}"
        elif failure is not None:
            record.status, record.reason = BackfillStatus.FAILED, f"{failure}; {counts}"
        elif done == 0:
            record.status, record.reason = BackfillStatus.FAILED, f"no date ingested: {counts}"
        elif failed or left or partial:
            record.status = BackfillStatus.PARTIAL
            record.reason = f"{counts}; {partial} dates partial"
        else:
            record.status, record.reason = BackfillStatus.SUCCEEDED, counts
        record.count()
        record.finished_at = now()

    async def _save(self, running: _Running) -> None:
        async with running.save_lock:
            running.etag = await self._store.put_bytes(
                backfill_key(running.record.backfill_id),
                msgspec.json.encode(running.record),
                if_match=running.etag,
            )

    async def _save_progress(self, running: _Running) -> None:
        """Progress is best effort: a store that is down only delays it (the end is retried)."""
        try:
            await self._save(running)
        except PreconditionFailed:
            log.warning("backfill %s was ended by another process", running.record.backfill_id)
        except StoreError as exc:
            log.warning(
                "progress of backfill %s not saved yet: %s", running.record.backfill_id, exc
            )

    async def _save_end(self, running: _Running) -> None:
        """Record the end (retrying while the store is down; a few seconds only when the
        service stops), then give back the lease."""
        backfill_id = running.record.backfill_id
        timeout = SHUTDOWN_SAVE_SECONDS if running.stop_with is BackfillStatus.INTERRUPTED else None
        recorded = False
        try:
            async for attempt in stamina.retry_context(
                on=store_down,
                attempts=None,
                timeout=timeout,
                wait_initial=0.2,
                wait_max=10,
            ):
                with attempt:
                    await self._save(running)
            recorded = True
        except PreconditionFailed:
            log.warning("backfill %s was ended by another process; its end stands", backfill_id)
        except StoreError as exc:
            log.error("could not record the end of backfill %s: %s", backfill_id, exc)
        self._running.pop(backfill_id, None)
        if recorded:  # else the lease expires and recovery ends the record
            with contextlib.suppress(StoreError):
                await self._keeper.release(running.lease)
        else:
            self._keeper.let_go(running.lease)

    def _taken_over(self, running: _Running, exc: LeaseLost) -> None:
        """The keeper found the backfill's lease taken: another process took it for dead and
        ended it. No new jobs."""
        log.warning("backfill %s was taken over; no new jobs: %s", running.record.backfill_id, exc)
        self._stop(running, BackfillStatus.INTERRUPTED)

    async def recover(self) -> None:
        """End, as interrupted, the backfills whose lease expired (their process died), with
        the dates they had not done in `dates_left`. They are not resumed: their jobs were
        cut short too, and a caller may not want the rest any more."""
        await self._keeper.recover_expired(backfill_lease_key(""), self._end_left_behind)

    async def _end_left_behind(self, backfill_id: str) -> bool:
        found = await self._load(backfill_id)
        if found is not None and not found[0].finished:
            record, etag = found
            record.dates_left = sorted(
                set(record.dates_left) - set(record.dates_done) - set(record.dates_failed)
            )
            record.status, record.reason = BackfillStatus.INTERRUPTED, LEFT_BEHIND
            record.finished_at = now()
            record.count()
            try:
                await self._store.put_bytes(
                    backfill_key(backfill_id), msgspec.json.encode(record), if_match=etag
                )
            except PreconditionFailed:
                return False  # changed since we read it; the next round looks again
            log.warning("backfill %s was left unfinished by a process that stopped", backfill_id)
        return True

    async def _load(self, backfill_id: str) -> tuple[BackfillRecord, str] | None:
        if not valid_job_id(backfill_id):
            return None
        try:
            found = await self._store.get_versioned(backfill_key(backfill_id))
        except ObjectNotFound:
            return None
        return decode_stored(found.data, BackfillRecord, backfill_key(backfill_id)), found.etag

    def stop_all(self) -> None:
        """The service is stopping: no backfill creates another job. Then close the job
        runner (its jobs record themselves interrupted), then `close()`."""
        for running in self._running.values():
            self._stop(running, BackfillStatus.INTERRUPTED)

    async def close(self) -> None:
        """Wait (a few seconds at most) until every backfill has recorded its end."""
        self.stop_all()
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_SAVE_SECONDS + 2)
