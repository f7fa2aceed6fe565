"""One ingest job: every city's day from the reference server, stored under the run's own
keys, then committed in one write and the superseded files swept away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import stamina

from busstats.commit.dates import (
    begin_date,
    commit_date,
    drop_placeholder,
    summary_rows,
    sweep_date,
)
from busstats.core import metrics
from busstats.core.clock import now
from busstats.ingest.citywork import CityTask, Executor
from busstats.ingest.resources import ProcessResources
from busstats.jobs.logs import log_city_finished, log_job_started
from busstats.jobs.recorder import JobRecorder
from busstats.model.jobs import CityReport, CityStatus, JobRecord, JobStatus
from busstats.model.summaries import StoredCity
from busstats.reference.client import City, ReferenceClient, UpstreamError
from busstats.storage import PreconditionFailed, Store, store_down

log = logging.getLogger(__name__)


class CommitFailed(Exception):
    """The date's summary could not be written; the previous commit stands."""


class Ingest:
    """Runs one job to its end. The caller holds the date's lease throughout and passes
    `confirm_lease`, which renews it and raises if it was lost, for just before the commit."""

    def __init__(
        self,
        recorder: JobRecorder,
        store: Store,
        client: ReferenceClient,
        resources: ProcessResources,
        executor: Executor,
        confirm_lease: Callable[[], Awaitable[None]],
    ) -> None:
        self.job: JobRecord = recorder.job
        self._recorder = recorder
        self._store = store
        self._client = client
        self._resources = resources
        self._executor = executor
        self._confirm_lease = confirm_lease
        self._stored: dict[int, StoredCity] = {}
        self._still_listed: set[int] = set()
        """Ids upstream lists, usable entries or not: a rejected entry keeps its earlier data."""

    async def run(self) -> None:
        job = self.job
        job.status = JobStatus.RUNNING
        job.started_at = now()
        log_job_started(job)
        self._recorder.changed()
        try:
            listed = await self._client.cities()
        except UpstreamError as exc:
            job.error = str(exc)
            job.conclude()
            return
        cities = listed.cities
        job.rejected_cities = listed.rejected
        self._still_listed = listed.listed_ids
        job.cities = [CityReport(city_id=c.id, city_name=c.name, country=c.country) for c in cities]
        self._recorder.changed()
        await begin_date(self._store, job.date, job.job_id)
        async with asyncio.TaskGroup() as group:
            for city, report in zip(cities, job.cities, strict=True):
                group.create_task(self._city(city, report))
        try:
            await self._commit()
        except CommitFailed as exc:
            failure: str | None = f"nothing was committed; the date's previous data stands: {exc}"
        else:
            failure = None
        await self._confirm_lease()  # never sweep a date another job may be writing by now
        await self.sweep()
        if job.commit_id is None:
            await drop_placeholder(self._store, job.date)
        # Only now is the job done: a final status saved earlier would let a reader stop
        # the process before the sweep.
        if failure is None:
            job.conclude()
        else:
            job.fail(failure)

    async def sweep(self) -> None:
        """Remove the date's files no commit names (superseded, crashed or failed runs)."""
        removed = await sweep_date(self._store, self.job.date)
        if removed:
            log.info("job %s removed %d superseded files", self.job.job_id, len(removed))

    async def _city(self, city: City, report: CityReport) -> None:
        async with self._resources.city_slots:
            report.status = CityStatus.RUNNING
            self._recorder.changed()
            task = CityTask(self.job.date, self.job.job_id, city)
            outcome = await self._executor.run_city(task)
            if outcome.stored is not None:
                self._stored[city.id] = outcome.stored
            report.status = outcome.status
            report.rows = outcome.rows
            report.invalid_rows = outcome.invalid_rows
            report.invalid_examples = outcome.invalid_examples
            report.raw_bytes = outcome.raw_bytes
            report.parquet_bytes = outcome.parquet_bytes
            report.error = outcome.error
            report.duration_seconds = outcome.duration_seconds
            metrics.record_city(report.status, report.raw_bytes, report.rows, report.invalid_rows)
            metrics.add_counts(outcome.counts)
            log_city_finished(self.job, report)
            self._recorder.changed()

    async def _commit(self) -> None:
        """Write the date's summary naming this run's files; retried while the store is down.
        Nothing new stored: nothing to commit, the previous commit stands."""
        if not self._stored:
            return
        try:
            async for attempt in stamina.retry_context(
                on=store_down, attempts=None, timeout=None, wait_initial=0.5, wait_max=10
            ):
                with attempt:
                    await self._commit_once()
        except PreconditionFailed as exc:
            raise CommitFailed(str(exc)) from exc
        self.job.commit_id = self.job.job_id

    async def _commit_once(self) -> None:
        job = self.job
        listed = [City(c.city_id, c.city_name, c.country) for c in job.cities]
        failures = {c.city_id: c.error or "failed" for c in job.cities if c.error is not None}
        unusable = self._still_listed - {c.id for c in listed}
        await commit_date(
            self._store,
            job.date,
            job.job_id,
            lambda previous: summary_rows(
                job.date, job.job_id, listed, self._stored, failures, previous, unusable
            ),
            self._confirm_lease,
        )
