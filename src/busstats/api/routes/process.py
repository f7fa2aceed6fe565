"""`POST /process-request`: ingest one date (a job), or a range of dates (a backfill)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from busstats.api import state
from busstats.api.operations import BAD_INPUT, STORE_DOWN, Answer, operation
from busstats.api.params import DateRange, Day, Query
from busstats.api.responses import json_response
from busstats.model.backfills import BackfillAccepted
from busstats.model.payloads import JobAccepted


class OneDate(Query, frozen=True):
    """One date to ingest."""

    date: Annotated[Day, msgspec.Meta(description="The day to collect, as YYYY-MM-DD.")]


@operation(
    "processRequest",
    summary="Collect one day, or a range of days, of bus data",
    description="With `date`: queues a job that fetches the day of every city from the"
    " reference server and stores it; the request returns at once. Follow the job at"
    " `status_url`. With `from` and `to` instead: starts a backfill, a job per date, at most"
    " BUSSTATS_MAX_RUNNING_JOBS at once; the answer lists the jobs created so far; follow"
    " the backfill at `status_url`.",
    query=(OneDate, DateRange),
    answers=[
        Answer(
            202,
            "The job is queued (`date`), or the backfill started (`from`/`to`).",
            JobAccepted,
            other_bodies=(BackfillAccepted,),
        ),
        BAD_INPUT,
        STORE_DOWN,
    ],
)
async def process_request(request: Request, query: OneDate | DateRange) -> Response:
    if isinstance(query, DateRange):
        record = await state.backfills(request).start(query.first, query.last)
        return json_response(BackfillAccepted.of(record), 202)
    job = await state.runner(request).submit(query.date)
    accepted = JobAccepted(
        job_id=job.job_id,
        date=query.date.isoformat(),
        status=job.status.value,
        status_url=f"/jobs/{job.job_id}",
    )
    return json_response(accepted, 202)
