"""The HTTP API (routes and payloads: docs/api.md)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from busstats.api import params
from busstats.api.dashboard import dashboard_asset, dashboard_page
from busstats.api.docs_ui import docs_asset, docs_page
from busstats.api.openapi import openapi_document
from busstats.core import logs, metrics
from busstats.core.settings import Settings
from busstats.jobs import index as jobindex
from busstats.jobs.index import JobFilter
from busstats.model.backfills import BackfillAccepted
from busstats.model.jobs import JobList, JobRecord, JobStatus, Trigger
from busstats.model.payloads import ErrorBody, Health, JobAccepted, Readiness
from busstats.model.schedule import MAX_LAG_DAYS
from busstats.model.stats import Source
from busstats.orchestration.backfills import BackfillEnded, Backfills
from busstats.orchestration.runner import CannotCancel, JobRunner
from busstats.orchestration.schedule import Scheduler, valid_at
from busstats.orchestration.uploads import (
    ConvertedUpload,
    UploadRefused,
    city_id_of,
    convert_upload,
    day_of,
    identify_city,
    receive_body,
)
from busstats.stats import exports
from busstats.stats.query import read_country_stats
from busstats.storage import Store, StoreError, open_store

log = logging.getLogger(__name__)

__all__ = ["GRACEFUL_SHUTDOWN_SECONDS", "JobAccepted", "create_app"]

GRACEFUL_SHUTDOWN_SECONDS = 3
"""How long a stopping server (SIGTERM) lets requests in flight finish before it cancels
them and stops the jobs: an upload waiting for a job slot must not hold the stop up. The
job of a cancelled upload request ends interrupted, as the other jobs do."""


def json_response(payload: Any, status_code: int = 200) -> Response:
    return Response(msgspec.json.encode(payload), status_code, media_type="application/json")


def error_response(message: str, status_code: int) -> Response:
    return json_response(ErrorBody(message), status_code)


def _runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.runner
    return runner


def _backfills(request: Request) -> Backfills:
    backfills: Backfills = request.app.state.backfills
    return backfills


@params.accepts("date", "from", "to")
async def process_request(request: Request) -> Response:
    """One date (`date`), or a backfill of a range (`from` and `to`, both included)."""
    query = request.query_params
    if "from" in query or "to" in query:
        if "date" in query:
            raise params.BadRequest("give either 'date' or 'from' and 'to', not both")
        settings: Settings = request.app.state.settings
        first, last = params.date_range(query, settings.max_range_days)
        record = await _backfills(request).start(first, last)
        return json_response(BackfillAccepted.of(record), 202)
    day = params.day(query, "date")
    job = await _runner(request).submit(day)
    accepted = JobAccepted(
        job_id=job.job_id,
        date=day.isoformat(),
        status=job.status.value,
        status_url=f"/jobs/{job.job_id}",
    )
    return json_response(accepted, 202)


@params.accepts("city_name", "country")
async def put_raw(request: Request) -> Response:
    """An upload of a city's day as upstream sends it (docs/api.md): validated and converted
    before anything is recorded, then stored and committed by a job like a fetch."""
    runner = _runner(request)
    settings: Settings = request.app.state.settings
    query = request.query_params
    try:
        day = day_of(request.path_params["date"])
        city_id = city_id_of(request.path_params["city_id"])
        city, others = await identify_city(
            request.app.state.store,
            runner.reference_client(),
            day,
            city_id,
            params.optional_text(query, "city_name"),
            params.optional_text(query, "country"),
        )
        with runner.resources.temp_files() as (raw_path, parquet_path):
            with raw_path.open("wb") as raw_file:
                raw = await receive_body(
                    request.stream(),
                    raw_file,
                    settings.city_max_bytes,
                    request.headers.get("content-encoding"),
                    request.headers.get("content-length"),
                )
            result = await convert_upload(
                runner.resources,
                runner.executor.conversions,
                request.app.state.store.part_size,
                city,
                day,
                raw_path,
                parquet_path,
                raw,
            )
            upload = ConvertedUpload(city, raw_path, parquet_path, raw, result, others)
            # the job owns the files from here, whatever becomes of this request
            job = await runner.run_upload(day, upload.handed_over())
    except UploadRefused as exc:
        return error_response(str(exc), exc.status)
    except ClientDisconnect:
        return error_response("the client went away before the body was complete", 400)
    location = {"Location": f"/jobs/{job.job_id}"}
    if job.commit_id is None:
        response = error_response(f"the upload was not committed: {job.error}", 503)
        response.headers.update(location)
        return response
    return Response(msgspec.json.encode(job), 201, headers=location, media_type="application/json")


JOBS_PER_PAGE = 50
MAX_JOBS_PER_PAGE = 1000


@params.accepts("date", "from", "to", "status", "limit", "cursor")
async def list_jobs(request: Request) -> Response:
    query = request.query_params
    on_day = params.optional_day(query, "date")
    first, last = params.optional_day(query, "from"), params.optional_day(query, "to")
    if on_day is not None and (first is not None or last is not None):
        raise params.BadRequest("give either 'date' or 'from'/'to', not both")
    if first is not None and last is not None and first > last:
        raise params.BadRequest(f"'from' ({first}) is after 'to' ({last}); give from <= to")
    status = params.optional_choice(query, "status", JobStatus, None)
    limit = params.optional_int(query, "limit", JOBS_PER_PAGE, 1, MAX_JOBS_PER_PAGE)
    cursor = params.optional_text(query, "cursor")
    keep = JobFilter(first=on_day or first, last=on_day or last, status=status)
    try:
        page = await jobindex.list_jobs(request.app.state.store, keep, limit, cursor)
    except jobindex.BadCursor:
        raise params.BadRequest(
            "query parameter 'cursor' is not one this API gave; use the 'next' link of a "
            "page, or leave it out to start from the newest job"
        ) from None
    next_url = None
    if page.next_cursor is not None:
        kept = {name: value for name, value in query.items() if name != "cursor"}
        next_url = f"/jobs?{urlencode({**kept, 'limit': limit, 'cursor': page.next_cursor})}"
    return json_response(JobList(jobs=page.jobs, next=next_url))


@params.accepts()
async def get_job(request: Request) -> Response:
    job_id: str = request.path_params["job_id"]
    job = await _runner(request).find(job_id)
    if job is None:
        return error_response(f"no job with id {job_id!r}", 404)
    return json_response(job)


@params.accepts()
async def cancel_job(request: Request) -> Response:
    """Cancel a job this process runs; 409 for an ended job or one another process runs."""
    job_id: str = request.path_params["job_id"]
    try:
        job = await _runner(request).cancel(job_id)
    except KeyError:
        return error_response(f"no job with id {job_id!r}", 404)
    except CannotCancel as exc:
        return error_response(str(exc), 409)
    return json_response(job)


@params.accepts()
async def get_backfill(request: Request) -> Response:
    backfill_id: str = request.path_params["backfill_id"]
    record = await _backfills(request).find(backfill_id)
    if record is None:
        return error_response(f"no backfill with id {backfill_id!r}", 404)
    return json_response(record)


@params.accepts()
async def cancel_backfill(request: Request) -> Response:
    """Cancel a backfill this process runs; 409 for an ended one or one another process runs."""
    backfill_id: str = request.path_params["backfill_id"]
    try:
        record = await _backfills(request).cancel(backfill_id)
    except KeyError:
        return error_response(f"no backfill with id {backfill_id!r}", 404)
    except (CannotCancel, BackfillEnded) as exc:
        return error_response(str(exc), 409)
    return json_response(record, 200 if record.finished else 202)


@params.accepts("from", "to", "source", "format")
async def get_country_stats(request: Request) -> Response:
    """The statistics in the format asked for, with a strong ETag; 304 when the caller
    has these bytes already (If-None-Match)."""
    settings: Settings = request.app.state.settings
    start, end = params.date_range(request.query_params, settings.max_range_days)
    source = params.optional_choice(request.query_params, "source", Source, Source.SUMMARY)
    asked = params.optional_choice(request.query_params, "format", exports.Format, None)
    try:
        fmt = exports.negotiate(asked, request.headers.get("accept"))
    except exports.NotAcceptable as exc:
        response = error_response(str(exc), 406)
        response.headers["Vary"] = "Accept"
        return response
    answer = await read_country_stats(request.app.state.store, start, end, source)
    tag = exports.etag(answer, source, fmt)
    disposition = "inline" if fmt is exports.Format.JSON else "attachment"
    headers = {
        "ETag": tag,
        "Vary": "Accept",
        "Cache-Control": "no-cache",  # keep it, but ask each time: a re-ingest changes it
        "Content-Disposition": f'{disposition}; filename="{exports.filename(answer.stats, fmt)}"',
        "Busstats-Incomplete-Dates": str(len(answer.stats.incomplete_dates)),
    }
    if exports.matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    try:
        body = await asyncio.to_thread(exports.encode, answer.stats, fmt)
    except exports.TooLargeForFormat as exc:
        return error_response(str(exc), 422)
    return Response(body, headers=headers, media_type=exports.MEDIA_TYPES[fmt])


def _scheduler(request: Request) -> Scheduler:
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


@params.accepts()
async def get_schedule(request: Request) -> Response:
    return json_response(await _scheduler(request).view())


@params.accepts("at", "lag_days")
async def start_schedule(request: Request) -> Response:
    at = params.optional_text(request.query_params, "at")
    if at is not None and not valid_at(at):
        raise params.BadRequest(
            f"query parameter 'at' must be a time of day as HH:MM or HH:MM:SS (UTC), got {at!r}"
        )
    lag = params.optional_int(request.query_params, "lag_days", -1, 0, MAX_LAG_DAYS)
    try:
        await _scheduler(request).change(enabled=True, at=at, lag_days=None if lag < 0 else lag)
    except ValueError as exc:
        raise params.BadRequest(f"the schedule has no time yet: {exc}") from None
    return json_response(await _scheduler(request).view())


@params.accepts()
async def stop_schedule(request: Request) -> Response:
    await _scheduler(request).change(enabled=False, at=None, lag_days=None)
    return json_response(await _scheduler(request).view())


@params.accepts()
async def health(_: Request) -> Response:
    return json_response(Health(status="ok"))


@params.accepts()
async def ready(request: Request) -> Response:
    store: Store = request.app.state.store
    await store.check()
    return json_response(Readiness(status="ok", store="ok"))


async def get_metrics(request: Request) -> Response:
    registry: metrics.Metrics = request.app.state.metrics
    return Response(registry.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})


async def get_openapi(request: Request) -> Response:
    document: bytes = request.app.state.openapi
    return Response(document, media_type="application/json")


async def on_bad_request(_: Request, exc: Exception) -> Response:
    return error_response(str(exc), 400)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(message, exc.status_code)


async def on_store_error(request: Request, exc: Exception) -> Response:
    log.error("store failed during %s %s: %s", request.method, request.url.path, exc)
    return error_response(f"the store is unavailable, try again later: {exc}", 503)


async def on_internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response("internal error; the service log has the details", 500)


class Observed:
    """ASGI middleware: per request, the metrics by route template, method and status, and
    one log line. It also binds the app's metrics for everything the request starts (jobs
    included); see `busstats.metrics`."""

    def __init__(self, app: ASGIApp, registry: metrics.Metrics) -> None:
        self.app = app
        self.metrics = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with metrics.bound(self.metrics):
                await self.app(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            self.metrics.observe_request(route, scope["method"], status, seconds)
            client = scope.get("client")
            logs.log_request(
                scope["method"],
                route,
                scope["path"],
                status,
                seconds,
                f"{client[0]}:{client[1]}" if client else None,
            )


def route_template(scope: Scope) -> str:
    """The path template of the route that handled the request, e.g. `/jobs/{job_id}`."""
    route = scope.get("route")
    if isinstance(route, BaseRoute) and isinstance(path := getattr(route, "path", None), str):
        return path
    return metrics.UNMATCHED_ROUTE


def create_app(settings: Settings, store: Store | None = None) -> Starlette:
    """The ASGI app; it opens the store from `settings` unless one is handed in.

    >>> app = create_app(Settings(store="./data"))
    >>> [route.path for route in app.routes][:3]
    ['/process-request', '/jobs', '/jobs/{job_id}']
    """
    app_metrics = metrics.Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None]:
        with metrics.bound(app_metrics):  # for tasks started outside a request
            opened = store or await open_store(settings)
            runner = JobRunner(opened, settings)
            await runner.start()
            backfills = Backfills(opened, runner, settings)
            await backfills.start_keeping()

            async def submit_scheduled(day: dt.date) -> JobRecord:
                return await runner.submit(day, trigger=Trigger.SCHEDULE)

            async def job_exists(job_id: str) -> bool:
                return await runner.find(job_id) is not None

            scheduler = Scheduler(opened, settings, submit_scheduled, job_exists)
            await scheduler.start()
            app.state.settings = settings
            app.state.store = opened
            app.state.runner = runner
            app.state.backfills = backfills
            app.state.scheduler = scheduler
            try:
                yield
            finally:
                await scheduler.close()
                backfills.stop_all()  # no new jobs, then the jobs end interrupted
                await runner.close()
                await backfills.close()
                if store is None:
                    await opened.close()

    app = Starlette(
        routes=[
            Route("/process-request", process_request, methods=["POST"]),
            Route("/jobs", list_jobs, methods=["GET"]),
            Route("/jobs/{job_id}", get_job, methods=["GET"]),
            Route("/jobs/{job_id}", cancel_job, methods=["DELETE"]),
            Route("/backfills/{backfill_id}", get_backfill, methods=["GET"]),
            Route("/backfills/{backfill_id}", cancel_backfill, methods=["DELETE"]),
            Route("/country-stats", get_country_stats, methods=["GET"]),
            Route("/raw/{date}/{city_id}", put_raw, methods=["PUT"]),
            Route("/schedule", get_schedule, methods=["GET"]),
            Route("/schedule/start", start_schedule, methods=["POST"]),
            Route("/schedule/stop", stop_schedule, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/health/ready", ready, methods=["GET"]),
            Route("/metrics", get_metrics, methods=["GET"]),
            Route("/openapi.json", get_openapi, methods=["GET"]),
            Route("/docs", docs_page, methods=["GET"]),
            Route("/docs/{name}", docs_asset, methods=["GET"]),
            Route("/", dashboard_page, methods=["GET"]),
            Route("/dashboard/{name}", dashboard_asset, methods=["GET"]),
        ],
        middleware=[Middleware(Observed, registry=app_metrics)],
        exception_handlers={
            params.BadRequest: on_bad_request,
            HTTPException: on_http_error,
            StoreError: on_store_error,
            Exception: on_internal_error,
        },
        lifespan=lifespan,
    )
    app.state.metrics = app_metrics
    app.state.openapi = msgspec.json.encode(openapi_document())
    return app
