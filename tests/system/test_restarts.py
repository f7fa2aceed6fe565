"""Restarts, SIGTERM and concurrent requests for one date: no job stuck, nothing interleaved."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from pathlib import Path
from typing import Any

import aiohttp

from busstats.core.settings import Settings
from busstats.jobs.records import JobStore
from busstats.reference.sim import CITIES, SimulatorConfig
from busstats.storage import LocalStore
from busstats.storage.keys import PARQUET, date_prefix
from harness.servers import api_server, serve_process, simulator
from tests.support.flows import country_stats, ingest, wait_for_job

DAY = "2024-05-01"


async def post_and_wait_until_running(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(f"{url}/process-request?date={DAY}") as response:
        job_id: str = (await response.json())["job_id"]
    async with asyncio.timeout(10):
        while True:
            async with http.get(f"{url}/jobs/{job_id}") as response:
                if (await response.json())["status"] == "running":
                    return job_id
            await asyncio.sleep(0.02)


async def stored_job(tmp_path: Path, job_id: str) -> dict[str, Any]:
    job = await JobStore(LocalStore(tmp_path / "store")).load(job_id)
    assert job is not None
    return {"status": job.status.value, "error": job.error, "finished_at": job.finished_at}


SLOW = SimulatorConfig(rows=(5, 10), max_latency=60)


def environment(tmp_path: Path, reference_url: str) -> dict[str, str]:
    return {"BUSSTATS_STORE": str(tmp_path / "store"), "BUSSTATS_REFERENCE_URL": reference_url}


async def test_sigterm_during_a_job_stops_quickly_and_records_it_interrupted(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with (
        simulator(SLOW) as sim,
        serve_process(environment(tmp_path, sim.url), http) as service,
    ):
        job_id = await post_and_wait_until_running(http, service.url)
        service.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            await service.process.wait()
    job = await stored_job(tmp_path, job_id)
    assert job["status"] == "failed"
    assert "interrupted: the service stopped" in str(job["error"])
    assert job["finished_at"] is not None
    assert await LocalStore(tmp_path / "store").list_keys("jobs/running/") == []


async def test_a_job_of_a_killed_process_is_failed_at_the_next_start(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with simulator(SLOW) as sim:
        async with serve_process(environment(tmp_path, sim.url), http) as service:
            job_id = await post_and_wait_until_running(http, service.url)
            # the API answers from memory; the stored record follows within a second
            async with asyncio.timeout(10):
                while (await stored_job(tmp_path, job_id))["status"] != "running":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            service.kill()  # no chance to record anything
            await service.process.wait()
        assert (await stored_job(tmp_path, job_id))["status"] == "running"

        async with serve_process(environment(tmp_path, sim.url), http) as service:
            job = await wait_for_job(http, service.url, job_id, limit_seconds=20)
            await service.stop()
    assert job["status"] == "failed"
    assert "stopped renewing its lease" in job["error"]
    assert all(city["status"] in {"succeeded", "failed"} for city in job["cities"])
    assert await LocalStore(tmp_path / "store").list_keys("jobs/running/") == []


async def test_two_requests_for_one_date_run_one_after_the_other(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    store = LocalStore(tmp_path)
    config = SimulatorConfig(rows=(20, 40), max_latency=0.1)
    async with simulator(config) as sim:
        settings = Settings(store=str(tmp_path), reference_url=sim.url)
        async with api_server(settings, store) as api:
            first, second = await asyncio.gather(ingest(http, api, DAY), ingest(http, api, DAY))
            twice = await country_stats(http, api, DAY, DAY)
            assert sim.state.max_in_flight <= len(CITIES)  # never two jobs' cities at once

    first, second = sorted([first, second], key=lambda job: job["started_at"])
    assert first["status"] == second["status"] == "succeeded"
    assert second["started_at"] >= first["finished_at"]
    assert len(await store.list_keys(date_prefix(PARQUET, dt.date(2024, 5, 1)))) == len(CITIES)
    async with simulator(config) as sim:
        fresh = tmp_path / "fresh"
        async with api_server(Settings(store=str(fresh), reference_url=sim.url)) as api:
            await ingest(http, api, DAY)
            once = await country_stats(http, api, DAY, DAY)
    assert twice == once


async def test_a_queued_job_answers_while_it_waits(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(5, 5), max_latency=0.3)
    async with (
        simulator(config) as sim,
        api_server(Settings(store=str(tmp_path), reference_url=sim.url)) as api,
    ):
        ids = []
        for _ in range(2):
            async with http.post(f"{api}/process-request?date={DAY}") as response:
                assert response.status == 202
                ids.append((await response.json())["job_id"])
        async with http.get(f"{api}/jobs/{ids[1]}") as response:
            assert (await response.json())["status"] in {"queued", "running"}
        for job_id in ids:
            assert (await wait_for_job(http, api, job_id))["status"] == "succeeded"
