"""/country-stats as CSV, Parquet and Arrow besides JSON: the same numbers in every format
(each read back with Polars), chosen by format= or Accept, with a file name, Vary: Accept,
and a strong ETag that changes with the data and answers If-None-Match with a 304."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import aiohttp
import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from multidict import CIMultiDict
from polars.testing import assert_frame_equal

from busstats.commit.dates import begin_date
from busstats.model.stats import CountryDay, CountryStats
from busstats.reference.sim import SimulatorConfig
from busstats.stats.exports import (
    TABLE_SCHEMA,
    Format,
    NotAcceptable,
    TooLargeForFormat,
    encode,
    negotiate,
)
from busstats.storage import Store
from tests.support.flows import ingest

DAYS = ("2024-05-01", "2024-05-02")
RANGE = "from=2024-05-01&to=2024-05-03"
MEDIA_TYPES = {
    Format.JSON: "application/json",
    Format.CSV: "text/csv",
    Format.PARQUET: "application/vnd.apache.parquet",
    Format.ARROW: "application/vnd.apache.arrow.stream",
}


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(rows=(5, 40), max_latency=0.0)


@pytest.fixture
async def api(api: str, http: aiohttp.ClientSession) -> str:
    """The API over two ingested days (and one without data in the range)."""
    for day in DAYS:
        assert (await ingest(http, api, day))["status"] == "succeeded"
    return api


async def fetch(
    http: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, CIMultiDict[str], bytes]:
    async with http.get(url, headers=headers) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


def read_back(fmt: Format, body: bytes) -> pl.DataFrame:
    if fmt is Format.CSV:
        return pl.read_csv(io.BytesIO(body), schema=TABLE_SCHEMA)
    if fmt is Format.PARQUET:
        return pl.read_parquet(io.BytesIO(body))
    return pl.read_ipc_stream(io.BytesIO(body))


def metadata_of(fmt: Format, body: bytes) -> dict[str, Any]:
    if fmt is Format.PARQUET:  # the file's key-value metadata
        metadata = pq.ParquetFile(io.BytesIO(body)).metadata.metadata
    else:  # the stream's schema metadata
        metadata = pa.ipc.open_stream(io.BytesIO(body)).schema.metadata
    assert metadata is not None
    decoded: dict[str, Any] = msgspec.json.decode(metadata[b"busstats"])
    return decoded


@pytest.mark.both_stores
@pytest.mark.parametrize("fmt", [Format.CSV, Format.PARQUET, Format.ARROW])
@pytest.mark.parametrize("how", ["format", "accept"])
async def test_every_format_holds_the_same_numbers_as_json(
    api: str, http: aiohttp.ClientSession, fmt: Format, how: str
) -> None:
    status, _, json_body = await fetch(http, f"{api}/country-stats?{RANGE}")
    assert status == 200
    answer = msgspec.json.decode(json_body)
    assert answer["stats"]
    expected = pl.DataFrame(answer["stats"]).select(
        pl.col(name).cast(dtype) if name != "date" else pl.col(name).str.to_date()
        for name, dtype in TABLE_SCHEMA.items()
    )

    if how == "format":
        status, headers, body = await fetch(http, f"{api}/country-stats?{RANGE}&format={fmt}")
    else:
        status, headers, body = await fetch(
            http, f"{api}/country-stats?{RANGE}", Accept=MEDIA_TYPES[fmt]
        )
    assert status == 200
    assert headers["Content-Type"].split(";")[0] == MEDIA_TYPES[fmt]
    assert headers["Vary"] == "Accept"
    extension = {"csv": "csv", "parquet": "parquet", "arrow": "arrows"}[fmt]
    assert headers["Content-Disposition"] == (
        f'attachment; filename="country-stats_2024-05-01_2024-05-03.{extension}"'
    )
    table = read_back(fmt, body)
    assert table.schema == TABLE_SCHEMA
    assert_frame_equal(table, expected, check_exact=True)
    if fmt is not Format.CSV:
        rest = {key: value for key, value in answer.items() if key != "stats"}
        assert metadata_of(fmt, body) == rest
        assert rest["dates_without_data"] == ["2024-05-03"]


async def test_etag_names_the_bytes_and_if_none_match_costs_no_body(
    api: str, store: Store, http: aiohttp.ClientSession
) -> None:
    url = f"{api}/country-stats?{RANGE}&format=parquet"
    status, headers, body = await fetch(http, url)
    assert status == 200
    tag = headers["ETag"]
    assert tag.startswith('"')
    assert not tag.startswith("W/")
    assert headers["Cache-Control"] == "no-cache"
    again = await fetch(http, url)
    assert (again[1]["ETag"], again[2]) == (tag, body)  # same tag, same bytes

    for if_none_match in (tag, f"W/{tag}", f'"nope", {tag}', "*"):
        status, headers304, body304 = await fetch(http, url, **{"If-None-Match": if_none_match})
        assert status == 304, if_none_match
        assert body304 == b""
        assert headers304["ETag"] == tag
        assert headers304["Vary"] == "Accept"
    assert (await fetch(http, url, **{"If-None-Match": '"other"'}))[0] == 200

    tags = {
        (await fetch(http, f"{api}/country-stats?{RANGE}&format={f}"))[1]["ETag"] for f in Format
    }
    assert len(tags) == len(Format)  # a strong tag per representation
    full = await fetch(http, f"{url}&source=full")
    assert full[1]["ETag"] != tag
    assert_frame_equal(read_back(Format.PARQUET, full[2]), read_back(Format.PARQUET, body))

    assert (await ingest(http, api, DAYS[1]))["status"] == "succeeded"  # a new commit
    status, headers, _ = await fetch(http, url, **{"If-None-Match": tag})
    assert status == 200
    assert headers["ETag"] != tag
    newer = headers["ETag"]

    # an ingest that began on a date of the range and committed nothing changes the answer,
    # and the tag
    await begin_date(store, dt.date(2024, 5, 3), "f" * 32)
    status, headers, body = await fetch(http, url, **{"If-None-Match": newer})
    assert status == 200
    assert headers["ETag"] != newer
    assert headers["Busstats-Incomplete-Dates"] == "1"
    assert [d["date"] for d in metadata_of(Format.PARQUET, body)["incomplete_dates"]] == [
        "2024-05-03"
    ]


async def test_json_is_the_default_and_inline(api: str, http: aiohttp.ClientSession) -> None:
    for accept in ({}, {"Accept": "*/*"}, {"Accept": "application/*"}, {"Accept": ""}):
        status, headers, _ = await fetch(http, f"{api}/country-stats?{RANGE}", **accept)
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert headers["Content-Disposition"] == (
            'inline; filename="country-stats_2024-05-01_2024-05-03.json"'
        )
        assert headers["Vary"] == "Accept"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/csv", Format.CSV),
        ("text/*", Format.CSV),
        ("text/csv;q=0.5, application/vnd.apache.parquet", Format.PARQUET),
        ("application/vnd.apache.arrow.stream, application/json;q=0.1", Format.ARROW),
        ("text/csv, application/json", Format.JSON),  # a tie: JSON
        ("image/png, */*;q=0.1", Format.JSON),
        ("*", Format.JSON),
        ("text/csv;q=0, */*", Format.JSON),
    ],
)
def test_accept_chooses_the_format(accept: str, expected: Format) -> None:
    assert negotiate(None, accept) is expected
    assert negotiate(Format.ARROW, accept) is Format.ARROW  # format= wins


@pytest.mark.parametrize("accept", ["image/png", "text/html, application/xml", "garbage", "a/b/c"])
def test_an_accept_header_no_format_fits_is_refused(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(None, accept)


async def test_not_acceptable_and_bad_format_are_json_errors(
    api: str, http: aiohttp.ClientSession
) -> None:
    status, headers, body = await fetch(http, f"{api}/country-stats?{RANGE}", Accept="image/png")
    assert status == 406
    assert headers["Vary"] == "Accept"
    assert "format=json, csv, parquet or arrow" in msgspec.json.decode(body)["error"]
    status, _, body = await fetch(http, f"{api}/country-stats?{RANGE}&format=xlsx")
    assert status == 400
    assert "'format' must be one of json, csv, parquet, arrow" in msgspec.json.decode(body)["error"]


def test_a_sum_beyond_64_bits_is_refused_in_tabular_formats() -> None:
    day = dt.date(2024, 5, 1)
    huge = CountryDay("Peru", day, 2**63, 1, False, 1.0, 2)
    stats = CountryStats(day, day, [huge], [], [])
    assert msgspec.json.decode(encode(stats, Format.JSON))["stats"][0]["buses_started"] == 2**63
    for fmt in (Format.CSV, Format.PARQUET, Format.ARROW):
        with pytest.raises(TooLargeForFormat, match="exceeds 64 bits; ask for JSON"):
            encode(stats, fmt)
