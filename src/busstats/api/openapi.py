"""The OpenAPI 3.1 document of the API, generated from the msgspec types the handlers send.

Routes are described by a short declarative list (`OPERATIONS`); every response body is a
msgspec type that the handlers also encode, and its JSON Schema comes from
`msgspec.json.schema_components`, so a field added to `JobRecord` or `CountryStats` appears
in the document without anyone editing it. `tests/test_openapi.py` checks that the list
covers every route of the app.

>>> document = openapi_document()
>>> document["openapi"], sorted(document["paths"])[:2]
('3.1.0', ['/country-stats', '/health'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from busstats.model.backfills import BackfillAccepted, BackfillRecord
from busstats.model.jobs import JobList, JobRecord, JobStatus
from busstats.model.payloads import ErrorBody, Health, JobAccepted, Readiness
from busstats.model.schedule import ScheduleView
from busstats.model.stats import CountryStats, Source
from busstats.stats import exports

REF_TEMPLATE = "#/components/schemas/{name}"
DATE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date",
    "pattern": r"^\d{4}-\d{2}-\d{2}$",
    "examples": ["2024-05-01"],
}


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "path", "header"]
    description: str
    schema: dict[str, Any] | type
    """A JSON Schema, or a msgspec-known type to generate it from."""
    required: bool = True


@dataclass(frozen=True)
class Answer:
    status: int
    description: str
    body: type | None = None
    """The msgspec type of a JSON body; None for `media_type` text."""
    media_type: str = "application/json"
    binary_media_types: tuple[str, ...] = ()
    """Other media types the same answer may come in (by Accept or a parameter)."""
    headers: dict[str, str] = field(default_factory=dict[str, str])
    """Response headers worth documenting, with what they say."""
    empty: bool = False
    """No body at all (304)."""
    other_bodies: tuple[type, ...] = ()
    """Other JSON bodies the same answer may have (the schema is then a `oneOf`)."""


@dataclass(frozen=True)
class Operation:
    method: Literal["get", "post", "put", "delete"]
    path: str
    operation_id: str
    summary: str
    description: str
    answers: list[Answer]
    params: list[Param] = field(default_factory=list[Param])
    request_body: dict[str, Any] | None = None
    """The JSON Schema of a required JSON request body; None when the route takes none."""


STATS_HEADERS = {
    "ETag": "Strong; changes when a date of the range is committed again, and per format.",
    "Vary": "Accept",
    "Content-Disposition": "A file name such as country-stats_2024-05-01_2024-05-31.csv.",
    "Busstats-Incomplete-Dates": "How many dates are in `incomplete_dates`.",
}
BAD_INPUT = Answer(
    400, "A parameter is missing, repeated or malformed; `error` says which.", ErrorBody
)
STORE_DOWN = Answer(503, "The store did not answer; try again later.", ErrorBody)

OPERATIONS: list[Operation] = [
    Operation(
        "post",
        "/process-request",
        "processRequest",
        "Collect one day, or a range of days, of bus data",
        "With `date`: queues a job that fetches the day of every city from the reference"
        " server and stores it; the request returns at once. Follow the job at `status_url`."
        " With `from` and `to` instead: starts a backfill, a job per date, at most"
        " BUSSTATS_MAX_RUNNING_JOBS at once (the range is capped by BUSSTATS_MAX_RANGE_DAYS);"
        " the answer lists the jobs created so far; follow the backfill at `status_url`.",
        [
            Answer(
                202,
                "The job is queued (`date`), or the backfill started (`from`/`to`).",
                JobAccepted,
                other_bodies=(BackfillAccepted,),
            ),
            BAD_INPUT,
            STORE_DOWN,
        ],
        [
            Param("date", "query", "The day to collect, as YYYY-MM-DD.", DATE_SCHEMA, False),
            Param("from", "query", "First day of a backfill, as YYYY-MM-DD.", DATE_SCHEMA, False),
            Param("to", "query", "Last day of a backfill (inclusive).", DATE_SCHEMA, False),
        ],
    ),
    Operation(
        "get",
        "/jobs",
        "listJobs",
        "Ingest jobs, newest first",
        "A page of jobs, newest first: id, date, status and creation time, each with the URL"
        " of its full record. Filter by the date a job ingests (`date`, or `from` and `to`,"
        " both inclusive) and by `status`. Follow `next` (null on the last page) for more; a"
        " page with a strict filter may hold fewer than `limit` jobs and still have a `next`.",
        [Answer(200, "A page of jobs.", JobList), BAD_INPUT, STORE_DOWN],
        [
            Param("date", "query", "Only jobs for this day, as YYYY-MM-DD.", DATE_SCHEMA, False),
            Param("from", "query", "Only jobs for this day or later.", DATE_SCHEMA, False),
            Param("to", "query", "Only jobs for this day or earlier.", DATE_SCHEMA, False),
            Param("status", "query", "Only jobs with this status.", JobStatus, required=False),
            Param(
                "limit",
                "query",
                "Most jobs on one page (default 50).",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                required=False,
            ),
            Param(
                "cursor",
                "query",
                "Where to go on from: part of a page's `next` link, nothing to build by hand.",
                {"type": "string"},
                required=False,
            ),
        ],
    ),
    Operation(
        "get",
        "/jobs/{job_id}",
        "getJob",
        "An ingest job",
        "The job's status, timestamps and, per city, its status, rows, bytes, invalid rows,"
        " error and duration.",
        [
            Answer(200, "The job record.", JobRecord),
            Answer(404, "No job has this id.", ErrorBody),
            STORE_DOWN,
        ],
        [Param("job_id", "path", "The `job_id` that POST /process-request returned.", str)],
    ),
    Operation(
        "delete",
        "/jobs/{job_id}",
        "cancelJob",
        "Cancel an ingest job",
        "Stops a queued or running job of the process that answers: it ends `failed` with the"
        " error `cancelled`, and its date keeps its previous commit. Answered once the end is"
        " recorded. A job another process runs is refused (409, naming that process): send"
        " the DELETE to it.",
        [
            Answer(200, "The job's record, ended.", JobRecord),
            Answer(404, "No job has this id.", ErrorBody),
            Answer(409, "The job has ended, or another process runs it.", ErrorBody),
            STORE_DOWN,
        ],
        [Param("job_id", "path", "The job's id.", str)],
    ),
    Operation(
        "get",
        "/backfills/{backfill_id}",
        "getBackfill",
        "A backfill",
        "Its range, status, the jobs it created, the dates done, failed and left, progress"
        " counts, and once it ends, `reason`.",
        [
            Answer(200, "The backfill record.", BackfillRecord),
            Answer(404, "No backfill has this id.", ErrorBody),
            STORE_DOWN,
        ],
        [Param("backfill_id", "path", "The `backfill_id` POST /process-request returned.", str)],
    ),
    Operation(
        "delete",
        "/backfills/{backfill_id}",
        "cancelBackfill",
        "Cancel a backfill",
        "No new job starts; its unfinished jobs end `failed` with the error `cancelled`; it"
        " ends `cancelled`, with `dates_left` listing what it did not ingest. A backfill"
        " another process runs is refused (409, naming that process).",
        [
            Answer(200, "The backfill record, ended.", BackfillRecord),
            Answer(202, "Cancelling; its jobs are still stopping.", BackfillRecord),
            Answer(404, "No backfill has this id.", ErrorBody),
            Answer(409, "The backfill has ended, or another process runs it.", ErrorBody),
            STORE_DOWN,
        ],
        [Param("backfill_id", "path", "The backfill's id.", str)],
    ),
    Operation(
        "get",
        "/country-stats",
        "getCountryStats",
        "Per-country, per-day statistics",
        "Buses started, passengers, whether any accident happened and the average delay (the"
        " mean over every bus), per country and day from `from` to `to`, both inclusive;"
        " sorted by date, then country. Dates with no stored bus are listed in"
        " `dates_without_data`. The range is capped by BUSSTATS_MAX_RANGE_DAYS.",
        [
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
        [
            Param("from", "query", "First day, as YYYY-MM-DD.", DATE_SCHEMA),
            Param("to", "query", "Last day (inclusive), as YYYY-MM-DD.", DATE_SCHEMA),
            Param(
                "source",
                "query",
                "`summary` (default) reads the per-date summaries; `full` recomputes from"
                " the full data (the same answer).",
                Source,
                required=False,
            ),
            Param(
                "format",
                "query",
                "`json`, `csv`, `parquet` or `arrow` (an Arrow IPC stream); when absent the"
                " Accept header chooses, and JSON is the default.",
                exports.Format,
                required=False,
            ),
            Param(
                "If-None-Match",
                "header",
                "The ETag of an answer you have: 304, with no body, while it is still the answer.",
                {"type": "string"},
                required=False,
            ),
        ],
    ),
    Operation(
        "put",
        "/raw/{date}/{city_id}",
        "uploadRaw",
        "Upload a city's day",
        "Stores and converts a city's day sent as upstream would send it (a JSON array of"
        " rows, optionally with `Content-Encoding: gzip`) exactly as if it had been fetched,"
        " and commits it into the date: every other city of the date stays as it was. The"
        " body is checked before anything is recorded; a bad body changes nothing. The city's"
        " name and country come from the date's summary, else from upstream's city list, else"
        " from `city_name` and `country` (which must match a known city when given). The"
        " request returns once the job has ended; see docs/api.md.",
        [
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
        [
            Param("date", "path", "The day the data is of, as YYYY-MM-DD.", DATE_SCHEMA),
            Param(
                "city_id",
                "path",
                "The city's id.",
                {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
            ),
            Param(
                "city_name",
                "query",
                "The city's name, for a city neither the date nor upstream knows.",
                {"type": "string"},
                required=False,
            ),
            Param(
                "country",
                "query",
                "The city's country, with `city_name`.",
                {"type": "string"},
                required=False,
            ),
        ],
        request_body={
            "type": "array",
            "items": {"type": "object"},
            "description": "The rows as upstream sends them (docs/upstream.md).",
        },
    ),
    Operation(
        "get",
        "/schedule",
        "getSchedule",
        "The daily schedule",
        "Whether the schedule runs, its time of day (UTC) and lag, the latest day it fired, and"
        " when it fires next (`next_run_at`) for which day (`next_date`); both null when"
        " stopped. See docs/schedule.md.",
        [Answer(200, "The schedule.", ScheduleView), STORE_DOWN],
    ),
    Operation(
        "post",
        "/schedule/start",
        "startSchedule",
        "Start the daily schedule",
        "From the next set time on, every day ingests the day `lag_days` before it. Days"
        " already due when it starts are not fired; answers the new schedule.",
        [Answer(200, "The schedule as started.", ScheduleView), BAD_INPUT, STORE_DOWN],
        [
            Param(
                "at",
                "query",
                "Time of day, UTC, as HH:MM or HH:MM:SS; required unless set before"
                " (BUSSTATS_SCHEDULE_AT or an earlier start).",
                {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"},
                required=False,
            ),
            Param(
                "lag_days",
                "query",
                "Days between a run and the day it ingests (1, yesterday, unless set before).",
                {"type": "integer", "minimum": 0, "maximum": 365},
                required=False,
            ),
        ],
    ),
    Operation(
        "post",
        "/schedule/stop",
        "stopSchedule",
        "Stop the daily schedule",
        "No more scheduled runs until started again; jobs already submitted go on.",
        [Answer(200, "The schedule as stopped.", ScheduleView), BAD_INPUT, STORE_DOWN],
    ),
    Operation(
        "get",
        "/health",
        "getHealth",
        "Liveness",
        "200 while the process is up.",
        [Answer(200, "The process is up.", Health)],
    ),
    Operation(
        "get",
        "/health/ready",
        "getReadiness",
        "Readiness",
        "200 when the store answers too.",
        [Answer(200, "The process and its store are up.", Readiness), STORE_DOWN],
    ),
    Operation(
        "get",
        "/metrics",
        "getMetrics",
        "Prometheus metrics",
        "Requests by route, method and status with latencies; ingest bytes, rows, invalid"
        " rows, cities and jobs by outcome; upstream tries and retries; store errors.",
        [Answer(200, "Prometheus text format 0.0.4.", None, "text/plain")],
    ),
]


def openapi_document(operations: list[Operation] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations` (by default the whole API)."""
    operations = OPERATIONS if operations is None else operations
    types: list[Any] = []
    for op in operations:
        types += [p.schema for p in op.params if isinstance(p.schema, type)]
        types += [a.body for a in op.answers if a.body is not None]
        types += [other for a in op.answers for other in a.other_bodies]
    types = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    schema_of = dict(zip(map(id, types), schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "description": op.description,
            "parameters": [_parameter(p, schema_of) for p in op.params],
            "responses": {str(a.status): _response(a, schema_of) for a in op.answers},
        }
        if op.request_body is not None:
            paths[op.path][op.method]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": op.request_body}},
            }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "busstats",
            "version": "1",
            "description": "Collects daily bus data per city and answers per-country,"
            " per-day statistics. Every bad input is a 4xx with a JSON body"
            ' `{"error": "..."}` that says what is wrong.',
        },
        "paths": paths,
        "components": {"schemas": components},
    }


def _parameter(param: Param, schema_of: dict[int, Any]) -> dict[str, Any]:
    schema = schema_of[id(param.schema)] if isinstance(param.schema, type) else param.schema
    return {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "description": param.description,
        "schema": schema,
    }


def _response(answer: Answer, schema_of: dict[int, Any]) -> dict[str, Any]:
    described: dict[str, Any] = {"description": answer.description}
    if answer.headers:
        described["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in answer.headers.items()
        }
    if answer.empty:
        return described
    schema = {"type": "string"} if answer.body is None else schema_of[id(answer.body)]
    if answer.other_bodies:
        schema = {"oneOf": [schema, *(schema_of[id(other)] for other in answer.other_bodies)]}
    content = {answer.media_type: {"schema": schema}}
    for media_type in answer.binary_media_types:
        content[media_type] = {"schema": {"type": "string", "contentMediaType": media_type}}
    return described | {"content": content}
