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
