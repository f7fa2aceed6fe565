"""What a script relies on, shared by the parser and the client commands: the exit codes and
how the service's URL is given. Standard library only, so that parsing the command line and
`--help` stay quick (`busstats --help` loads nothing of the service)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

OK = 0
JOB_NOT_SUCCEEDED = 1
USAGE = 2
SERVICE_ERROR = 3
UNREACHABLE = 4
CANNOT_START = 3  # `busstats dev`: a port to listen on is taken
INTERRUPTED = 130  # Ctrl-C, as shells report it; queued jobs and backfills go on running

EXIT_CODES = f"""exit codes:
  {OK}  done (with --wait: every job succeeded)
  {JOB_NOT_SUCCEEDED}  a job ended partial or failed
  {USAGE}  usage error (bad arguments)
  {SERVICE_ERROR}  the service answered an error (4xx/5xx), or an answer that is not the API's
  {UNREACHABLE}  the service could not be reached, or its answer was cut short"""

DEFAULT_URL = "http://127.0.0.1:8080"
URL_VARIABLE = "BUSSTATS_URL"
"""Environment variable naming the service, read when `--url` is not given."""

DEADLINE = 300.0
"""Seconds one HTTP call of a client command may take as a whole: connecting, sending, its
redirects and the whole answer, however slowly its bytes come."""

JOBS_PAGE_LIMIT = 1000
"""The most jobs the service returns in one page of `GET /jobs`."""


def service_url(text: str) -> str:
    """`text` if it is an http:// or https:// URL with a host; ValueError otherwise.

    >>> service_url("http://127.0.0.1:8080")
    'http://127.0.0.1:8080'
    >>> service_url("127.0.0.1:8080")
    Traceback (most recent call last):
    ...
    ValueError: '127.0.0.1:8080' is not an http:// or https:// URL
    >>> service_url("http://127.0.0.1:abc")
    Traceback (most recent call last):
    ...
    ValueError: 'http://127.0.0.1:abc' is not an http:// or https:// URL: its port is not 1 to 65535
    """
    try:
        parts = urlsplit(text)
    except ValueError:  # a broken IPv6 address: http://[::1/x
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        raise ValueError(f"{text!r} is not an http:// or https:// URL: its port is not 1 to 65535")
    return text


def default_url() -> str:
    """`$BUSSTATS_URL`, else the local service (`DEFAULT_URL`)."""
    return os.environ.get(URL_VARIABLE) or DEFAULT_URL
