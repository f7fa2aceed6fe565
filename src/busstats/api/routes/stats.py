"""`GET /country-stats`: per-country, per-day statistics in JSON, CSV, Parquet or Arrow."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from busstats.api import state
from busstats.api.operations import BAD_INPUT, STORE_DOWN, Answer, operation
from busstats.api.params import DateRange
from busstats.api.responses import error_response
from busstats.model.payloads import ErrorBody
from busstats.model.stats import CountryStats, Source
from busstats.stats import exports
from busstats.stats.query import read_country_stats


class StatsQuery(DateRange, frozen=True):
    """The range of days, where to read them from, and the format of the answer."""

    source: Annotated[
        Source,
        msgspec.Meta(
            description="`summary` (default) reads the per-date summaries; `full` recomputes"
            " from the full data (the same answer)."
        ),
    ] = Source.SUMMARY
    format: Annotated[
        exports.Format | None,
        msgspec.Meta(
            description="`json`, `csv`, `parquet` or `arrow` (an Arrow IPC stream); when"
            " absent the Accept header chooses, and JSON is the default."
        ),
    ] = None


class StatsHeaders(msgspec.Struct, frozen=True):
    if_none_match: Annotated[
        str | None,
        msgspec.Meta(
            description="The ETag of an answer you have: 304, with no body, while it is still"
            " the answer."
        ),
    ] = msgspec.field(name="If-None-Match", default=None)


STATS_HEADERS = {
    "ETag": "Strong; changes when a date of the range is committed again, and per format.",
    "Vary": "Accept",
    "Content-Disposition": "A file name such as country-stats_2024-05-01_2024-05-31.csv.",
    "Busstats-Incomplete-Dates": "How many dates are in `incomplete_dates`.",
}


@operation(
    "getCountryStats",
    summary="Per-country, per-day statistics",
    description="Buses started, passengers, whether any accident happened and the average"
    " delay (the mean over every bus), per country and day from `from` to `to`, both"
    " inclusive; sorted by date, then country. Dates with no stored bus are listed in"
    " `dates_without_data`.",
    query=StatsQuery,
    headers=StatsHeaders,
    answers=[
        Answer(
            200,
            "The statistics. CSV, Parquet and Arrow hold the rows of `stats`, one per"
            " country and day, with the same columns; Parquet and Arrow carry the other"
            " fields as JSON under the metadata key `busstats`.",
            CountryStats,
            binary_media_types=tuple(
                t for f, t in exports.MEDIA_TYPES.items() if f is not exports.Format.JSON
            ),
            headers=STATS_HEADERS,
        ),
        Answer(
            304,
            "Not modified: If-None-Match named this answer's ETag.",
            empty=True,
            headers=STATS_HEADERS,
        ),
        BAD_INPUT,
        Answer(406, "The Accept header allows none of the formats.", ErrorBody),
        Answer(422, "A sum exceeds 64 bits, which only JSON can hold.", ErrorBody),
        STORE_DOWN,
    ],
)
async def get_country_stats(request: Request, query: StatsQuery) -> Response:
    """The statistics in the format asked for, with a strong ETag; 304 when the caller
    has these bytes already (If-None-Match)."""
    try:
        fmt = exports.negotiate(query.format, request.headers.get("accept"))
    except exports.NotAcceptable as exc:
        response = error_response(str(exc), 406)
        response.headers["Vary"] = "Accept"
        return response
    answer = await read_country_stats(state.store(request), query.first, query.last, query.source)
    tag = exports.etag(answer, query.source, fmt)
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
