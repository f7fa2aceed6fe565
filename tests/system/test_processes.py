"""Real `busstats serve` processes on one moto bucket: kill -9 at each step of an ingest,
a rolling restart, and two processes taking requests for the same date."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from busstats.commit.dates import read_summary
from busstats.reference.sim import CITIES, SimulatorConfig
from busstats.storage import S3Store
from busstats.storage.keys import PARQUET, RAW, date_prefix
from harness.servers import (
    MotoEndpoint,
    RunningSimulator,
    open_s3_store,
    s3_environment,
    serve_process,
    simulator,
)
from tests.support.expected import assert_same_stats, country_stats
from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.flows import country_stats as get_stats
from tests.support.flows import ingest, raw_files, wait_for_job

D1, D2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)
COUNTRY_OF = {city.id: city.country for city in CITIES}


@pytest.fixture
async def proxy(moto: MotoEndpoint) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(moto.url) as running:
        yield running


@pytest.fixture
async def s3(moto: MotoEndpoint, bucket: str) -> AsyncIterator[S3Store]:
    store = await open_s3_store(moto.url, bucket)
    yield store
    await store.close()


def environment(bucket: str, endpoint: str, sim: RunningSimulator) -> dict[str, str]:
    return {
        **s3_environment(bucket, endpoint),
        "BUSSTATS_REFERENCE_URL": sim.url,
        "BUSSTATS_S3_ATTEMPTS": "2",
    }


async def post(http: aiohttp.ClientSession, url: str, day: dt.date) -> str:
    async with http.post(f"{url}/process-request", params={"date": day.isoformat()}) as response:
        assert response.status == 202
        job_id: str = (await response.json())["job_id"]
    return job_id


async def job_of(http: aiohttp.ClientSession, url: str, job_id: str) -> dict[str, Any]:
    async with http.get(f"{url}/jobs/{job_id}") as response:
        assert response.status == 200
        job: dict[str, Any] = await response.json()
    return job


async def files_named_by_commits(store: S3Store, day: dt.date) -> tuple[list[str], list[str]]:
    """(the date's city files, those its commit names)."""
    summary, _ = await read_summary(store, day)
    counted = summary.filter("counted")
    named = sorted([*counted["raw_key"], *counted["parquet_key"]])
    stored = sorted(
        await store.list_keys(date_prefix(RAW, day))
        + await store.list_keys(date_prefix(PARQUET, day))
    )
    return stored, named


async def until(condition: Callable[[], bool], limit: float = 20) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - another task's state, polled with a bound
            await asyncio.sleep(0.02)


async def swept(store: S3Store, day: dt.date, limit: float = 20) -> None:
    """Wait (bounded) until the date holds exactly the city files its commit names."""
    async with asyncio.timeout(limit):
        while True:
            stored, named = await files_named_by_commits(store, day)
            if stored == named:
                return
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("step", ["download", "upload", "commit", "sweep"])
async def test_kill_9_at_any_step_leaves_the_previous_commit_readable(
    bucket: str, proxy: FaultProxy, s3: S3Store, http: aiohttp.ClientSession, step: str
) -> None:
    config = SimulatorConfig(seed=0, rows=(20, 40), max_latency=0.2)
    async with simulator(config) as sim:
        env = environment(bucket, proxy.url, sim)
        async with serve_process(env, http) as service:
            assert (await ingest(http, service.url, D1.isoformat()))["status"] == "succeeded"
            before = await get_stats(http, service.url, D1.isoformat(), D1.isoformat())

            sim.config.seed, sim.config.min_latency = 1, 0.0  # upstream now answers otherwise
            if step == "download":
                sim.config.min_latency = sim.config.max_latency = 30
                trap = None
            else:
                target = {
                    "upload": r"/parquet/date=2024-05-0[12]/",
                    "commit": r"/summary/2024-05-0[12]",
                    "sweep": r"delete",
                }[step]
                # a sweep deletes city files; job index entries are deleted alike, by POST
                body = r"<Key>(raw|parquet)/date=" if step == "sweep" else None
                # a commit replaces a summary (If-Match), where a first ingest's placeholder
                # is created (If-None-Match)
                header = "If-Match" if step == "commit" else None
                trap = proxy.hold("POST" if step == "sweep" else "PUT", target, body, header)
            job_id = await post(http, service.url, D1)
            await post(http, service.url, D2)  # a first ingest, cut short too
            if trap is None:
                await until(lambda: sim.state.in_flight > 0)
            elif step == "upload":  # a Parquet upload waits, and D2 has raw files stored
                await until(lambda: trap.held > 0)
                async with asyncio.timeout(20):
                    while not await s3.list_keys(date_prefix(RAW, D2)):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
            else:  # commit: both dates' summaries wait; sweep: D1's clean-up waits
                await until(lambda: trap.held >= (2 if step == "commit" else 1))
            service.kill()
            await service.process.wait()
        proxy.heal()
        sim.config.min_latency = sim.config.max_latency = 0.2

        async with serve_process(env, http) as service:
            # the killed process's leases expire; this process then ends its jobs
            job = await wait_for_job(http, service.url, job_id, limit_seconds=20)
            assert job["status"] == "failed"
            assert "stopped renewing its lease" in job["error"]
            assert {c["status"] for c in job["cities"]} <= {"succeeded", "failed"}
            after = await get_stats(http, service.url, D1.isoformat(), D2.isoformat())
            d1 = [row for row in after["stats"] if row["date"] == D1.isoformat()]
            if step == "sweep":  # the commit had landed: the new data counts
                assert d1 != before["stats"]
                assert job["commit_id"] == job_id
                assert "after it committed" in job["error"]
            else:
                assert d1 == before["stats"]
            assert_same_stats(d1, country_stats(await raw_files(s3, [D1]), COUNTRY_OF))
            assert D1.isoformat() not in [d["date"] for d in after["incomplete_dates"]]
            if step in {"upload", "commit"}:  # D2 began its first ingest, cut short uncommitted
                [d2] = after["incomplete_dates"]
                assert (d2["date"], d2["cities_listed"]) == (D2.isoformat(), None)
                assert "nothing was committed" in d2["reason"]
            await swept(s3, D1)  # the dead job's leftovers under D1 are gone
            async with asyncio.timeout(20):  # and both dead jobs' leases
                while await s3.list_keys("jobs/running/"):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)

            # running the date again repairs it, and sweeps the dead run's files
            assert (await ingest(http, service.url, D2.isoformat()))["status"] == "succeeded"
            repaired = await get_stats(http, service.url, D2.isoformat(), D2.isoformat())
        assert repaired["incomplete_dates"] == []
        stored, named = await files_named_by_commits(s3, D2)
        assert stored == named
        assert len(named) == 2 * len(CITIES)


async def test_a_rolling_restart_never_fails_a_running_job_and_dates_never_interleave(
    bucket: str, moto: MotoEndpoint, s3: S3Store, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(20, 40), min_latency=1.0, max_latency=3.0)
    async with simulator(config) as sim:
        # No process dies here: leases of 20 s, so that a renewal late by seconds on a loaded
        # machine is not taken for a dead process by the new one's recovery.
        env = {
            **environment(bucket, moto.url, sim),
            "BUSSTATS_LEASE_SECONDS": "20",
            "BUSSTATS_LEASE_RENEW_SECONDS": "1",
        }
        async with serve_process(env, http) as old:
            job_id = await post(http, old.url, D1)
            await until(lambda: sim.state.in_flight > 0)
            async with serve_process(env, http) as new:
                # the new process is up (its start-up recovery ran): the job still runs
                seen = [await job_of(http, new.url, job_id)]
                await old.stop()
                seen.append(await job_of(http, new.url, job_id))
                assert [job["status"] for job in seen] == ["running", "failed"], seen
                interrupted = await job_of(http, new.url, job_id)
                assert interrupted["status"] == "failed"
                assert "interrupted: the service stopped" in interrupted["error"]

                # the same date asked of two processes at once: one job after the other
                async with serve_process(env, http) as other:
                    # the simulator still sleeps on requests the stopped process gave up
                    await until(lambda: sim.state.in_flight == 0)
                    sim.state.max_in_flight = 0
                    first, second = await asyncio.gather(
                        wait_for_job(http, new.url, await post(http, new.url, D1), 60),
                        wait_for_job(http, other.url, await post(http, other.url, D1), 60),
                    )
                answer = await get_stats(http, new.url, D1.isoformat(), D1.isoformat())
    first, second = sorted([first, second], key=lambda job: job["started_at"])
    assert first["status"] == second["status"] == "succeeded"
    assert second["started_at"] >= first["finished_at"]
    assert sim.state.max_in_flight <= len(CITIES)  # never two jobs' downloads at once
    assert_same_stats(answer["stats"], country_stats(await raw_files(s3, [D1]), COUNTRY_OF))
    stored, named = await files_named_by_commits(s3, D1)
    assert stored == named
