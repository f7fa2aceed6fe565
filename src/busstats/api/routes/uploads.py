"""`PUT /raw/{date}/{city_id}`: the HTTP side of an upload (its path and body are read by
`busstats.api.uploads`, its job is `busstats.orchestration.uploads`)."""

from __future__ import annotations

from typing import Annotated, Any, BinaryIO

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from busstats.api import state
from busstats.api.operations import Answer, RequestBody, operation
from busstats.api.params import Day, Query
from busstats.api.responses import error_response, json_response
from busstats.api.uploads import city_id_of, day_of, receive_body
from busstats.model.cities import CityId
from busstats.model.jobs import JobRecord
from busstats.model.payloads import ErrorBody
from busstats.orchestration.uploads import UploadRefused
from busstats.reference.client import Download


class UploadQuery(Query, frozen=True):
    """The city's name and country, for a city neither the date nor upstream knows."""

    city_name: Annotated[
        str | None,
        msgspec.Meta(
            description="The city's name, for a city neither the date nor upstream knows."
        ),
    ] = None
    country: Annotated[
        str | None, msgspec.Meta(description="The city's country, with `city_name`.")
    ] = None


class UploadPath(msgspec.Struct, frozen=True):
    """Read by `day_of` and `city_id_of`, which say what is wrong with either."""

    date: Annotated[Day, msgspec.Meta(description="The day the data is of, as YYYY-MM-DD.")]
    city_id: Annotated[CityId, msgspec.Meta(description="The city's id.")]


@operation(
    "uploadRaw",
    summary="Upload a city's day",
    description="Stores and converts a city's day sent as upstream would send it (a JSON array"
    " of rows, optionally with `Content-Encoding: gzip`) exactly as if it had been fetched,"
    " and commits it into the date: every other city of the date stays as it was. The body is"
    " checked before anything is recorded; a bad body changes nothing. The city's name and"
    " country come from the date's summary, else from upstream's city list, else from"
    " `city_name` and `country` (which must match a known city when given). The request"
    " returns once the job has ended; see docs/api.md.",
    query=UploadQuery,
    path=UploadPath,
    body=RequestBody(list[dict[str, Any]], "The rows as upstream sends them (docs/upstream.md)."),
    answers=[
        Answer(
            201,
            "Stored and committed: the job record (`source` is `upload`).",
            JobRecord,
            headers={"Location": "The job's URL, /jobs/{job_id}."},
        ),
        Answer(400, "Bad date, city id, parameters, gzip, or an unknown city.", ErrorBody),
        Answer(413, "The body is larger than BUSSTATS_CITY_MAX_MB once decoded.", ErrorBody),
        Answer(415, "A Content-Encoding other than gzip.", ErrorBody),
        Answer(422, "The body is not a JSON array of rows; nothing was stored.", ErrorBody),
        Answer(
            503,
            "The store failed: the upload was not committed (the job, if one was"
            " recorded, says why and is at Location).",
            ErrorBody,
        ),
    ],
)
async def put_raw(request: Request, query: UploadQuery) -> Response:
    """An upload of a city's day as upstream sends it (docs/api.md): validated and converted
    before anything is recorded, then stored and committed by a job like a fetch."""

    async def write_body(dest: BinaryIO, max_bytes: int) -> Download:
        return await receive_body(
            request.stream(),
            dest,
            max_bytes,
            request.headers.get("content-encoding"),
            request.headers.get("content-length"),
        )

    try:
        day = day_of(request.path_params["date"])
        city_id = city_id_of(request.path_params["city_id"])
        job = await state.uploads(request).receive(
            day, city_id, query.city_name, query.country, write_body
        )
    except UploadRefused as exc:
        return error_response(str(exc), exc.status)
    except ClientDisconnect:
        return error_response("the client went away before the body was complete", 400)
    location = {"Location": f"/jobs/{job.job_id}"}
    if job.commit_id is None:
        response = error_response(f"the upload was not committed: {job.error}", 503)
        response.headers.update(location)
        return response
    return json_response(job, 201, location)
