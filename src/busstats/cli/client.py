"""The busstats HTTP API seen from a client: the calls the `busstats` client commands make.

Every call raises `ServiceError` when the service answers an error (its `{"error": ...}`
sentence), `UnexpectedAnswer` when what answers is not the API (an HTML page, JSON of another
shape, another format than asked for) and `Unreachable` when no complete answer comes at all,
so a command maps each to its own exit code. Answers are decoded with the very types the
service encodes them with (`busstats.model`), which need only msgspec and the standard library.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import msgspec

from busstats.cli.conventions import JOBS_PAGE_LIMIT
from busstats.model.backfills import BackfillAccepted, BackfillRecord
from busstats.model.jobs import JobList, JobRecord, JobSummary
from busstats.model.payloads import ErrorBody, JobAccepted

STATS_MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
"""The media type the service answers `GET /country-stats` with, by `format`."""


class ServiceError(Exception):
    """The service answered with an error status; `message` is its `error` sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Unreachable(Exception):
    """No complete answer from the service: refused, reset, cut short, unknown host or timed
    out."""


T = TypeVar("T")


class UnexpectedAnswer(Exception):
    """An answer that is not the API's: not HTTP, not JSON, JSON of another shape, or another
    format than asked for (a proxy's page, another service on the port)."""


def decode_answer(body: bytes, kind: type[T], what: str) -> T:
    """`body` decoded as `kind`; UnexpectedAnswer, naming `what` was asked, if it is not one.

    >>> decode_answer(b'{"error": "no"}', ErrorBody, "GET /jobs").error
    'no'
    """
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        start = body[:60].decode("utf-8", "replace")
        raise UnexpectedAnswer(f"{what}: not the API's answer ({exc}): {start!r}") from None


class StatsAnswer(msgspec.Struct, kw_only=True):
    """The bytes of a `GET /country-stats` answer as sent, with what its headers say."""

    body: bytes
    content_type: str
    incomplete_dates: int


class Client:
    """A session with one busstats service.

    >>> async def first_job(url: str) -> str:  # doctest: +SKIP
    ...     async with Client(url) as client:
    ...         accepted = await client.submit("2024-05-01")
    ...         return (await client.job(accepted.job_id)).status
    """

    def __init__(self, url: str, connect_timeout: float = 10, read_timeout: float = 300) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        data: Any = None,
        expect: tuple[int, ...] = (200,),
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a successful answer; raises for anything else."""
        assert self._session is not None, "use Client in `async with`"
        try:
            async with self._session.request(
                method, f"{self.url}{path}", params=params, data=data
            ) as response:
                body = await response.read()
                headers = {key.lower(): value for key, value in response.headers.items()}
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise Unreachable(f"{self.url}: {exc or type(exc).__name__}") from None
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise Unreachable(f"not an http(s) URL: {exc}") from None
        except aiohttp.ClientError as exc:  # not HTTP as aiohttp reads it
            raise UnexpectedAnswer(f"{method} {path}: {exc or type(exc).__name__}") from None
        if response.status not in expect:
            raise ServiceError(response.status, _error_message(body, response.reason))
        return body, headers

    async def submit(self, day: str) -> JobAccepted:
        """Queue the ingest of one date (`POST /process-request`)."""
        body, _ = await self._call("POST", "/process-request", {"date": day}, expect=(202,))
        return decode_answer(body, JobAccepted, "POST /process-request")

    async def start_backfill(self, first: str, last: str) -> BackfillAccepted:
        """Queue the ingest of every date from `first` to `last` as one backfill
        (`POST /process-request?from=&to=`); the service creates the jobs a few at a time."""
        params = {"from": first, "to": last}
        body, _ = await self._call("POST", "/process-request", params, expect=(202,))
        return decode_answer(body, BackfillAccepted, "POST /process-request")

    async def backfill(self, backfill_id: str) -> BackfillRecord:
        """The backfill's record now (`GET /backfills/{id}`)."""
        body, _ = await self._call("GET", f"/backfills/{backfill_id}")
        return decode_answer(body, BackfillRecord, f"GET /backfills/{backfill_id}")

    async def cancel(self, some_id: str) -> BackfillRecord | JobRecord:
        """Cancel the backfill with this id (`DELETE /backfills/{id}`), else the job with this
        id (`DELETE /jobs/{id}`), as both ids look alike; the record the service answered."""
        path = f"/backfills/{some_id}"
        try:
            body, _ = await self._call("DELETE", path, expect=(200, 202))
        except ServiceError as exc:
            if exc.status != 404:
                raise
        else:
            return decode_answer(body, BackfillRecord, f"DELETE {path}")
        path = f"/jobs/{some_id}"
        body, _ = await self._call("DELETE", path, expect=(200, 202))
        return decode_answer(body, JobRecord, f"DELETE {path}")

    async def job(self, job_id: str) -> JobRecord:
        """The job's record now (`GET /jobs/{id}`)."""
        body, _ = await self._call("GET", f"/jobs/{job_id}")
        return decode_answer(body, JobRecord, f"GET /jobs/{job_id}")

    async def jobs(
        self, filters: dict[str, str], limit: int, page_size: int = JOBS_PAGE_LIMIT
    ) -> AsyncIterator[JobSummary]:
        """Up to `limit` jobs, newest first, following `next` across pages of `page_size`."""
        params: dict[str, str] | None = {**filters, "limit": str(min(limit, page_size))}
        path = "/jobs"
        left = limit
        while left > 0:
            body, _ = await self._call("GET", path, params)
            page = decode_answer(body, JobList, "GET /jobs")
            for listing in page.jobs[:left]:
                yield listing
            left -= len(page.jobs)
            if page.next is None:
                return
            path, params = page.next, None  # `next` carries the filters and the cursor

    async def country_stats(self, start: str, end: str, fmt: str) -> StatsAnswer:
        """`GET /country-stats` in `fmt` (json, csv, parquet or arrow), bytes as sent."""
        params = {"from": start, "to": end, "format": fmt}
        body, headers = await self._call("GET", "/country-stats", params)
        content_type = headers.get("content-type", "")
        if content_type.split(";")[0].strip() != STATS_MEDIA_TYPES.get(fmt):
            raise UnexpectedAnswer(
                f"GET /country-stats: asked for {fmt}, the answer is {content_type or 'untyped'}"
            )
        try:
            incomplete = int(headers.get("busstats-incomplete-dates", "0"))
        except ValueError:
            incomplete = 0
        return StatsAnswer(body=body, content_type=content_type, incomplete_dates=incomplete)

    async def upload(self, day: str, city_id: str, file: Path, params: dict[str, str]) -> bytes:
        """`PUT /raw/{date}/{city_id}` with the file's bytes streamed as the body; the job
        record the service answers (JSON, as sent, checked to be a job record)."""
        with file.open("rb") as stream:  # aiohttp sends an open file in chunks
            body, _ = await self._call(
                "PUT", f"/raw/{day}/{city_id}", params or None, data=stream, expect=(201,)
            )
        decode_answer(body, JobRecord, f"PUT /raw/{day}/{city_id}")
        return body


def _error_message(body: bytes, reason: str | None) -> str:
    try:
        return msgspec.json.decode(body, type=ErrorBody).error
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:300] or (reason or "no reason given")


async def wait_for(
    client: Client, job_ids: list[str], interval: float = 0.5
) -> AsyncIterator[list[JobRecord]]:
    """Every job's record, polled each `interval` seconds until all have finished; yields the
    list after each round (the last one has every job finished)."""
    views: dict[str, JobRecord] = {}
    while True:
        pending = [job_id for job_id in job_ids if not (job_id in views and views[job_id].finished)]
        for view in await asyncio.gather(*(client.job(job_id) for job_id in pending)):
            views[view.job_id] = view
        yield [views[job_id] for job_id in job_ids]
        if all(view.finished for view in views.values()):
            return
        await asyncio.sleep(interval)


async def follow_backfill(
    client: Client, backfill_id: str, interval: float = 0.5
) -> AsyncIterator[tuple[BackfillRecord, list[JobRecord]]]:
    """The backfill's record and the records of the jobs it has created, polled each
    `interval` seconds until the backfill and every one of its jobs have ended. A job that has
    ended is not asked for again.

    >>> async def statuses(client: Client, backfill_id: str) -> list[str]:  # doctest: +SKIP
    ...     async for backfill, jobs in follow_backfill(client, backfill_id):
    ...         pass
    ...     return [job.status for job in jobs]
    """
    views: dict[str, JobRecord] = {}
    while True:
        backfill = await client.backfill(backfill_id)
        job_ids = [job.job_id for job in backfill.jobs]
        pending = [job_id for job_id in job_ids if not (job_id in views and views[job_id].finished)]
        for view in await asyncio.gather(*(client.job(job_id) for job_id in pending)):
            views[view.job_id] = view
        jobs = [views[job_id] for job_id in job_ids]
        yield backfill, jobs
        if backfill.finished and all(job.finished for job in jobs):
            return
        await asyncio.sleep(interval)
