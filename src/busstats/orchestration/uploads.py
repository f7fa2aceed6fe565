"""Uploads: a city's day sent to `PUT /raw/{date}/{city_id}` as upstream would send it, stored
and converted exactly as if fetched, and committed through the same path as an ingest.

The body is streamed to a temporary file under a size cap (after gzip decoding; the API
reads it, `busstats.api.uploads`), converted and validated before any job exists: a bad file
changes nothing. Only then does a job of `source: upload` take the date's lease, upload both
files under its own keys and commit a summary that keeps every other city's row as it was
(`busstats.commit.upload_rows`).

`Uploads` is what the API's handler calls: `receive` does all of it, given a function that
writes the request's body into a file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import stamina

from busstats.commit.dates import (
    begin_date,
    commit_date,
    drop_placeholder,
    read_summary,
    sweep_date,
    upload_rows,
)
from busstats.core import metrics
from busstats.core.clock import now
from busstats.core.settings import Settings
from busstats.ingest.citywork import (
    CityTask,
    ConversionLost,
    Conversions,
    memory_needed,
    store_run_files,
)
from busstats.ingest.convert import ConversionResult, UnusableResponse
from busstats.ingest.resources import ProcessResources
from busstats.jobs.logs import log_city_finished, log_job_started
from busstats.jobs.recorder import JobRecorder
from busstats.model.cities import City
from busstats.model.jobs import CityReport, CityStatus, JobRecord, JobSource, JobStatus
from busstats.model.summaries import StoredCity
from busstats.orchestration.runner import ConfirmLease, JobRunner
from busstats.reference.client import Download, ReferenceClient, UpstreamError
from busstats.storage import PreconditionFailed, Store, StoreError, store_down

log = logging.getLogger(__name__)

COMMIT_SECONDS = 30.0
"""How long an upload's commit is retried while the store is down; the client waits that long."""


class UploadRefused(Exception):
    """The upload cannot be used; nothing was stored. `status` is the HTTP status to answer
    (the API answers with it; both halves of an upload refuse with it)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


async def identify_city(
    store: Store,
    client: ReferenceClient,
    day: dt.date,
    city_id: int,
    city_name: str | None,
    country: str | None,
) -> tuple[City, tuple[City, ...]]:
    """Name and country of the uploaded city: from the date's committed summary (its row,
    counted or not), else from upstream's city list, else from `city_name` and `country`.
    When those are given for a known city they must match it. UploadRefused(400) otherwise.
    Upstream unreachable counts as not listing the city (the log says so).

    Also returns the other cities upstream lists when the date has no commit yet (else, or
    when upstream's list is unavailable, none): see `ConvertedUpload.others`."""
    if (city_name is None) != (country is None):
        raise UploadRefused(400, "give both 'city_name' and 'country', or neither")
    known, others = await _known_city(store, client, day, city_id)
    return _checked_city(day, city_id, known, city_name, country), others


def _checked_city(
    day: dt.date, city_id: int, known: City | None, city_name: str | None, country: str | None
) -> City:
    if known is None:
        if city_name is None or country is None:
            raise UploadRefused(
                400,
                f"city {city_id} is neither in the summary of {day} nor in upstream's city "
                "list; give its 'city_name' and 'country' as query parameters",
            )
        if not city_name.strip() or not country.strip():
            raise UploadRefused(400, "'city_name' and 'country' must not be blank")
        return City(city_id, city_name, country)
    if city_name is not None and (city_name, country) != (known.name, known.country):
        raise UploadRefused(
            400,
            f"city {city_id} is known as {known.name!r} in {known.country!r}, "
            f"not {city_name!r} in {country!r}; leave the parameters out or correct them",
        )
    return known


async def _known_city(
    store: Store, client: ReferenceClient, day: dt.date, city_id: int
) -> tuple[City | None, tuple[City, ...]]:
    summary, _ = await read_summary(store, day)
    for row in summary.filter(city_id=city_id).iter_rows(named=True):
        return City(city_id, row["city_name"], row["country"]), ()
    try:
        listed = await client.cities()
    except UpstreamError as exc:
        log.warning("upload of city %s: upstream's city list is unavailable: %s", city_id, exc)
        return None, ()
    cities = tuple(City(city.id, city.name, city.country) for city in listed.cities)
    others = tuple(c for c in cities if c.id != city_id) if summary.is_empty() else ()
    return next((c for c in cities if c.id == city_id), None), others


async def convert_upload(
    resources: ProcessResources,
    conversions: Conversions,
    part_size: int,
    city: City,
    day: dt.date,
    raw_path: Path,
    parquet_path: Path,
    raw: Download,
) -> ConversionResult:
    """Convert a received upload as a fetched city is converted (a city slot, the memory
    budget, the executor's conversions); UploadRefused(422) when it is not a JSON array of
    rows."""
    async with resources.city_slots, resources.budget.reserve(memory_needed(raw.size, part_size)):
        try:
            return await conversions(raw_path, parquet_path, city, day)
        except ConversionLost as exc:
            raise UploadRefused(503, f"{exc}; send the upload again") from None
        except UnusableResponse as exc:
            raise UploadRefused(422, f"the upload is unusable: {exc}") from None


@dataclass(frozen=True, slots=True)
class ConvertedUpload:
    """An upload received and converted, waiting in temporary files for its job."""

    city: City
    raw_path: Path
    parquet_path: Path
    raw: Download
    result: ConversionResult
    others: tuple[City, ...] = ()
    """The other cities upstream lists, when the date had no commit when the upload came:
    the summary then lists them as not counted (the date reads incomplete, not complete)."""

    def handed_over(self) -> ConvertedUpload:
        """The same upload with its files renamed away from the paths the request's
        `temp_files()` removes when the request ends (cancelled at shutdown, say): the job
        owns them from here (`Uploads.receive`), and removes them once it has ended."""
        raw_path = self.raw_path.with_name(f"{self.raw_path.stem}-job{self.raw_path.suffix}")
        parquet_path = self.parquet_path.with_name(
            f"{self.parquet_path.stem}-job{self.parquet_path.suffix}"
        )
        self.raw_path.rename(raw_path)
        self.parquet_path.rename(parquet_path)
        return dataclasses.replace(self, raw_path=raw_path, parquet_path=parquet_path)

    def discard(self) -> None:
        """Remove the temporary files (the job owns them once it exists)."""
        for path in (self.raw_path, self.parquet_path):
            path.unlink(missing_ok=True)


class UploadJob:
    """The job of one upload, run by `JobRunner.run_to_end` while it holds the date's lease
    (`confirm_lease` renews it and raises if it was lost): store both files under the job's
    keys, commit the city into the date's summary, sweep, record the end."""

    def __init__(
        self,
        recorder: JobRecorder,
        store: Store,
        upload: ConvertedUpload,
        confirm_lease: ConfirmLease,
    ) -> None:
        self.job: JobRecord = recorder.job
        self._recorder = recorder
        self._store = store
        self._upload = upload
        self._confirm_lease = confirm_lease

    async def run(self) -> None:
        job, upload = self.job, self._upload
        report = job.cities[0]
        job.status = JobStatus.RUNNING
        job.started_at = now()
        report.status = CityStatus.RUNNING
        log_job_started(job)
        self._recorder.changed()
        started = time.monotonic()
        day, run_id = job.date, job.job_id
        failure: str | None = None
        await begin_date(self._store, day, run_id)
        try:
            task = CityTask(day, run_id, upload.city)
            stored = await store_run_files(
                self._store, task, upload.raw_path, upload.parquet_path, upload.result
            )
            report.parquet_bytes = upload.parquet_path.stat().st_size
            report.status = CityStatus.SUCCEEDED
            await self._commit(stored)
        except (StoreError, PreconditionFailed) as exc:
            report.status = CityStatus.FAILED
            report.error = str(exc)
            failure = f"nothing was committed; the date's previous data stands: {exc}"
        report.duration_seconds = round(time.monotonic() - started, 3)
        metrics.record_city(report.status, report.raw_bytes, report.rows, report.invalid_rows)
        log_city_finished(job, report)
        try:
            await self._confirm_lease()  # never sweep a date another job may be writing by now
            removed = await sweep_date(self._store, day)
            if removed:
                log.info("upload %s removed %d superseded files", run_id, len(removed))
            if job.commit_id is None:
                await drop_placeholder(self._store, day)
        except StoreError as exc:
            if failure is None:
                raise
            # The store is down: the job's end is known, its clean-up waits for the date's
            # next job (its sweep), as a failed commit changed nothing that counts.
            log.warning("upload %s left its files of %s for the next sweep: %s", run_id, day, exc)
        if failure is None:
            job.conclude()
        else:
            job.fail(failure)

    async def _commit(self, stored: StoredCity) -> None:
        """Commit, retried for COMMIT_SECONDS (read when called) while the store is down.
        From the moment `commit_id` is set the job can no longer be cancelled."""
        async for attempt in stamina.retry_context(
            on=store_down, attempts=None, timeout=COMMIT_SECONDS, wait_initial=0.5, wait_max=5
        ):
            with attempt:
                await self._commit_once(stored)
        self.job.commit_id = self.job.job_id

    async def _commit_once(self, stored: StoredCity) -> None:
        job = self.job
        await commit_date(
            self._store,
            job.date,
            job.job_id,
            lambda previous: upload_rows(
                job.date, previous, stored, job.job_id, self._upload.others
            ),
            self._confirm_lease,
        )


WriteBody = Callable[[BinaryIO, int], Awaitable[Download]]
"""Writes an upload's body into the open file, at most the given number of bytes once
decoded, and returns its size and hash; raises UploadRefused for a body it refuses."""


class Uploads:
    """Uploads of one process: received and converted before any job exists, then run as a
    one-city job through `JobRunner` (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        resources: ProcessResources,
        client: ReferenceClient,
        conversions: Conversions,
        runner: JobRunner,
    ) -> None:
        self._store = store
        self._settings = settings
        self._resources = resources
        self._client = client
        self._conversions = conversions
        self._runner = runner

    async def receive(
        self,
        day: dt.date,
        city_id: int,
        city_name: str | None,
        country: str | None,
        write_body: WriteBody,
    ) -> JobRecord:
        """Identify the city, receive the body with `write_body` into a temporary file
        (capped at `BUSSTATS_CITY_MAX_MB`), convert it, then run its job; returns the job
        once it has ended (`JobRunner.run_to_end`). UploadRefused before any job exists."""
        city, others = await identify_city(
            self._store, self._client, day, city_id, city_name, country
        )
        with self._resources.temp_files() as (raw_path, parquet_path):
            with raw_path.open("wb") as raw_file:
                raw = await write_body(raw_file, self._settings.city_max_bytes)
            result = await convert_upload(
                self._resources,
                self._conversions,
                self._store.part_size,
                city,
                day,
                raw_path,
                parquet_path,
                raw,
            )
            upload = ConvertedUpload(city, raw_path, parquet_path, raw, result, others)
            # the job owns the files from here, whatever becomes of this request
            return await self._run(day, upload.handed_over())

    async def _run(self, day: dt.date, upload: ConvertedUpload) -> JobRecord:
        """Run the upload's job; it owns `upload`'s files, and removes them once it has ended
        (here if it never starts)."""
        try:
            job = JobRecord.new(day, JobSource.UPLOAD)
            result = upload.result
            job.cities = [
                CityReport(
                    city_id=upload.city.id,
                    city_name=upload.city.name,
                    country=upload.city.country,
                    raw_bytes=upload.raw.size,
                    rows=result.rows,
                    invalid_rows=result.invalid_rows,
                    invalid_examples=result.invalid_examples,
                )
            ]
        except BaseException:
            upload.discard()
            raise
        return await self._runner.run_to_end(
            job,
            lambda recorder, confirm: UploadJob(recorder, self._store, upload, confirm),
            upload.discard,
        )
