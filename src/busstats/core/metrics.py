"""Prometheus metrics: HTTP requests, ingests, upstream calls and store errors.

Each app owns one `Metrics`, with a registry of its own, so two apps in one process (the
tests run many) never mix their numbers. The code that does the work (ingest, the reference
client, the stores) reports through the plain `record_*` functions below, which find the
app's `Metrics` in a context variable: the app binds it around every request and in its
lifespan, and asyncio tasks (and `asyncio.to_thread`) inherit it, so a job started by a
request reports to the app that started it. Code that runs outside any app (unit tests,
benchmarks) records nothing.

>>> metrics = Metrics()
>>> with bound(metrics):
...     record_city("succeeded", raw_bytes=1200, rows=10, invalid_rows=1)
>>> metrics.registry.get_sample_value("busstats_ingest_rows_total")
10.0
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from contextvars import ContextVar

import aiohttp
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of `Metrics.exposition()`."""
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods recorded by name; any other token a client sends is recorded as `other`."""
UNMATCHED_ROUTE = "(unmatched)"
"""The route label of a request no route matched: raw paths would make unbounded labels."""
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
JOB_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class Metrics:
    """Every metric of one app, in the app's own registry (exposed by `GET /metrics`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        http_labels = ("route", "method", "status")
        self.http_requests = Counter(
            "busstats_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            http_labels,
            registry=registry,
        )
        self.http_duration = Histogram(
            "busstats_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            http_labels,
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.cities = Counter(
            "busstats_ingest_cities",
            "Cities ingested, by outcome (succeeded or failed).",
            ("outcome",),
            registry=registry,
        )
        self.raw_bytes = Counter(
            "busstats_ingest_raw_bytes",
            "Bytes received from the reference server and stored as raw files.",
            registry=registry,
        )
        self.rows = Counter(
            "busstats_ingest_rows",
            "Rows stored as Parquet (counted by the stats).",
            registry=registry,
        )
        self.invalid_rows = Counter(
            "busstats_ingest_invalid_rows",
            "Rows left out because they did not fit the schema.",
            registry=registry,
        )
        self.jobs = Counter(
            "busstats_jobs",
            "Ingest jobs ended, by outcome (succeeded, partial, failed).",
            ("outcome",),
            registry=registry,
        )
        self.job_duration = Histogram(
            "busstats_job_duration_seconds",
            "Ingest jobs from start to end, by outcome.",
            ("outcome",),
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.upstream_requests = Counter(
            "busstats_upstream_requests",
            "Tries at a reference-server call, by outcome: ok, retryable (a connection error,"
            " timeout, cut-off body, 5xx or 429) or rejected (a 4xx or an unusable answer).",
            ("outcome",),
            registry=registry,
        )
        self.upstream_retries = Counter(
            "busstats_upstream_retries",
            "Reference-server calls tried again, by the reason of the failed try.",
            ("reason",),
            registry=registry,
        )
        self.store_errors = Counter(
            "busstats_store_errors",
            "Store calls that failed (after the store's own retries), by operation.",
            ("operation",),
            registry=registry,
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        labels = (route, method, str(status))
        self.http_requests.labels(*labels).inc()
        self.http_duration.labels(*labels).observe(seconds)


_current: ContextVar[Metrics | None] = ContextVar("busstats_metrics", default=None)


@contextlib.contextmanager
def bound(metrics: Metrics) -> Generator[None]:
    """Make `metrics` the one the `record_*` functions report to, in this context and in
    every task started from it."""
    token = _current.set(metrics)
    try:
        yield
    finally:
        _current.reset(token)


WORKER_COUNTERS = ("upstream_requests", "upstream_retries", "store_errors")
"""The counters city work reports from wherever it runs: on a Dask worker they are counted
in a `Metrics` of the task's own and travel back in the city's outcome (`counts`)."""

Counts = dict[str, dict[str, int]]
"""Counter name (one of WORKER_COUNTERS) → label value → count."""


def counts(metrics: Metrics) -> Counts:
    """The WORKER_COUNTERS of `metrics`, as plain numbers that pickle and encode.

    >>> metrics = Metrics()
    >>> with bound(metrics):
    ...     record_upstream_request("ok")
    >>> counts(metrics)["upstream_requests"]
    {'ok': 1}
    """
    found: Counts = {}
    for name in WORKER_COUNTERS:
        counter: Counter = getattr(metrics, name)
        by_label: dict[str, int] = {}
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.value:
                    by_label[next(iter(sample.labels.values()))] = int(sample.value)
        if by_label:
            found[name] = by_label
    return found


def add_counts(found: Counts) -> None:
    """Add counts taken elsewhere (`counts` of a Dask worker's task) to the bound metrics."""
    if (metrics := _current.get()) is None:
        return
    for name, by_label in found.items():
        if name in WORKER_COUNTERS:
            counter: Counter = getattr(metrics, name)
            for label, value in by_label.items():
                counter.labels(label).inc(value)


def record_city(outcome: str, raw_bytes: int, rows: int, invalid_rows: int) -> None:
    """One city of a job has ended; `outcome` is its final status."""
    if (metrics := _current.get()) is None:
        return
    metrics.cities.labels(outcome).inc()
    metrics.raw_bytes.inc(raw_bytes)
    metrics.rows.inc(rows)
    metrics.invalid_rows.inc(invalid_rows)


def record_job(outcome: str, seconds: float) -> None:
    """One job has ended; `outcome` is its final status."""
    if (metrics := _current.get()) is None:
        return
    metrics.jobs.labels(outcome).inc()
    metrics.job_duration.labels(outcome).observe(seconds)


def record_upstream_request(outcome: str) -> None:
    """One try at a reference-server call ended: `ok`, `retryable` or `rejected`."""
    if (metrics := _current.get()) is not None:
        metrics.upstream_requests.labels(outcome).inc()


def record_upstream_retry(reason: str) -> None:
    """A reference-server call is tried again after a failure of kind `reason`."""
    if (metrics := _current.get()) is not None:
        metrics.upstream_retries.labels(reason).inc()


def record_store_error(operation: str) -> None:
    """A store call failed; `operation` is a fixed word (get, put, list...), never a key."""
    if (metrics := _current.get()) is not None:
        metrics.store_errors.labels(operation).inc()


@contextlib.contextmanager
def upstream_try(retryable: type[BaseException], *, last: bool) -> Generator[None]:
    """Count one try at a reference-server call by how it ends; a `retryable` failure that
    is not the `last` try also counts as a retry, labelled with its reason.

    Example (not run: a fragment of the reference client)::

        with upstream_try(TimeoutError, last=False):
            await call()
    """
    try:
        yield
    except retryable as exc:
        record_upstream_request("retryable")
        if not last:
            record_upstream_retry(failure_reason(exc))
        raise
    except Exception:
        record_upstream_request("rejected")
        raise
    record_upstream_request("ok")


def failure_reason(exc: BaseException) -> str:
    """What went wrong in a retryable failure, from the exception it was raised from:
    `timeout`, `broken_body`, `connection`, or `status` (the server answered 5xx or 429)."""
    cause = exc.__cause__
    if cause is None:
        return "status"
    if isinstance(cause, TimeoutError):
        return "timeout"
    if isinstance(cause, aiohttp.ClientPayloadError):
        return "broken_body"
    return "connection"
