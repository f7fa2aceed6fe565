"""`GET /backfills/{backfill_id}` and `DELETE /backfills/{backfill_id}` (a backfill starts
with `POST /process-request?from=&to=`, in `busstats.api.routes.process`)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from busstats.api import state
from busstats.api.operations import STORE_DOWN, Answer, operation
from busstats.api.params import NoQuery
from busstats.api.responses import error_response, json_response
from busstats.core.errors import NotFound
from busstats.model.backfills import BackfillRecord
from busstats.model.payloads import ErrorBody
from busstats.orchestration.backfills import BackfillEnded
from busstats.orchestration.runner import CannotCancel


class BackfillPath(msgspec.Struct, frozen=True):
    backfill_id: Annotated[
        str, msgspec.Meta(description="The `backfill_id` POST /process-request returned.")
    ]


NO_BACKFILL = Answer(404, "No backfill has this id.", ErrorBody)


@operation(
    "getBackfill",
    summary="A backfill",
    description="Its range, status, the jobs it created, the dates done, failed and left,"
    " progress counts, and once it ends, `reason`.",
    query=NoQuery,
    path=BackfillPath,
    answers=[Answer(200, "The backfill record.", BackfillRecord), NO_BACKFILL, STORE_DOWN],
)
async def get_backfill(request: Request, _: NoQuery) -> Response:
    backfill_id: str = request.path_params["backfill_id"]
    record = await state.backfills(request).find(backfill_id)
    if record is None:
        raise NotFound(f"no backfill with id {backfill_id!r}")
    return json_response(record)


@operation(
    "cancelBackfill",
    summary="Cancel a backfill",
    description="No new job starts; its unfinished jobs end `failed` with the error"
    " `cancelled`; it ends `cancelled`, with `dates_left` listing what it did not ingest. A"
    " backfill another process runs is refused (409, naming that process).",
    query=NoQuery,
    path=BackfillPath,
    answers=[
        Answer(200, "The backfill record, ended.", BackfillRecord),
        Answer(202, "Cancelling; its jobs are still stopping.", BackfillRecord),
        NO_BACKFILL,
        Answer(409, "The backfill has ended, or another process runs it.", ErrorBody),
        STORE_DOWN,
    ],
)
async def cancel_backfill(request: Request, _: NoQuery) -> Response:
    """Cancel a backfill this process runs; 409 for an ended one or one another process runs."""
    backfill_id: str = request.path_params["backfill_id"]
    try:
        record = await state.backfills(request).cancel(backfill_id)
    except (CannotCancel, BackfillEnded) as exc:
        return error_response(str(exc), 409)
    return json_response(record, 200 if record.finished else 202)
