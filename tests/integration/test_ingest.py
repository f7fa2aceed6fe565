"""A day from the simulator into the store and back out as stats, through the real API."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from busstats.core.settings import DateParam
from busstats.reference.sim import CITIES, Fault, SimulatorConfig
from busstats.reference.sim.server import JUNK_ROWS
from busstats.storage import LocalStore, Store
from busstats.storage.keys import PARQUET, RAW, date_prefix, parquet_key, raw_key
from harness.servers import RunningSimulator, api_server, settings_for, simulator
from tests.support.expected import assert_same_stats, country_stats
from tests.support.flows import StartApi, ingest, raw_files
from tests.support.flows import country_stats as get_stats

DAY = dt.date(2024, 5, 1)
COUNTRY_OF = {city.id: city.country for city in CITIES}
SMALL = SimulatorConfig(rows=(200, 400), min_latency=0.5, max_latency=0.7)
"""Every city waits at least 0.5 s, so all 30 requests are surely in flight at once."""


async def ingest_day(
    store: Store, http: aiohttp.ClientSession, config: SimulatorConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ingest DAY from a simulator with `config`; the job and that day's stats."""
    async with simulator(config) as sim, api_server(settings_for(store, sim), store) as api:
        job = await ingest(http, api, DAY.isoformat())
        answer = await get_stats(http, api, DAY.isoformat(), DAY.isoformat())
    return job, answer


@pytest.mark.both_stores
@pytest.mark.parametrize("simulator_config", [SMALL])
async def test_a_day_is_ingested_and_the_stats_match_the_raw_files(
    store: Store, simulator: RunningSimulator, start_api: StartApi, http: aiohttp.ClientSession
) -> None:
    async with start_api(store) as api:
        job = await ingest(http, api, DAY.isoformat())
        answer = await get_stats(http, api, "2024-04-30", "2024-05-02")

    assert job["status"] == "succeeded", job
    assert len(job["cities"]) == len(CITIES)
    for city in job["cities"]:
        assert city["status"] == "succeeded"
        assert city["rows"] >= 200
        assert city["invalid_rows"] == 0
        assert city["raw_bytes"] > city["parquet_bytes"] > 0
    raw = await raw_files(store, [DAY])
    assert sorted(city_id for _, city_id in raw) == [city.id for city in CITIES]
    assert answer["from"] == "2024-04-30"
    assert answer["to"] == "2024-05-02"
    assert answer["dates_without_data"] == ["2024-04-30", "2024-05-02"]
    assert len(answer["stats"]) == 5
    assert_same_stats(answer["stats"], country_stats(raw, COUNTRY_OF))
    # every city was fetched at once: a day takes about as long as its slowest city
    assert simulator.state.max_in_flight == len(CITIES)


@pytest.mark.parametrize("upstream_wants", ["date", "datetime"])
@pytest.mark.parametrize("we_send", [DateParam.AUTO, None])
async def test_either_date_spelling_upstream_wants_is_found(
    tmp_path: Path, http: aiohttp.ClientSession, upstream_wants: str, we_send: DateParam | None
) -> None:
    config = SimulatorConfig(rows=(5, 10), max_latency=0.05, date_param=upstream_wants)
    date_param = we_send or DateParam(upstream_wants)
    store = LocalStore(tmp_path)
    async with simulator(config) as sim:
        settings = settings_for(store, sim, reference_date_param=date_param)
        async with api_server(settings, store) as api:
            job = await ingest(http, api, DAY.isoformat())
    assert job["status"] == "succeeded", job
    # a wrong first guess costs at most one fast 400 per city, never a failed city
    assert sim.state.stats_calls == len(CITIES)


async def test_any_iso_duration_spelling_counts_the_same(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(100, 200), max_latency=0.05, mixed_durations=True)
    store = LocalStore(tmp_path)
    job, answer = await ingest_day(store, http, config)
    assert job["status"] == "succeeded"
    raw = await raw_files(store, [DAY])
    spellings = b"".join(raw.values())
    assert b"P0DT" in spellings
    assert b".0S" in spellings
    assert_same_stats(answer["stats"], country_stats(raw, COUNTRY_OF))


async def test_a_failing_city_leaves_the_job_partial_and_the_others_intact(
    store: Store, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(50, 60), max_latency=0.05, faults={7: Fault.ERROR})
    job, answer = await ingest_day(store, http, config)

    assert job["status"] == "partial"
    failed = [city for city in job["cities"] if city["status"] == "failed"]
    assert [city["city_id"] for city in failed] == [7]
    assert "answered 500" in failed[0]["error"]
    assert failed[0]["rows"] == 0
    keys = await store.list_keys(date_prefix(PARQUET, DAY))
    assert parquet_key(DAY, 7, job["job_id"]) not in keys
    assert len(keys) == len(CITIES) - 1
    raw = await raw_files(store, [DAY])
    assert (DAY, 7) not in raw
    assert_same_stats(answer["stats"], country_stats(raw, COUNTRY_OF))
    # a city with no data at all makes the date incomplete, and the answer says so
    [incomplete] = answer["incomplete_dates"]
    assert incomplete["date"] == DAY.isoformat()
    assert (incomplete["cities_listed"], incomplete["cities_counted"]) == (len(CITIES), 29)
    assert "city 7" in incomplete["reason"]
    assert "answered 500" in incomplete["reason"]
    seven = next(city for city in CITIES if city.id == 7)
    row = next(r for r in answer["stats"] if r["country"] == seven.country)
    assert row["cities_counted"] == sum(c.country == seven.country for c in CITIES) - 1


async def test_junk_rows_are_counted_with_reasons_and_left_out_of_the_stats(
    store: Store, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(50, 60), max_latency=0.05, faults={3: Fault.JUNK_ROWS})
    job, answer = await ingest_day(store, http, config)

    assert job["status"] == "succeeded"
    city = next(city for city in job["cities"] if city["city_id"] == 3)
    assert city["invalid_rows"] == len(JUNK_ROWS)
    reasons = " | ".join(example["reason"] for example in city["invalid_examples"])
    assert len(city["invalid_examples"]) == 5
    assert "passengers" in reasons
    assert ">= 0" in reasons
    assert "delay 'soon'" in reasons
    assert "missing required field `delay`" in reasons
    raw = await raw_files(store, [DAY])
    # the junk follows the city's valid rows, and the examples are the first five of it
    assert [example["index"] for example in city["invalid_examples"]] == [
        city["rows"] + offset for offset in range(5)
    ]
    assert_same_stats(answer["stats"], country_stats(raw, COUNTRY_OF))


@pytest.mark.both_stores
@pytest.mark.parametrize("simulator_config", [SimulatorConfig(rows=(20, 30), max_latency=0.05)])
async def test_reingesting_a_date_replaces_it(
    store: Store, start_api: StartApi, http: aiohttp.ClientSession
) -> None:
    gone_city, old_run = 999, "0" * 32  # a city upstream no longer lists, from an old run
    await store.put_bytes(raw_key(DAY, gone_city, old_run), b"[]")
    await store.put_bytes(parquet_key(DAY, gone_city, old_run), b"stale")
    stray = f"{date_prefix(PARQUET, DAY)}_notes.txt"  # not ours: left alone, never read
    await store.put_bytes(stray, b"hello")
    async with start_api(store) as api:
        first = await ingest(http, api, DAY.isoformat())
        once = await get_stats(http, api, DAY.isoformat(), DAY.isoformat())
        second = await ingest(http, api, DAY.isoformat())
        twice = await get_stats(http, api, DAY.isoformat(), DAY.isoformat())

    assert first["status"] == second["status"] == "succeeded"
    assert first["job_id"] != second["job_id"]
    assert once == twice  # same upstream data, counted once
    assert once["incomplete_dates"] == []
    assert await store.list_keys(date_prefix(RAW, DAY)) == sorted(
        raw_key(DAY, city.id, second["job_id"]) for city in CITIES
    )
    assert await store.list_keys(date_prefix(PARQUET, DAY)) == sorted(
        [parquet_key(DAY, city.id, second["job_id"]) for city in CITIES] + [stray]
    )
    assert await store.list_keys("summary/") == ["summary/2024-05-01.parquet"]


async def test_a_job_is_still_answered_after_a_restart(
    store: Store, start_api: StartApi, http: aiohttp.ClientSession
) -> None:
    async with start_api(store) as api:
        job = await ingest(http, api, DAY.isoformat())
    async with start_api(store) as api, http.get(f"{api}/jobs/{job['job_id']}") as r:
        assert r.status == 200
        assert await r.json() == job
