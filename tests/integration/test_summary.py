"""Per-date summaries: the default route for stats, identical to the full data to the last digit."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest

from busstats.commit.summaries import (
    PARTIAL_SCHEMA,
    SUMMARY_SCHEMA,
    decode_summaries,
    encode_summary,
)
from busstats.core.settings import Settings
from busstats.ingest.convert import convert_file
from busstats.model.cities import City
from busstats.model.stats import Source
from busstats.reference.sim import Fault, SimulatorConfig
from busstats.stats.query import country_stats
from busstats.storage import LocalStore, Store
from busstats.storage.keys import summary_key
from harness.servers import MotoEndpoint, api_server, s3_settings, simulator
from tests.support.faultproxy import fault_proxy
from tests.support.flows import commit_city, ingest, wait_for_job

DAY = dt.date(2024, 5, 1)


async def stats_both_ways(http: aiohttp.ClientSession, api: str, start: str, end: str) -> Any:
    answers = []
    for source in ("summary", "full"):
        query = {"from": start, "to": end, "source": source}
        async with http.get(f"{api}/country-stats", params=query) as response:
            assert response.status == 200
            answers.append(await response.read())
    assert answers[0] == answers[1]  # byte for byte, every digit of every average
    return json.loads(answers[0])


async def test_fractional_delays_sum_the_same_by_either_route(store: Store, tmp_path: Path) -> None:
    delays = ["PT0.1S", "PT0.2S", "PT3.3S", "PT1H0.7S", "PT59.999999S", "-PT0.3S", "P0D"]
    for city_id, country in enumerate(["Peru", "Peru", "Côte d'Ivoire"]):
        rows = [
            {
                "departure-time": f"2024-05-01T{hour:02d}:00:00",
                "bus-type": "B",
                "passengers": hour,
                "delay": delays[(hour + city_id) % len(delays)],
                "accident": False,
            }
            for hour in range(24)
        ]
        raw = tmp_path / f"{city_id}.json"
        raw.write_text(json.dumps(rows))
        city = City(city_id, "X", country)
        result = convert_file(raw, raw.with_suffix(".parquet"), city, DAY)
        await commit_city(store, DAY, city, raw, raw.with_suffix(".parquet"), result)
    from_full = await country_stats(store, DAY, DAY, Source.FULL)
    from_summary = await country_stats(store, DAY, DAY, Source.SUMMARY)
    assert from_summary == from_full
    assert [s.country for s in from_summary.stats] == ["Côte d'Ivoire", "Peru"]


@pytest.mark.both_stores
async def test_an_ingest_writes_one_summary_and_both_routes_agree(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    store = LocalStore(tmp_path)
    config = SimulatorConfig(rows=(50, 80), max_latency=0.02, mixed_durations=True)
    async with (
        simulator(config) as sim,
        api_server(Settings(store=str(tmp_path), reference_url=sim.url), store) as api,
    ):
        for day in ("2024-05-01", "2024-05-02"):
            assert (await ingest(http, api, day))["status"] == "succeeded"
        answer = await stats_both_ways(http, api, "2024-04-30", "2024-05-03")
    assert await store.list_keys("summary/") == [
        "summary/2024-05-01.parquet",
        "summary/2024-05-02.parquet",
    ]
    assert answer["dates_without_data"] == ["2024-04-30", "2024-05-03"]
    assert len(answer["stats"]) == 10


async def test_a_city_that_failed_this_time_is_summarised_from_its_earlier_data(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    store = LocalStore(tmp_path)
    answers, jobs = [], []
    for faults in ({}, {6: Fault.ERROR}):
        config = SimulatorConfig(rows=(20, 30), max_latency=0.02, faults=faults)
        async with simulator(config) as sim:
            options = Settings(
                store=str(tmp_path), reference_url=sim.url, reference_backoff_seconds=0.01
            )
            async with api_server(options, store) as api:
                jobs.append(await ingest(http, api, DAY.isoformat()))
                answers.append(await stats_both_ways(http, api, DAY.isoformat(), DAY.isoformat()))
    assert [job["status"] for job in jobs] == ["succeeded", "partial"]
    assert answers[1] == answers[0]  # same upstream data; city 6 counted from its earlier files


@pytest.mark.both_stores
async def test_a_running_reingest_leaves_the_previous_commit_in_place(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    store = LocalStore(tmp_path)
    async with (
        simulator(SimulatorConfig(rows=(20, 30), max_latency=0.02)) as sim,
        api_server(Settings(store=str(tmp_path), reference_url=sim.url), store) as api,
    ):
        await ingest(http, api, DAY.isoformat())
    committed = await store.get_bytes(summary_key(DAY))
    before = await country_stats(store, DAY, DAY)
    slow = SimulatorConfig(seed=1, rows=(20, 30), max_latency=1.0)
    async with (
        simulator(slow) as sim,
        api_server(Settings(store=str(tmp_path), reference_url=sim.url), store) as api,
    ):
        async with http.post(f"{api}/process-request?date={DAY}") as response:
            job_id = (await response.json())["job_id"]
        async with asyncio.timeout(10):
            while sim.state.stats_calls == 0:  # noqa: ASYNC110 - polling another task's counter
                await asyncio.sleep(0.01)
        # mid-job: the previous commit stands and is what both routes answer from
        assert await store.get_bytes(summary_key(DAY)) == committed
        for source in Source:
            assert await country_stats(store, DAY, DAY, source) == before
        assert (await wait_for_job(http, api, job_id))["status"] == "succeeded"
    assert await store.get_bytes(summary_key(DAY)) != committed
    assert await country_stats(store, DAY, DAY) != before  # another seed: other numbers


async def test_stats_cost_one_store_request_per_summarised_date(
    moto: MotoEndpoint, bucket: str, http: aiohttp.ClientSession
) -> None:
    async with (
        fault_proxy(moto.url) as proxy,
        simulator(SimulatorConfig(rows=(5, 10), max_latency=0)) as sim,
    ):
        settings = s3_settings(bucket, proxy.url, reference_url=sim.url)
        async with api_server(settings) as api:
            for day in ("2024-05-01", "2024-05-02", "2024-05-03"):
                await ingest(http, api, day)
            seen_before = len(proxy.seen)
            async with http.get(f"{api}/country-stats?from=2024-05-01&to=2024-05-03") as response:
                assert response.status == 200
            requests = proxy.seen[seen_before:]
    # a short range: one GET per date, no listing (a job that just ended may still be
    # releasing its leases meanwhile: those writes are not the query's)
    reads = sorted(r for r in requests if r.startswith("GET "))
    assert reads == [f"GET /{bucket}/summary/2024-05-0{n}.parquet?" for n in (1, 2, 3)]


async def test_the_longest_empty_range_costs_one_listing(
    moto: MotoEndpoint, bucket: str, http: aiohttp.ClientSession
) -> None:
    async with (
        fault_proxy(moto.url) as proxy,
        api_server(s3_settings(bucket, proxy.url)) as api,
    ):
        seen_before = len(proxy.seen)
        query = {"from": "2020-01-01", "to": "2030-01-07"}  # 3,660 days
        async with http.get(f"{api}/country-stats", params=query) as response:
            assert response.status == 200
            answer = await response.json()
        requests = proxy.seen[seen_before:]
    assert len(answer["dates_without_data"]) == 3660
    assert len(requests) == 1, requests  # which dates of the range have a summary: none
    assert "list-type=2" in requests[0]


def test_a_projection_decodes_only_the_columns_asked_for_old_summaries_included() -> None:
    # The stats routes decode only what they use; a summary from before commits still gets
    # its default file keys and counts.
    row: dict[str, Any] = {
        "date": DAY,
        "city_id": 7,
        "city_name": "Lake Amy",
        "country": "Peru",
        "buses": 2,
        "passengers": 3,
        "delay_microseconds": 4,
        "accident": False,
    }
    old = io.BytesIO()
    pl.DataFrame([row], schema=PARTIAL_SCHEMA).write_parquet(old)
    committed = {**row, "city_id": 8, "counted": True, "parquet_key": "parquet/x.r.parquet"}
    new = encode_summary(pl.DataFrame([committed], schema=SUMMARY_SCHEMA, strict=False), "r")
    both = decode_summaries([old.getvalue(), new], ["parquet_key", "city_id", "counted"])
    assert both.columns == ["city_id", "counted", "parquet_key"]  # SUMMARY_SCHEMA's order
    assert both.rows() == [
        (7, True, "parquet/date=2024-05-01/city=7.parquet"),
        (8, True, "parquet/x.r.parquet"),
    ]
    assert decode_summaries([], ["buses"]).schema == pl.Schema({"buses": pl.Int64})
    with pytest.raises(ValueError, match="not summary columns"):
        decode_summaries([new], ["nope"])
