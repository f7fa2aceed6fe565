"""PUT /raw/{date}/{city_id}: a city's day sent as upstream would send it counts exactly as a
fetch of the same bytes would, through the same commit (other cities untouched, the date's
lease respected), with its invalid rows in a job of `source: upload`; a bad body is a 4xx
that changes nothing, a body over the cap a 413 read no further than the cap."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import polars as pl
import pytest
from multidict import CIMultiDictProxy

from busstats.commit.dates import ONLY_UPLOADED, read_summary, upload_rows
from busstats.commit.summaries import SUMMARY_SCHEMA
from busstats.model.cities import City
from busstats.model.summaries import StoredCity
from busstats.reference.sim import SimulatorConfig
from busstats.storage import LocalStore, Store
from harness.servers import RunningSimulator
from tests.support.expected import assert_same_stats, country_stats
from tests.support.flows import StartApi, ingest, raw_files, wait_for_job

DAY = "2024-05-01"
DATE = dt.date(2024, 5, 1)
CAP_MB = 1


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(rows=(5, 40), max_latency=0.0)


@pytest.fixture
async def api(store: Store, start_api: StartApi) -> AsyncIterator[str]:
    async with start_api(store, city_max_mb=CAP_MB) as url:
        yield url


async def cities_of(
    http: aiohttp.ClientSession, simulator: RunningSimulator
) -> list[dict[str, Any]]:
    async with http.get(f"{simulator.url}/cities") as response:
        cities: list[dict[str, Any]] = await response.json()
    return cities


async def upstream_day(
    http: aiohttp.ClientSession, simulator: RunningSimulator, city_id: int
) -> bytes:
    """A city's day as the simulator sends it, e.g. saved from another system."""
    params = {"date": f"{DAY}T00:00:00Z"}
    async with http.get(f"{simulator.url}/cities/{city_id}/stats", params=params) as response:
        assert response.status == 200, await response.text()
        return await response.read()


def changed(raw: bytes) -> bytes:
    """The day with its first row dropped, passengers raised and two invalid rows added."""
    rows: list[dict[str, Any]] = json.loads(raw)[1:]
    for row in rows:
        row["passengers"] += 3
    rows.insert(1, {"departure-time": "not a time", "bus-type": "x"})
    rows.append({**rows[0], "passengers": -5})
    return json.dumps(rows).encode()


async def put(
    http: aiohttp.ClientSession,
    api: str,
    city_id: int | str,
    body: Any,
    day: str = DAY,
    headers: dict[str, str] | None = None,
    **query: str,
) -> tuple[int, dict[str, Any], CIMultiDictProxy[str]]:
    async with http.put(
        f"{api}/raw/{day}/{city_id}", data=body, params=query, headers=headers
    ) as response:
        return response.status, await response.json(), response.headers


async def all_keys(store: Store) -> list[str]:
    """Every key, once no job lease is left (a job releases its lease after recording its
    end, so a finished job's lease may linger for a moment)."""
    async with asyncio.timeout(10):
        while True:
            if not await store.list_keys("jobs/running/"):
                break
            await asyncio.sleep(0.02)
    return sorted(await store.list_keys(""))


def others(summary: pl.DataFrame, city_id: int) -> pl.DataFrame:
    return summary.filter(pl.col("city_id") != city_id).drop("commit_id").sort("city_id")


@pytest.mark.both_stores
async def test_an_upload_counts_like_a_fetch_of_the_same_bytes(
    api: str, simulator: RunningSimulator, store: Store, http: aiohttp.ClientSession
) -> None:
    assert (await ingest(http, api, DAY))["status"] == "succeeded"
    cities = await cities_of(http, simulator)
    city_id = cities[1]["id"]
    before, _ = await read_summary(store, DATE)
    body = changed(await upstream_day(http, simulator, city_id))

    status, job, headers = await put(http, api, city_id, body)

    assert status == 201, job
    assert headers["Location"] == f"/jobs/{job['job_id']}"
    assert job["source"] == "upload"
    assert job["status"] == "succeeded"
    assert job["commit_id"] == job["job_id"]
    (report,) = job["cities"]
    assert (report["city_id"], report["city_name"], report["country"]) == (
        city_id,
        cities[1]["name"],
        cities[1]["country"],
    )
    assert report["rows"] == len(json.loads(body)) - 2
    assert report["invalid_rows"] == 2
    assert [e["index"] for e in report["invalid_examples"]] == [1, len(json.loads(body)) - 1]
    assert report["raw_bytes"] == len(body)
    assert await wait_for_job(http, api, job["job_id"]) == job  # as recorded

    after, _ = await read_summary(store, DATE)
    assert others(after, city_id).equals(others(before, city_id))  # untouched
    row = after.filter(city_id=city_id).row(0, named=True)
    assert row["run_id"] == job["job_id"]
    assert row["buses"] == report["rows"]
    assert await store.get_bytes(row["raw_key"]) == body  # stored as sent
    # Nothing superseded is left: only the committed files remain under the date.
    named = set(after["raw_key"]) | set(after["parquet_key"])
    assert set(await store.list_keys("raw/")) | set(await store.list_keys("parquet/")) == named

    raws = await raw_files(store, [DATE])
    assert raws[(DATE, city_id)] == body
    country_of = {c["id"]: c["country"] for c in cities}
    expected = country_stats(raws, country_of)
    for source in ("summary", "full"):
        query = {"from": DAY, "to": DAY, "source": source}
        async with http.get(f"{api}/country-stats", params=query) as response:
            assert response.status == 200
            assert_same_stats((await response.json())["stats"], expected)


async def test_a_gzip_body_is_decoded_and_stored_as_sent_decoded(
    api: str, simulator: RunningSimulator, store: Store, http: aiohttp.ClientSession
) -> None:
    city_id = (await cities_of(http, simulator))[0]["id"]
    body = await upstream_day(http, simulator, city_id)

    status, job, _ = await put(
        http, api, city_id, gzip.compress(body), headers={"Content-Encoding": "gzip"}
    )

    assert status == 201, job
    assert job["cities"][0]["rows"] == len(json.loads(body))
    assert job["cities"][0]["raw_bytes"] == len(body)
    summary, _ = await read_summary(store, DATE)
    counted = summary.filter("counted")
    assert counted["city_id"].to_list() == [city_id]
    # a date without data: the other cities upstream lists are there, not counted
    others = summary.filter(~pl.col("counted"))
    assert len(others) == len(await cities_of(http, simulator)) - 1
    assert set(others["missing_reason"]) == {ONLY_UPLOADED}
    assert await store.get_bytes(counted["raw_key"][0]) == body


async def test_bad_uploads_are_refused_and_change_nothing(
    api: str, simulator: RunningSimulator, store: Store, http: aiohttp.ClientSession
) -> None:
    assert (await ingest(http, api, DAY))["status"] == "succeeded"
    city = (await cities_of(http, simulator))[0]
    keys = await all_keys(store)
    bomb = gzip.compress(b"[" + b" " * (CAP_MB * 2**20 + 10) + b"]")
    refused: list[tuple[int, Any, dict[str, Any]]] = [
        (422, b"<html>busy</html>", {}),
        (422, b'{"rows": []}', {}),
        (422, b"", {}),
        (422, b'[{"passengers": 1}, ', {}),
        (400, b"not gzip at all", {"headers": {"Content-Encoding": "gzip"}}),
        (400, gzip.compress(b"[]")[:-6], {"headers": {"Content-Encoding": "gzip"}}),
        (415, b"[]", {"headers": {"Content-Encoding": "br"}}),
        (413, bomb, {"headers": {"Content-Encoding": "gzip"}}),
        (400, b"[]", {"day": "2024-02-30"}),
        (400, b"[]", {"city_name": city["name"] + " (renamed)", "country": city["country"]}),
        (400, b"[]", {"city_name": "Only a name"}),
    ]
    for expected, body, options in refused:
        status, answer, _ = await put(http, api, city["id"], body, **options)
        assert status == expected, (body[:40], options, answer)
        assert answer["error"], answer
    for city_id in ("-1", "x", str(2**63)):
        assert (await put(http, api, city_id, b"[]"))[0] == 400
    status, answer, _ = await put(http, api, 987654, b"[]")
    assert status == 400
    assert "city_name" in answer["error"], answer

    assert await all_keys(store) == keys


async def test_an_unknown_city_is_added_with_its_given_name(
    api: str, simulator: RunningSimulator, store: Store, http: aiohttp.ClientSession
) -> None:
    assert (await ingest(http, api, DAY))["status"] == "succeeded"
    before, _ = await read_summary(store, DATE)
    body = await upstream_day(http, simulator, (await cities_of(http, simulator))[0]["id"])

    status, job, _ = await put(http, api, 987654, body, city_name="Ghent", country="Belgium")

    assert status == 201, job
    after, _ = await read_summary(store, DATE)
    assert others(after, 987654).equals(others(before, 987654))
    row = after.filter(city_id=987654).row(0, named=True)
    assert (row["city_name"], row["country"], row["counted"]) == ("Ghent", "Belgium", True)
    # Known now: the date's summary names it, and a different name is refused.
    assert (await put(http, api, 987654, body, city_name="Gent", country="Belgium"))[0] == 400
    assert (await put(http, api, 987654, body))[0] == 201


def over_the_cap() -> AsyncIterator[bytes]:
    """A valid array eight times the cap, streamed in small chunks, never held whole."""
    row = json.dumps(
        {
            "departure-time": f"{DAY}T08:00:00Z",
            "bus-type": "regular",
            "passengers": 3,
            "delay": "PT60S",
            "accident": False,
        }
    ).encode()
    chunk = b",".join([row] * 400) + b","
    chunks = 8 * CAP_MB * 2**20 // len(chunk)

    async def body() -> AsyncIterator[bytes]:
        yield b"["
        for _ in range(chunks):
            yield chunk
        yield row + b"]"

    return body()


async def test_a_body_over_the_cap_is_refused_and_nothing_stored(
    api: str, store: Store, http: aiohttp.ClientSession
) -> None:
    keys = await all_keys(store)

    status, answer, _ = await put(http, api, 1, over_the_cap())

    assert status == 413, answer
    assert "cap" in answer["error"]
    assert await all_keys(store) == keys


async def test_a_body_over_the_cap_is_never_held(
    local_store: LocalStore, start_api: StartApi, http: aiohttp.ClientSession
) -> None:
    """The process (server and client) never holds more than a quarter of the body. A local
    store: moto runs in this process, and what it allocates for other requests would count."""
    async with start_api(local_store, city_max_mb=CAP_MB) as api:
        # Once untraced: the first requests load what the process keeps for later ones.
        assert (await put(http, api, 1, over_the_cap()))[0] == 413
        tracemalloc.start()
        try:
            try:
                status, _, _ = await put(http, api, 1, over_the_cap())
            finally:
                _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert status == 413
    assert peak < 2 * CAP_MB * 2**20, f"peak {peak:,} bytes while receiving"


@pytest.mark.parametrize(
    "simulator_config", [SimulatorConfig(rows=(5, 40), min_latency=1.0, max_latency=1.5)]
)
async def test_an_upload_waits_for_an_ingest_of_its_date(
    store: Store, simulator: RunningSimulator, start_api: StartApi, http: aiohttp.ClientSession
) -> None:
    """The upload commits after the ingest holding the date ends; both commits stand."""
    slow = simulator
    async with start_api(store) as api:
        cities = await cities_of(http, slow)
        city_id = cities[0]["id"]
        async with asyncio.timeout(30):
            body = changed(await upstream_day(http, slow, city_id))
        async with http.post(f"{api}/process-request", params={"date": DAY}) as response:
            ingest_id = (await response.json())["job_id"]
        async with asyncio.timeout(30):
            while True:  # running: it holds the date's lease
                async with http.get(f"{api}/jobs/{ingest_id}") as response:
                    if (await response.json())["status"] == "running":
                        break
                await asyncio.sleep(0.02)

            status, upload, _ = await put(http, api, city_id, body)

        assert status == 201, upload
        fetched = await wait_for_job(http, api, ingest_id)
        assert fetched["status"] == "succeeded"
        assert upload["started_at"] >= fetched["finished_at"]
        summary, _ = await read_summary(store, DATE)
        assert summary["commit_id"].unique().to_list() == [upload["job_id"]]
        assert summary.filter("counted").height == len(cities)
        runs = dict(zip(summary["city_id"], summary["run_id"], strict=True))
        assert runs == {c["id"]: ingest_id for c in cities} | {city_id: upload["job_id"]}
        raws = await raw_files(store, [DATE])
        assert raws[(DATE, city_id)] == body
        assert_same_stats(
            (await country_stats_of(http, api))["stats"],
            country_stats(raws, {c["id"]: c["country"] for c in cities}),
        )


async def country_stats_of(http: aiohttp.ClientSession, api: str) -> dict[str, Any]:
    async with http.get(f"{api}/country-stats", params={"from": DAY, "to": DAY}) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
    return answer


def test_an_upload_commit_keeps_every_other_row_as_it_was() -> None:
    """Counted or not, another city's row is carried over unchanged; this city's is new."""
    kept = {"raw_key": None, "parquet_key": None, "run_id": None, "commit_id": "old"}
    previous = pl.DataFrame(
        [
            {
                **kept,
                "date": DATE,
                "city_id": city_id,
                "city_name": f"c{city_id}",
                "country": "X",
                "buses": buses,
                "passengers": 1,
                "delay_microseconds": 2,
                "accident": False,
                "counted": counted,
                "missing_reason": None if counted else "upstream failed",
            }
            for city_id, buses, counted in [(1, 5, True), (2, 0, False), (3, 9, True)]
        ],
        schema=SUMMARY_SCHEMA,
    )
    new = StoredCity(City(3, "c3", "X"), "raw/new", "parquet/new", 4, 7, 8, True)

    rows = upload_rows(DATE, previous, new, "f" * 32)

    assert others(rows, 3).equals(others(previous, 3))
    assert rows["commit_id"].unique().to_list() == ["f" * 32]
    row = rows.filter(city_id=3).row(0, named=True)
    assert (row["buses"], row["raw_key"], row["run_id"], row["counted"]) == (
        4,
        "raw/new",
        "f" * 32,
        True,
    )
