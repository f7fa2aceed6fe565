"""The log lines of a job: its start, its end, and each city's end (JSON fields for machines)."""

from __future__ import annotations

import logging

from busstats.core.clock import now
from busstats.model.jobs import CityReport, CityStatus, JobRecord, JobStatus

jobs_log = logging.getLogger("busstats.jobs")


def log_job_started(job: JobRecord) -> None:
    jobs_log.info(
        "job %s for %s started",
        job.job_id,
        job.date,
        extra={"event": "job_started", "job_id": job.job_id, "date": job.date.isoformat()},
    )


def log_job_finished(job: JobRecord) -> None:
    """The job's outcome and totals; a warning unless every city succeeded."""
    failed = sum(city.status is CityStatus.FAILED for city in job.cities)
    rows = sum(city.rows for city in job.cities)
    seconds = job_seconds(job)
    jobs_log.log(
        logging.INFO if job.status is JobStatus.SUCCEEDED else logging.WARNING,
        "job %s for %s ended %s: %d rows from %d cities, %d failed, in %.3f s",
        job.job_id,
        job.date,
        job.status.value,
        rows,
        len(job.cities),
        failed,
        seconds,
        extra={
            "event": "job_finished",
            "job_id": job.job_id,
            "date": job.date.isoformat(),
            "status": job.status.value,
            "cities": len(job.cities),
            "cities_failed": failed,
            "rows": rows,
            "invalid_rows": sum(city.invalid_rows for city in job.cities),
            "raw_bytes": sum(city.raw_bytes for city in job.cities),
            "duration_seconds": seconds,
            "error": job.error,
        },
    )


def log_city_finished(job: JobRecord, report: CityReport) -> None:
    """One city of a job has ended; a warning when it failed."""
    jobs_log.log(
        logging.INFO if report.status is CityStatus.SUCCEEDED else logging.WARNING,
        "job %s: city %d of %s %s",
        job.job_id,
        report.city_id,
        job.date,
        report.status.value,
        extra={
            "event": "city_finished",
            "job_id": job.job_id,
            "date": job.date.isoformat(),
            "city_id": report.city_id,
            "status": report.status.value,
            "raw_bytes": report.raw_bytes,
            "rows": report.rows,
            "invalid_rows": report.invalid_rows,
            "duration_seconds": report.duration_seconds,
            "error": report.error,
        },
    )


def job_seconds(job: JobRecord) -> float:
    """From the job's start (or creation, if it never started) to its end, or to now."""
    began = job.started_at or job.created_at
    ended = job.finished_at or now()
    return round((ended - began).total_seconds(), 3)
