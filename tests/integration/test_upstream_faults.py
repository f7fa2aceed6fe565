"""Reference-server faults, injected for real by the simulator on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from busstats.commit.dates import read_summary
from busstats.core.settings import Settings
from busstats.reference.sim import CITIES, Fault, SimulatorConfig
from busstats.storage import LocalStore
from busstats.storage.keys import PARQUET, RAW, city_file_of, date_prefix
from harness.servers import api_server, free_socket, simulator
from tests.support.flows import ingest

DAY = dt.date(2024, 5, 1)
BROKEN = 4
QUICK: dict[str, Any] = {"reference_attempts": 3, "reference_backoff_seconds": 0.01}


async def run_with_fault(
    tmp_path: Path, http: aiohttp.ClientSession, fault: Fault, **settings: float
) -> tuple[dict[str, object], dict[str, object], int, LocalStore]:
    """Ingest a day with one broken city; the job, that city's record, its call count."""
    config = SimulatorConfig(rows=(20, 30), max_latency=0.02, faults={BROKEN: fault})
    store = LocalStore(tmp_path)
    async with simulator(config) as sim:
        options = Settings(store=str(tmp_path), reference_url=sim.url, **{**QUICK, **settings})
        async with api_server(options, store) as api:
            job = await ingest(http, api, DAY.isoformat())
    city = next(c for c in job["cities"] if c["city_id"] == BROKEN)
    return job, city, sim.state.calls_by_city[BROKEN], store


async def assert_other_cities_stored(store: LocalStore) -> None:
    for kind in (RAW, PARQUET):
        keys = await store.list_keys(date_prefix(kind, DAY))
        assert len(keys) == len(CITIES) - 1
    stored = [city_file_of(key) for key in await store.list_keys(date_prefix(PARQUET, DAY))]
    assert BROKEN not in {file.city_id for file in stored if file is not None}


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault.HTML, "not a JSON array (it starts with '<html>"),
        (Fault.NOT_JSON, "not a JSON array (it starts with 'rows: none today'"),
        (Fault.TRUNCATED, "not a JSON array"),
    ],
)
async def test_junk_bodies_fail_only_their_city_without_retries(
    tmp_path: Path, http: aiohttp.ClientSession, fault: Fault, message: str
) -> None:
    job, city, calls, store = await run_with_fault(tmp_path, http, fault)
    assert job["status"] == "partial"
    assert city["status"] == "failed"
    assert message in str(city["error"])
    assert calls == 1  # a 200 with junk is an answer, not a hiccup
    await assert_other_cities_stored(store)


async def test_a_server_error_is_retried_then_recorded(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    job, city, calls, store = await run_with_fault(tmp_path, http, Fault.ERROR)
    assert job["status"] == "partial"
    assert "answered 500" in str(city["error"])
    assert "gave up after 3 attempts" in str(city["error"])
    assert calls == 3
    await assert_other_cities_stored(store)


async def test_a_passing_server_error_costs_nothing_but_a_retry(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    job, city, calls, _ = await run_with_fault(tmp_path, http, Fault.FLAKY)
    assert job["status"] == "succeeded"
    assert city["status"] == "succeeded"
    assert calls == 2


async def test_a_client_error_is_not_retried(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    job, city, calls, _ = await run_with_fault(tmp_path, http, Fault.NOT_FOUND)
    assert job["status"] == "partial"
    assert "answered 404" in str(city["error"])
    assert "gave up" not in str(city["error"])
    assert calls == 1


async def test_a_hanging_city_times_out_and_the_job_still_ends(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    job, city, calls, store = await run_with_fault(
        tmp_path, http, Fault.HANG, reference_timeout_seconds=0.3, reference_attempts=2
    )
    assert job["status"] == "partial"
    assert "TimeoutError" in str(city["error"]) or "Timeout" in str(city["error"])
    assert calls == 2
    await assert_other_cities_stored(store)


CUT_OFF = b"cut off"


async def reference_app(cities: bytes) -> web.Application:
    app = web.Application()

    async def list_cities(request: web.Request) -> web.StreamResponse:
        if cities == CUT_OFF:  # promise 1000 bytes, send 9, hang up
            response = web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b'[{"id": 1')
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(body=cities, content_type="application/json")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response([])

    app.router.add_get("/cities", list_cities)
    app.router.add_get("/cities/{city_id}/stats", stats)
    return app


async def ingest_from(tmp_path: Path, http: aiohttp.ClientSession, cities: bytes) -> dict[str, Any]:
    runner = web.AppRunner(await reference_app(cities))
    await runner.setup()
    sock = free_socket()
    await web.SockSite(runner, sock).start()
    try:
        settings = Settings(
            store=str(tmp_path),
            reference_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
            **QUICK,  # type: ignore[arg-type]
        )
        async with api_server(settings) as api:
            return await ingest(http, api, DAY.isoformat())
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("cities", "message"),
    [
        (b'{"cities": []}', "Expected `array`"),
        (b"<html>", "GET /cities sent not a JSON array of cities"),
        (CUT_OFF, "gave up after 3 attempts"),
        (b'[{"id": -1, "name": "X", "country": "Y"}]', "no usable city listed"),
    ],
)
async def test_an_unusable_city_list_fails_the_job_with_the_reason(
    tmp_path: Path, http: aiohttp.ClientSession, cities: bytes, message: str
) -> None:
    job = await ingest_from(tmp_path, http, cities)
    assert job["status"] == "failed"
    assert message in str(job["error"])
    assert await LocalStore(tmp_path).list_keys("raw/") == []


GOOD_ENTRY = b'{"id": 1, "name": "X", "country": "Y"}'


@pytest.mark.parametrize(
    ("entry", "reason", "city_id"),
    [
        (
            b'{"id": "7", "name": "X", "country": "Y"}',
            "Expected `int`, got `str` - at `$.id`",
            None,
        ),
        (b'{"id": -1, "name": "X", "country": "Y"}', "Expected `int` >= 0 - at `$.id`", None),
        (b'{"id": 1.5, "name": "X", "country": "Y"}', "Expected `int`, got `float`", None),
        (b'{"id": 1.0, "name": "X", "country": "Y"}', "Expected `int`, got `float`", None),
        (b'{"id": false, "name": "X", "country": "Y"}', "Expected `int`, got `bool`", None),
        (
            b'{"id": 99999999999999999999999, "name": "X", "country": "Y"}',
            "Expected `int` <= 9223372036854775807",
            None,
        ),
        (b'{"id": 2, "name": "X"}', "missing required field `country`", 2),
        (b'{"id": 2, "name": 5, "country": "Y"}', "Expected `str`, got `int` - at `$.name`", 2),
        (b"[2]", "Expected `object`, got `array`", None),
        (
            b'{"id": 1, "name": "Z", "country": "Y"}',
            "city id 1 is listed again; the entry at position 0 is kept",
            1,
        ),
    ],
)
async def test_a_bad_city_entry_is_skipped_with_its_reason_and_the_rest_ingested(
    tmp_path: Path, http: aiohttp.ClientSession, entry: bytes, reason: str, city_id: int | None
) -> None:
    job = await ingest_from(tmp_path, http, b"[" + GOOD_ENTRY + b", " + entry + b"]")
    assert job["status"] == "partial", job
    assert [(c["city_id"], c["status"]) for c in job["cities"]] == [(1, "succeeded")]
    [rejected] = job["rejected_cities"]
    assert rejected["position"] == 1
    assert rejected["city_id"] == city_id
    assert reason in rejected["reason"]
    assert rejected["entry"] == entry.decode()
    run = job["job_id"]
    assert await LocalStore(tmp_path).list_keys("raw/") == [
        f"raw/date=2024-05-01/city=1.{run}.json"
    ]


async def test_a_city_whose_entry_turns_bad_keeps_its_earlier_files(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    both = b'[{"id": 1, "name": "X", "country": "Y"}, {"id": 2, "name": "Z", "country": "Y"}]'
    second_unnamed = b'[{"id": 1, "name": "X", "country": "Y"}, {"id": 2, "country": "Y"}]'
    first = await ingest_from(tmp_path, http, both)
    assert first["status"] == "succeeded"
    job = await ingest_from(tmp_path, http, second_unnamed)
    assert job["status"] == "partial"
    assert job["rejected_cities"][0]["city_id"] == 2
    assert await LocalStore(tmp_path).list_keys("parquet/") == [
        f"parquet/date=2024-05-01/city=1.{job['job_id']}.parquet",
        f"parquet/date=2024-05-01/city=2.{first['job_id']}.parquet",
    ]
    summary, _ = await read_summary(LocalStore(tmp_path), DAY)
    assert summary.filter("counted")["city_id"].to_list() == [1, 2]  # city 2 still counts


async def test_the_simulators_bad_city_entries_are_each_rejected(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(20, 30), max_latency=0.02, bad_city_entries=True)
    async with simulator(config) as sim:
        settings = Settings(store=str(tmp_path), reference_url=sim.url, **QUICK)
        async with api_server(settings) as api:
            job = await ingest(http, api, DAY.isoformat())
    assert job["status"] == "partial"
    assert len(job["cities"]) == len(CITIES)
    assert all(c["status"] == "succeeded" for c in job["cities"])
    reasons = [(r["position"], r["city_id"], r["reason"]) for r in job["rejected_cities"]]
    assert reasons == [
        (30, None, "Expected `int` >= 0 - at `$.id`"),
        (31, None, "Expected `int`, got `str` - at `$.id`"),
        (32, None, "Expected `int`, got `float` - at `$.id`"),
        (33, None, "Expected `int`, got `bool` - at `$.id`"),
        (34, None, "Expected `int` <= 9223372036854775807 - at `$.id`"),
        (35, 33, "Object missing required field `country`"),
        (36, 34, "Expected `str`, got `null` - at `$.name`"),
        (37, 0, "city id 0 is listed again; the entry at position 0 is kept"),
        (38, None, "Expected `object`, got `str`"),
    ]
    assert all(r["entry"].isprintable() for r in job["rejected_cities"])


async def test_city_names_never_reach_a_key_or_path(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cities = (
        '[{"id": 3, "name": "../../etc/passwd", "country": "a/b\\\\c"},'
        ' {"id": 12, "name": "C:\\\\x", "country": "Ünïcode & (co), l\'île"}]'
    ).encode()
    job = await ingest_from(tmp_path, http, cities)
    assert job["status"] == "succeeded", job
    store = LocalStore(tmp_path)
    data_files = await store.list_keys("raw/") + await store.list_keys("parquet/")
    run = job["job_id"]
    assert data_files == [
        f"raw/date=2024-05-01/city=12.{run}.json",
        f"raw/date=2024-05-01/city=3.{run}.json",
        f"parquet/date=2024-05-01/city=12.{run}.parquet",
        f"parquet/date=2024-05-01/city=3.{run}.parquet",
    ]
