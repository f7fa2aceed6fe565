"""One ingest job: every city's day from the reference server into the store."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path

import aiohttp
import polars as pl

from busstats import logs, metrics
from busstats.budget import ByteBudget
from busstats.config import Settings
from busstats.convert import SLICE_BYTES, CityInfo, UnusableResponse, convert_file
from busstats.jobs import CityReport, CityStatus, JobRecord, JobStatus, JobStore, now
from busstats.layout import (
    PARQUET,
    RAW,
    city_id_of,
    date_prefix,
    parquet_key,
    raw_key,
    summary_key,
)
from busstats.reference import City, ReferenceClient, ReferenceError, RetryPolicy
from busstats.store import Store, StoreError
from busstats.store.s3 import PART_SIZE
from busstats.summary import PARTIAL_SCHEMA, city_partial, encode_summary, partials_from_parquet

log = logging.getLogger(__name__)


def memory_needed(raw_size: int) -> int:
    """Memory a city's conversion and upload hold at most: decoding a slice takes about 14
    times its JSON (measured; 20 leaves room for the writer), and an upload holds one part."""
    return 20 * min(raw_size, SLICE_BYTES) + min(raw_size, PART_SIZE)


class Ingest:
    """Runs one job to its end, saving the record as cities finish."""

    def __init__(self, job: JobRecord, store: Store, jobs: JobStore, settings: Settings) -> None:
        self.job = job
        self._store = store
        self._jobs = jobs
        self._settings = settings
        self._save_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(settings.city_concurrency)
        self._budget = ByteBudget(settings.max_bytes_in_flight)
        self._partials: dict[int, pl.DataFrame] = {}
        """Summary rows of the cities this job stored."""

    async def run(self) -> JobRecord:
        job = self.job
        job.status = JobStatus.RUNNING
        job.started_at = now()
        logs.log_job_started(job)
        await self._save()
        try:
            # Until this job writes a fresh one, the date's stats come from the full data.
            await self._store.delete([summary_key(job.date)])
        except StoreError as exc:
            job.error = f"could not clear the date's summary, so nothing was changed: {exc}"
            job.conclude()
            await self._save()
            return job
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._settings.reference_timeout_seconds,
            sock_read=self._settings.reference_timeout_seconds,
        )
        async with aiohttp.ClientSession(timeout=timeout) as session:
            settings = self._settings
            retry = RetryPolicy(
                attempts=settings.reference_attempts,
                wait_initial=settings.reference_backoff_seconds,
                wait_max=max(8.0, settings.reference_backoff_seconds),
            )
            client = ReferenceClient(
                session, settings.reference_url, settings.reference_date_param, retry
            )
            try:
                cities = await client.cities()
            except ReferenceError as exc:
                job.error = str(exc)
            else:
                job.cities = [
                    CityReport(city_id=c.id, city_name=c.name, country=c.country) for c in cities
                ]
                await self._save()
                await asyncio.gather(
                    *(
                        self._city(client, city, report)
                        for city, report in zip(cities, job.cities, strict=True)
                    )
                )
                await self._remove_cities_not_listed({c.id for c in cities})
                await self._write_summary()
        job.conclude()
        await self._save()
        return job

    async def _city(self, client: ReferenceClient, city: City, report: CityReport) -> None:
        async with self._slots:
            started = time.monotonic()
            report.status = CityStatus.RUNNING
            try:
                await self._ingest_city(client, city, report)
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
        await self._save()

    async def _ingest_city(self, client: ReferenceClient, city: City, report: CityReport) -> None:
        day = self.job.date
        with tempfile.TemporaryDirectory(prefix="busstats-") as folder:
            raw_path = Path(folder) / "raw.json"
            parquet_path = Path(folder) / "data.parquet"
            with raw_path.open("wb") as raw_file:
                download = await client.download_day(city.id, day, raw_file)
            report.raw_bytes = download.size
            info = CityInfo(city.id, city.name, city.country)
            provenance = {"job_id": self.job.job_id, "raw_sha256": download.sha256}
            async with self._budget.reserve(memory_needed(download.size)):
                result = await asyncio.to_thread(
                    convert_file, raw_path, parquet_path, info, day, provenance=provenance
                )
                await self._replace_city_files(city.id, raw_path, parquet_path)
            report.parquet_bytes = parquet_path.stat().st_size
        self._partials[city.id] = city_partial(day, city.id, city.name, city.country, result)
        report.rows = result.rows
        report.invalid_rows = result.invalid_rows
        report.invalid_examples = result.invalid_examples

    async def _replace_city_files(self, city_id: int, raw_path: Path, parquet_path: Path) -> None:
        """Store a city's raw and Parquet files so that no failure leaves a mismatched pair.

        The old Parquet goes first: until the new one is complete, the city has no Parquet
        (the stats leave it out, the job says why) rather than old Parquet beside new raw.
        Each object appears whole or not at all (single PUT, or a completed multipart upload).
        """
        day = self.job.date
        await self._store.delete([parquet_key(day, city_id)])
        await self._store.put_file(raw_key(day, city_id), raw_path)
        await self._store.put_file(parquet_key(day, city_id), parquet_path)

    async def _remove_cities_not_listed(self, listed: set[int]) -> None:
        """Re-ingesting a date replaces it: files of cities upstream no longer lists go."""
        try:
            stale: list[str] = []
            for kind in (RAW, PARQUET):
                keys = await self._store.list_keys(date_prefix(kind, self.job.date))
                stale += [
                    k for k in keys if (city := city_id_of(k)) is not None and city not in listed
                ]
            if stale:
                await self._store.delete(stale)
        except StoreError as exc:
            self.job.error = f"could not remove files of cities no longer listed: {exc}"

    async def _write_summary(self) -> None:
        """Summarise exactly the Parquet files the date now has, fresh or from earlier runs."""
        day = self.job.date
        try:
            cities = {
                city_id: key
                for key in await self._store.list_keys(date_prefix(PARQUET, day))
                if (city_id := city_id_of(key)) is not None
            }
            earlier = [key for city_id, key in cities.items() if city_id not in self._partials]
            frames = [self._partials[city_id] for city_id in cities if city_id in self._partials]
            if earlier:
                target = self._store.scan_target(earlier)
                frames.append(
                    await asyncio.to_thread(lambda: partials_from_parquet(target).collect())
                )
            partials = pl.concat(frames) if frames else pl.DataFrame(schema=PARTIAL_SCHEMA)
            await self._store.put_bytes(summary_key(day), encode_summary(partials))
        except (StoreError, pl.exceptions.PolarsError, OSError) as exc:
            self.job.error = f"the date's summary was not written; stats use the full data: {exc}"

    async def _save(self) -> None:
        async with self._save_lock:
            await self._jobs.save(self.job)
