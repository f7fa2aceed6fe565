"""One ingest job: every city's day from the reference server, stored under the run's own
keys, then committed in one write and the superseded files swept away."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import stamina

from busstats import logs, metrics
from busstats.commit import (
    ListedCity,
    StoredCity,
    begin_date,
    commit_date,
    drop_placeholder,
    summary_rows,
    sweep_date,
)
from busstats.convert import SLICE_BYTES, CityInfo, UnusableResponse, convert_file
from busstats.jobs import CityReport, CityStatus, JobRecord, JobStatus, now
from busstats.layout import parquet_key, raw_key
from busstats.recorder import JobRecorder
from busstats.reference import City, ReferenceClient, ReferenceError
from busstats.resources import ProcessResources
from busstats.store import PreconditionFailed, Store, StoreError, store_down
from busstats.store.s3 import PART_SIZE

log = logging.getLogger(__name__)


def memory_needed(raw_size: int) -> int:
    """Memory a city's conversion and upload hold at most: decoding a slice takes about 14
    times its JSON (measured; 20 leaves room for the writer), and an upload holds one part."""
    return 20 * min(raw_size, SLICE_BYTES) + min(raw_size, PART_SIZE)


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
        confirm_lease: Callable[[], Awaitable[None]],
    ) -> None:
        self.job: JobRecord = recorder.job
        self._recorder = recorder
        self._store = store
        self._client = client
        self._resources = resources
        self._confirm_lease = confirm_lease
        self._stored: dict[int, StoredCity] = {}
        self._still_listed: set[int] = set()
        """Ids upstream lists, usable entries or not: a rejected entry keeps its earlier data."""

    async def run(self) -> None:
        job = self.job
        job.status = JobStatus.RUNNING
        job.started_at = now()
        logs.log_job_started(job)
        self._recorder.changed()
        try:
            listed = await self._client.cities()
        except ReferenceError as exc:
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
            started = time.monotonic()
            report.status = CityStatus.RUNNING
            self._recorder.changed()
            try:
                self._stored[city.id] = await self._ingest_city(city, report)
                report.status = CityStatus.SUCCEEDED
            except (ReferenceError, UnusableResponse, StoreError) as exc:
                report.status = CityStatus.FAILED
                report.error = str(exc)
            except Exception as exc:  # a bug must fail one city, not the job
                log.exception("city %s of job %s failed unexpectedly", city.id, self.job.job_id)
                report.status = CityStatus.FAILED
                report.error = f"internal error: {exc!r}"
            report.duration_seconds = round(time.monotonic() - started, 3)
            metrics.record_city(report.status, report.raw_bytes, report.rows, report.invalid_rows)
            logs.log_city_finished(self.job, report)
            self._recorder.changed()

    async def _ingest_city(self, city: City, report: CityReport) -> StoredCity:
        day, run_id = self.job.date, self.job.job_id
        with self._resources.temp_files() as (raw_path, parquet_path):
            with raw_path.open("wb") as raw_file:
                download = await self._client.download_day(city.id, day, raw_file)
            report.raw_bytes = download.size
            info = CityInfo(city.id, city.name, city.country)
            provenance = {"job_id": run_id, "raw_sha256": download.sha256}
            async with self._resources.budget.reserve(memory_needed(download.size)):
                result = await asyncio.to_thread(
                    convert_file, raw_path, parquet_path, info, day, provenance=provenance
                )
                # The run's own keys: nothing a reader uses is overwritten; the commit decides.
                await self._store.put_file(raw_key(day, city.id, run_id), raw_path)
                await self._store.put_file(parquet_key(day, city.id, run_id), parquet_path)
            report.parquet_bytes = parquet_path.stat().st_size
        report.rows = result.rows
        report.invalid_rows = result.invalid_rows
        report.invalid_examples = result.invalid_examples
        return StoredCity(
            city=ListedCity(city.id, city.name, city.country),
            raw_key=raw_key(day, city.id, run_id),
            parquet_key=parquet_key(day, city.id, run_id),
            buses=result.rows,
            passengers=result.passengers,
            delay_microseconds=result.delay_microseconds,
            accident=result.accident,
        )

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
        listed = [ListedCity(c.city_id, c.city_name, c.country) for c in job.cities]
        failures = {c.city_id: c.error or "failed" for c in job.cities if c.error is not None}
        unusable = self._still_listed - {c.city_id for c in listed}
        await commit_date(
            self._store,
            job.date,
            job.job_id,
            lambda previous: summary_rows(
                job.date, job.job_id, listed, self._stored, failures, previous, unusable
            ),
            self._confirm_lease,
        )
