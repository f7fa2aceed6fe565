"""Structured logs: one line per request, per job start and end, and per city of a job.

The fields of a line travel as `extra=` values of a stdlib log record; `JsonFormatter` writes
them as one JSON object per line (for log collectors, when stderr is not a terminal) and
`ReadableFormatter` as `key=value` pairs after the message (on a terminal). No line carries
credentials: requests are logged without headers or query strings, and the libraries that
log signed requests at DEBUG (botocore, aiobotocore, urllib3) are held at INFO or above.

>>> import io
>>> stream = io.StringIO()
>>> configure_logging("INFO", stream)
>>> logging.getLogger("busstats.demo").info("hi", extra={"event": "demo", "rows": 3})
>>> print(stream.getvalue(), end="")  # doctest: +ELLIPSIS
{"time": "...", "level": "INFO", "logger": "busstats.demo", "message": "hi", "event": "demo", ...}
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO

from busstats.jobs import CityReport, CityStatus, JobRecord, JobStatus

_STANDARD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with terminal colour codes
}
QUIET_LIBRARIES = ("botocore", "aiobotocore", "urllib3", "s3transfer")
"""At DEBUG these log whole signed requests (Authorization headers, presigned URLs)."""

UVICORN_LOGGING: dict[str, Any] = {"log_config": None, "access_log": False}
"""uvicorn's options so that its lines go through `configure_logging`'s handler and the app
writes the request lines (with the route template) instead of uvicorn's access log."""

requests_log = logging.getLogger("busstats.requests")
jobs_log = logging.getLogger("busstats.jobs")


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` values a record was logged with."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_FIELDS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ReadableFormatter(logging.Formatter):
    """`time level logger: message key=value ...` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(f"{k}={v}" for k, v in fields_of(record).items() if k != "event")
        if not pairs:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head}  {pairs}{newline}{rest}"


def configure_logging(level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stderr by default): JSON lines unless it is a
    terminal. Replaces any handler already installed on the root logger."""
    target = stream or sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(ReadableFormatter() if target.isatty() else JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    floor = max(logging.getLogger().getEffectiveLevel(), logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(floor)


def log_request(
    method: str, route: str, path: str, status: int, seconds: float, client: str | None
) -> None:
    """One line per answered request: no headers, no query string."""
    requests_log.info(
        "%s %s %d",
        method,
        path,
        status,
        extra={
            "event": "request",
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": client,
        },
    )


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
    ended = job.finished_at or dt.datetime.now(dt.UTC)
    return round((ended - began).total_seconds(), 3)
