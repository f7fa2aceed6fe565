"""`GET /schedule`, `POST /schedule/start` and `POST /schedule/stop`: the daily schedule."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from busstats.api import state
from busstats.api.operations import BAD_INPUT, STORE_DOWN, Answer, operation
from busstats.api.params import BadRequest, NoQuery, Query
from busstats.api.responses import json_response
from busstats.model.schedule import LagDays, ScheduleView, TimeOfDay


class ScheduleStart(Query, frozen=True):
    """When the schedule fires and which day it ingests; each kept as set before if left out."""

    at: Annotated[
        TimeOfDay | None,
        msgspec.Meta(
            description="Time of day, UTC, as HH:MM or HH:MM:SS; required unless set before"
            " (BUSSTATS_SCHEDULE_AT or an earlier start).",
            extra={"expected": "a time of day as HH:MM or HH:MM:SS (UTC)"},
        ),
    ] = None
    lag_days: Annotated[
        LagDays | None,
        msgspec.Meta(
            description="Days between a run and the day it ingests (1, yesterday, unless set"
            " before)."
        ),
    ] = None


@operation(
    "getSchedule",
    summary="The daily schedule",
    description="Whether the schedule runs, its time of day (UTC) and lag, the latest day it"
    " fired, and when it fires next (`next_run_at`) for which day (`next_date`); both null"
    " when stopped. See docs/schedule.md.",
    query=NoQuery,
    answers=[Answer(200, "The schedule.", ScheduleView), STORE_DOWN],
)
async def get_schedule(request: Request, _: NoQuery) -> Response:
    return json_response(await state.scheduler(request).view())


@operation(
    "startSchedule",
    summary="Start the daily schedule",
    description="From the next set time on, every day ingests the day `lag_days` before it."
    " Days already due when it starts are not fired; answers the new schedule.",
    query=ScheduleStart,
    answers=[Answer(200, "The schedule as started.", ScheduleView), BAD_INPUT, STORE_DOWN],
)
async def start_schedule(request: Request, query: ScheduleStart) -> Response:
    scheduler = state.scheduler(request)
    try:
        await scheduler.change(enabled=True, at=query.at, lag_days=query.lag_days)
    except ValueError as exc:
        raise BadRequest(f"the schedule has no time yet: {exc}") from None
    return json_response(await scheduler.view())


@operation(
    "stopSchedule",
    summary="Stop the daily schedule",
    description="No more scheduled runs until started again; jobs already submitted go on.",
    query=NoQuery,
    answers=[Answer(200, "The schedule as stopped.", ScheduleView), BAD_INPUT, STORE_DOWN],
)
async def stop_schedule(request: Request, _: NoQuery) -> Response:
    await state.scheduler(request).change(enabled=False, at=None, lag_days=None)
    return json_response(await state.scheduler(request).view())
