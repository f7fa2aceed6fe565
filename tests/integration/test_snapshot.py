"""Every answer from one committed snapshot: never half a re-ingest, and jobs that always end."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiohttp
import pytest

from busstats.jobs.records import JobStore
from busstats.reference.sim import SimulatorConfig
from busstats.storage.keys import date_lease_key, job_lease_key
from harness.servers import (
    MotoEndpoint,
    RunningSimulator,
    api_server,
    open_s3_store,
    s3_settings,
    simulator,
)
from tests.support.faultproxy import fault_proxy
from tests.support.flows import ingest, wait_for_job

DAY = "2024-05-01"


async def stats(http: aiohttp.ClientSession, api: str, source: str) -> dict[str, Any]:
    query = {"from": DAY, "to": DAY, "source": source}
    async with http.get(f"{api}/country-stats", params=query) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
    return {"stats": answer["stats"], "incomplete_dates": answer["incomplete_dates"]}


@pytest.mark.parametrize("source", ["summary", "full"])
# Cities answer at different times, so a reader of a half-done re-ingest would see a mix.
@pytest.mark.parametrize(
    "simulator_config", [SimulatorConfig(seed=0, rows=(30, 60), max_latency=0.5)]
)
@pytest.mark.both_stores
async def test_answers_during_reingests_are_the_before_or_the_after(
    simulator: RunningSimulator, api: str, http: aiohttp.ClientSession, source: str
) -> None:
    committed: list[dict[str, Any]] = []
    for seed in (0, 1):  # the two values the date will switch between
        simulator.config.seed = seed
        assert (await ingest(http, api, DAY))["status"] == "succeeded"
        committed.append(await stats(http, api, source))
    assert committed[0] != committed[1]

    async def reingest() -> None:
        for seed in (0, 1, 0):
            simulator.config.seed = seed
            assert (await ingest(http, api, DAY))["status"] == "succeeded"

    writer = asyncio.create_task(reingest())
    answers: list[dict[str, Any]] = []
    while not writer.done():
        answers.append(await stats(http, api, source))
    await writer
    wrong = [answer for answer in answers if answer not in committed]
    assert len(answers) >= 5
    assert wrong == [], f"{len(wrong)} of {len(answers)} answers were neither before nor after"


async def test_a_job_ends_with_its_reason_after_s3_was_cut_for_20_seconds(
    moto: MotoEndpoint, bucket: str, http: aiohttp.ClientSession
) -> None:
    day = dt.date(2024, 5, 1)
    config = SimulatorConfig(rows=(20, 40), min_latency=0.2, max_latency=3.0)
    async with fault_proxy(moto.url) as proxy, simulator(config) as sim:
        settings = s3_settings(bucket, proxy.url, reference_url=sim.url, s3_attempts=2)
        async with api_server(settings) as api:
            async with http.post(f"{api}/process-request", params={"date": DAY}) as response:
                job_id = (await response.json())["job_id"]
            async with asyncio.timeout(20):  # the cut starts once a city is stored
                while not any("PUT" in line and "/parquet/" in line for line in proxy.seen):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            proxy.fail(".*", ".*")
            await asyncio.sleep(20)  # the outage itself, not a wait for something to happen
            proxy.heal()
            job = await wait_for_job(http, api, job_id, limit_seconds=90)
    assert job["status"] in {"partial", "failed"}, job
    assert job["finished_at"] is not None
    assert job["error"]
    assert {city["status"] for city in job["cities"]} <= {"succeeded", "failed"}
    assert all(city["error"] for city in job["cities"] if city["status"] == "failed")
    store = await open_s3_store(moto.url, bucket)
    try:
        stored = await JobStore(store).load(job_id)
        assert stored is not None
        assert stored.status.value == job["status"]
        assert await store.list_keys(job_lease_key(job_id)) == []
        assert await store.list_keys(date_lease_key(day)) == []
    finally:
        await store.close()
