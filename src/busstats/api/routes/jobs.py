"""`GET /jobs`, `GET /jobs/{job_id}` and `DELETE /jobs/{job_id}`: ingest jobs."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from busstats.api import state
from busstats.api.operations import BAD_INPUT, STORE_DOWN, Answer, operation
from busstats.api.params import BadRequest, Day, NoQuery, Query, in_order
from busstats.api.responses import error_response, json_response
from busstats.core.errors import NotFound
from busstats.core.settings import Settings
from busstats.jobs import index as jobindex
from busstats.jobs.index import JobFilter
from busstats.model.jobs import JobList, JobRecord, JobStatus
from busstats.model.payloads import ErrorBody
from busstats.orchestration.runner import CannotCancel

JOBS_PER_PAGE = 50
MAX_JOBS_PER_PAGE = 1000


class JobsQuery(Query, frozen=True):
    """Which jobs a page of `GET /jobs` lists, and where it starts."""

    RULES = "Give either `date` or `from`/`to`, not both; `from` <= `to`."

    date: Annotated[
        Day | None, msgspec.Meta(description="Only jobs for this day, as YYYY-MM-DD.")
    ] = None
    first: Annotated[Day | None, msgspec.Meta(description="Only jobs for this day or later.")] = (
        msgspec.field(name="from", default=None)
    )
    last: Annotated[Day | None, msgspec.Meta(description="Only jobs for this day or earlier.")] = (
        msgspec.field(name="to", default=None)
    )
    status: Annotated[JobStatus | None, msgspec.Meta(description="Only jobs with this status.")] = (
        None
    )
    limit: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=MAX_JOBS_PER_PAGE,
            description=f"Most jobs on one page (default {JOBS_PER_PAGE}).",
        ),
    ] = JOBS_PER_PAGE
    cursor: Annotated[
        str | None,
        msgspec.Meta(
            description="Where to go on from: part of a page's `next` link, nothing to build"
            " by hand."
        ),
    ] = None

    def check(self, settings: Settings) -> None:
        if self.date is not None and (self.first is not None or self.last is not None):
            raise BadRequest("give either 'date' or 'from'/'to', not both")
        if self.first is not None and self.last is not None:
            in_order(self.first, self.last)

    def keep(self) -> JobFilter:
        return JobFilter(
            first=self.date or self.first, last=self.date or self.last, status=self.status
        )


class JobPath(msgspec.Struct, frozen=True):
    job_id: Annotated[
        str, msgspec.Meta(description="The `job_id` that POST /process-request returned.")
    ]


NO_JOB = Answer(404, "No job has this id.", ErrorBody)


@operation(
    "listJobs",
    summary="Ingest jobs, newest first",
    description="A page of jobs, newest first: id, date, status and creation time, each with"
    " the URL of its full record. Filter by the date a job ingests (`date`, or `from` and"
    " `to`, both inclusive) and by `status`. Follow `next` (null on the last page) for more;"
    " a page with a strict filter may hold fewer than `limit` jobs and still have a `next`.",
    query=JobsQuery,
    answers=[Answer(200, "A page of jobs.", JobList), BAD_INPUT, STORE_DOWN],
)
async def list_jobs(request: Request, query: JobsQuery) -> Response:
    try:
        page = await jobindex.list_jobs(
            state.store(request), query.keep(), query.limit, query.cursor
        )
    except jobindex.BadCursor:
        raise BadRequest(
            "query parameter 'cursor' is not one this API gave; use the 'next' link of a "
            "page, or leave it out to start from the newest job"
        ) from None
    next_url = None
    if page.next_cursor is not None:
        given = request.query_params
        kept = {name: value for name, value in given.items() if name != "cursor"}
        cursor = {"limit": query.limit, "cursor": page.next_cursor}
        next_url = f"/jobs?{urlencode({**kept, **cursor})}"
    return json_response(JobList(jobs=page.jobs, next=next_url))


@operation(
    "getJob",
    summary="An ingest job",
    description="The job's status, timestamps and, per city, its status, rows, bytes, invalid"
    " rows, error and duration.",
    query=NoQuery,
    path=JobPath,
    answers=[Answer(200, "The job record.", JobRecord), NO_JOB, STORE_DOWN],
)
async def get_job(request: Request, _: NoQuery) -> Response:
    job_id: str = request.path_params["job_id"]
    job = await state.runner(request).find(job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}")
    return json_response(job)


@operation(
    "cancelJob",
    summary="Cancel an ingest job",
    description="Stops a queued or running job of the process that answers: it ends `failed`"
    " with the error `cancelled`, and its date keeps its previous commit. Answered once the"
    " end is recorded. A job another process runs is refused (409, naming that process):"
    " send the DELETE to it.",
    query=NoQuery,
    path=JobPath,
    answers=[
        Answer(200, "The job's record, ended.", JobRecord),
        NO_JOB,
        Answer(409, "The job has ended, or another process runs it.", ErrorBody),
        STORE_DOWN,
    ],
)
async def cancel_job(request: Request, _: NoQuery) -> Response:
    """Cancel a job this process runs; 409 for an ended job or one another process runs."""
    job_id: str = request.path_params["job_id"]
    try:
        job = await state.runner(request).cancel(job_id)
    except CannotCancel as exc:
        return error_response(str(exc), 409)
    return json_response(job)
