"""The query parameter types and their one decoder: what each refusal says, word for word,
and which rule wins when a query breaks several."""

from __future__ import annotations

import datetime as dt

import pytest
from starlette.datastructures import QueryParams

from busstats.api.params import BadRequest, DateRange, NoQuery, Query, Unchecked, decode
from busstats.api.routes.jobs import JobsQuery
from busstats.api.routes.process import OneDate
from busstats.api.routes.schedule import ScheduleStart
from busstats.api.routes.stats import StatsQuery
from busstats.api.routes.uploads import UploadQuery
from busstats.core.settings import Settings
from busstats.model.jobs import JobStatus
from busstats.model.stats import Source
from busstats.stats.exports import Format

SETTINGS = Settings(max_range_days=40)
PROCESS = (OneDate, DateRange)


def refusal(forms: tuple[type[Query], ...], query: str) -> str:
    with pytest.raises(BadRequest) as refused:
        decode(QueryParams(query), forms, "/route", SETTINGS)
    return str(refused.value)


@pytest.mark.parametrize(
    ("forms", "query", "message"),
    [
        ((StatsQuery,), "", "query parameter 'from' is required, as YYYY-MM-DD"),
        ((StatsQuery,), "from=&to=2024-05-01", "query parameter 'from' is required, as YYYY-MM-DD"),
        (
            (StatsQuery,),
            "from=2024-5-1&to=2024-05-01",
            "query parameter 'from' must be a real date as YYYY-MM-DD, got '2024-5-1'",
        ),
        (
            (StatsQuery,),
            "from=2024-05-02&to=2024-05-01",
            "'from' (2024-05-02) is after 'to' (2024-05-01); give from <= to",
        ),
        (
            (StatsQuery,),
            "from=2024-01-01&to=2024-12-31",
            "the range covers 366 days; ask for at most 40 days at once",
        ),
        (
            (StatsQuery,),
            "from=2024-05-01&to=2024-05-01&source=fast",
            "query parameter 'source' must be one of summary, full, got 'fast'",
        ),
        (
            (StatsQuery,),
            "from=2024-05-01&to=2024-05-01&format=",
            "query parameter 'format' must be one of json, csv, parquet, arrow, got ''",
        ),
        (
            (StatsQuery,),
            "from=2024-05-01&to=2024-05-01&compress=1",
            "unknown query parameter 'compress'; /route accepts from, to, source, format",
        ),
        (
            (StatsQuery,),
            "y" * 100 + "=1",
            f"unknown query parameter '{'y' * 60}...'; /route accepts from, to, source, format",
        ),
        (
            (StatsQuery,),
            "from=2024-05-01&from=2024-05-01",
            "query parameter 'from' was given 2 times; give it once",
        ),
        (PROCESS, "", "query parameter 'date' is required, as YYYY-MM-DD"),
        (PROCESS, "date=", "query parameter 'date' is required, as YYYY-MM-DD"),
        (PROCESS, "from=2024-05-01", "query parameter 'to' is required, as YYYY-MM-DD"),
        (PROCESS, "to=2024-05-01", "query parameter 'from' is required, as YYYY-MM-DD"),
        (PROCESS, "from=&to=2024-05-01", "query parameter 'from' is required, as YYYY-MM-DD"),
        # presence decides the form: an empty or malformed value of the other form still mixes
        (PROCESS, "date=&from=2024-05-01&to=x", "give either 'date' or 'from' and 'to', not both"),
        (
            PROCESS,
            "date=2024-05-01&force=true",
            "unknown query parameter 'force'; /route accepts date, from, to",
        ),
        (
            (JobsQuery,),
            "date=",
            "query parameter 'date' is empty; give a YYYY-MM-DD or leave it out",
        ),
        (
            (JobsQuery,),
            "date=2024-05-01&to=2024-05-01",
            "give either 'date' or 'from'/'to', not both",
        ),
        (
            (JobsQuery,),
            "limit=0",
            "query parameter 'limit' must be a whole number from 1 to 1000, got '0'",
        ),
        (
            (JobsQuery,),
            "limit=" + "9" * 100,
            f"query parameter 'limit' must be a whole number from 1 to 1000, got '{'9' * 60}...'",
        ),
        (
            (JobsQuery,),
            "status=done",
            "query parameter 'status' must be one of queued, running, succeeded, partial, failed,"
            " got 'done'",
        ),
        (
            (ScheduleStart,),
            "at=6:30",
            "query parameter 'at' must be a time of day as HH:MM or HH:MM:SS (UTC), got '6:30'",
        ),
        (
            (ScheduleStart,),
            "at=06:30%0A",
            "query parameter 'at' must be a time of day as HH:MM or HH:MM:SS (UTC), got '06:30\\n'",
        ),
        (
            (ScheduleStart,),
            "lag_days=366",
            "query parameter 'lag_days' must be a whole number from 0 to 365, got '366'",
        ),
        ((NoQuery,), "v=1", "unknown query parameter 'v'; /route accepts no query parameters"),
        (
            (UploadQuery,),
            "city_name=a&city_name=b",
            "query parameter 'city_name' was given 2 times; give it once",
        ),
    ],
)
def test_each_refusal_says_what_is_expected(
    forms: tuple[type[Query], ...], query: str, message: str
) -> None:
    assert refusal(forms, query) == message


def test_values_are_converted_by_their_types() -> None:
    stats = decode(
        QueryParams("from=2024-05-01&to=2024-05-02&source=full&format=csv"),
        [StatsQuery],
        "/route",
        SETTINGS,
    )
    assert stats == StatsQuery(
        first=dt.date(2024, 5, 1), last=dt.date(2024, 5, 2), source=Source.FULL, format=Format.CSV
    )
    jobs = decode(QueryParams("status=running&limit=7&cursor="), [JobsQuery], "/route", SETTINGS)
    assert jobs == JobsQuery(status=JobStatus.RUNNING, limit=7)  # empty text is left out
    assert decode(QueryParams(""), [JobsQuery], "/route", SETTINGS).limit == 50
    day = decode(QueryParams("date=2024-05-01"), PROCESS, "/route", SETTINGS)
    assert day == OneDate(date=dt.date(2024, 5, 1))
    start = decode(QueryParams("at=&lag_days=0"), [ScheduleStart], "/route", SETTINGS)
    assert start == ScheduleStart(at=None, lag_days=0)


def test_an_unchecked_query_ignores_what_it_is_given() -> None:
    assert decode(QueryParams("x=1&x=2"), [Unchecked], "/metrics", SETTINGS) == Unchecked()


def test_an_unknown_parameter_is_refused_before_anything_else() -> None:
    assert refusal((StatsQuery,), "compress=1").startswith("unknown query parameter 'compress'")


def test_a_rule_between_parameters_is_checked_after_each_parameter_alone() -> None:
    """Fields in declaration order, then the type's rules: with a range too long and a
    repeated `source`, the repeat is named."""
    query = "from=2024-01-01&to=2024-12-31&source=full&source=full"
    assert (
        refusal((StatsQuery,), query) == "query parameter 'source' was given 2 times; give it once"
    )
