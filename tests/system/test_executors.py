"""The executor contract: threads, local worker processes and a Dask cluster give the same
stats for the same upstream, and a worker lost mid-job costs a city, never the numbers."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import psutil
import pytest
from distributed import Client, LocalCluster

from busstats.core.settings import Settings
from busstats.reference.sim import CITIES, SimulatorConfig
from busstats.storage import S3Store
from harness.servers import (
    KEY_ID,
    SECRET,
    MotoEndpoint,
    RunningSimulator,
    api_server,
    open_s3_store,
    s3_environment,
    s3_settings,
    serve_process,
    settings_for,
    simulator,
)
from tests.support.expected import assert_same_stats, country_stats
from tests.support.flows import country_stats as get_stats
from tests.support.flows import ingest, raw_files, wait_for_job

DAY = dt.date(2024, 5, 1)
COUNTRY_OF = {city.id: city.country for city in CITIES}
SMALL = SimulatorConfig(rows=(200, 400), min_latency=0.3, max_latency=0.5)
"""Every city waits 0.3 s at least, so all 30 downloads are surely in flight at once."""
SLOW = SimulatorConfig(rows=(200, 400), min_latency=2.0, max_latency=2.5)
"""Slow enough that a Dask worker opening its store and HTTP pool for its first city (a
second on a loaded machine) still overlaps the other worker's downloads."""
WORKER_SLOTS = 32
"""Tasks at once per Dask worker (`--nthreads`): city work awaits, so slots are not cores;
one worker alone can take every city of a day, wherever the scheduler puts them."""


@pytest.fixture(scope="module")
def dask_scheduler() -> Iterator[str]:
    """A Dask cluster of two worker processes on loopback, with moto's test credentials in
    the workers' own environment (tasks carry none)."""
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=WORKER_SLOTS,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,  # pyright: ignore[reportArgumentType] - None: no dashboard
        env={"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET},
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
async def s3(moto: MotoEndpoint, bucket: str) -> AsyncIterator[S3Store]:
    store = await open_s3_store(moto.url, bucket)
    yield store
    await store.close()


def executor_settings(executor: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if executor != "dask":
        return {"executor": executor, "worker_processes": 2}
    return {"executor": "dask", "dask_scheduler": request.getfixturevalue("dask_scheduler")}


def moto_settings(
    s3: S3Store, moto: MotoEndpoint, sim: RunningSimulator, **overrides: Any
) -> Settings:
    """Settings naming moto's endpoint too: Dask workers open the store from them."""
    return s3_settings(
        s3.bucket, moto.url, reference_url=sim.url, reference_backoff_seconds=0.01, **overrides
    )


@pytest.mark.parametrize("executor", ["threads", "local", "dask"])
async def test_every_executor_gives_the_stats_of_the_raw_files(
    executor: str,
    s3: S3Store,
    moto: MotoEndpoint,
    http: aiohttp.ClientSession,
    request: pytest.FixtureRequest,
) -> None:
    async with simulator(SLOW) as sim:
        settings = moto_settings(s3, moto, sim, **executor_settings(executor, request))
        async with api_server(settings, s3) as api:
            job = await ingest(http, api, DAY.isoformat())
            answer = await get_stats(http, api, DAY.isoformat(), DAY.isoformat())
            async with http.get(f"{api}/metrics") as response:
                exposition = await response.text()

    assert job["status"] == "succeeded", job
    assert [city["status"] for city in job["cities"]] == ["succeeded"] * len(CITIES)
    # the city list and every city's download, wherever it ran, count in the service's metrics
    ok_calls = 'busstats_upstream_requests_total{outcome="ok"}'
    assert f"{ok_calls} {len(CITIES) + 1}.0" in exposition.splitlines(), exposition
    raw = await raw_files(s3, [DAY])
    assert len(raw) == len(CITIES)
    assert_same_stats(answer["stats"], country_stats(raw, COUNTRY_OF))
    assert answer["incomplete_dates"] == []
    # downloads stay concurrent wherever the cities run: a day takes its slowest city's time
    assert sim.state.max_in_flight == len(CITIES)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


async def test_the_local_executor_converts_outside_the_api_process(
    bucket: str, moto: MotoEndpoint, http: aiohttp.ClientSession
) -> None:
    """JSON decoding holds the GIL: in the API process it would stall every request."""
    big = {city.id: 60_000 for city in CITIES[:4]}
    config = SimulatorConfig(rows=(20, 40), max_latency=0.1, rows_by_city=big)
    async with simulator(config) as sim:
        env = {
            **s3_environment(bucket, moto.url),
            "BUSSTATS_REFERENCE_URL": sim.url,
            "BUSSTATS_EXECUTOR": "local",
            "BUSSTATS_WORKER_PROCESSES": "2",
        }
        async with serve_process(env, http) as service:
            api = psutil.Process(service.process.pid)
            api_before = cpu_seconds(api)
            job = await ingest(http, service.url, DAY.isoformat())
            api_spent = cpu_seconds(api) - api_before
            workers = descendants(service.process.pid)
            workers_spent = sum(cpu_seconds(worker) for worker in workers)

    assert job["status"] == "succeeded", job
    assert sum(city["raw_bytes"] for city in job["cities"]) > 20 * 2**20
    assert workers, "no conversion process was started"
    assert workers_spent > api_spent, (workers_spent, api_spent)


async def test_conversion_processes_die_with_a_killed_service(
    bucket: str, moto: MotoEndpoint, http: aiohttp.ClientSession
) -> None:
    async with simulator(SMALL) as sim:
        env = {**s3_environment(bucket, moto.url), "BUSSTATS_REFERENCE_URL": sim.url}
        async with serve_process(env, http) as service:
            assert (await ingest(http, service.url, DAY.isoformat()))["status"] == "succeeded"
            left = descendants(service.process.pid)
            assert left, "no conversion process was started"
            service.process.send_signal(signal.SIGKILL)
            await service.process.wait()
            async with asyncio.timeout(15):
                while any(  # noqa: ASYNC110 - other processes' state, polled with a bound
                    process.is_running() and process.status() != "zombie" for process in left
                ):
                    await asyncio.sleep(0.1)


def forkserver_workers() -> list[psutil.Process]:
    """This test process's conversion workers: the children of its multiprocessing
    forkserver."""
    servers = [
        child
        for child in psutil.Process().children()
        if any("forkserver" in part for part in child.cmdline())
    ]
    return [worker for server in servers for worker in server.children()]


async def kill_the_converting_worker(killed: set[int]) -> None:
    """Kill this process's conversion worker once it is well into a conversion; `killed`
    holds the pids of workers killed before (they may still be listed while they die)."""

    def converting() -> list[psutil.Process]:
        workers = [w for w in forkserver_workers() if w.pid not in killed]
        return [worker for worker in workers if cpu_seconds(worker) > 0.5]

    async with asyncio.timeout(60):
        while not converting():  # noqa: ASYNC110 - another process's state, with a bound
            await asyncio.sleep(0.02)
    for worker in converting():
        os.kill(worker.pid, signal.SIGKILL)
        killed.add(worker.pid)


async def cities_succeeded(http: aiohttp.ClientSession, api: str, job_id: str) -> int:
    async with http.get(f"{api}/jobs/{job_id}") as response:
        job = await response.json()
    return sum(city["status"] == "succeeded" for city in job["cities"])


async def test_conversions_survive_the_death_of_their_process_once(
    s3: S3Store, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(20, 40), max_latency=0.05, rows_by_city={CITIES[0].id: 300_000})
    async with simulator(config) as sim:
        settings = settings_for(s3, sim, executor="local", worker_processes=1)
        async with api_server(settings, s3) as api:
            async with http.post(f"{api}/process-request", params={"date": str(DAY)}) as answer:
                job_id = (await answer.json())["job_id"]
            await kill_the_converting_worker(set())
            job = await wait_for_job(http, api, job_id)
            answer = await get_stats(http, api, DAY.isoformat(), DAY.isoformat())

    assert job["status"] == "succeeded", job
    assert_same_stats(answer["stats"], country_stats(await raw_files(s3, [DAY]), COUNTRY_OF))


async def test_a_city_whose_conversion_process_dies_twice_fails_alone(
    s3: S3Store, http: aiohttp.ClientSession
) -> None:
    """A dead worker breaks the whole pool: the conversions waiting in it are tried again,
    and only a city that kills its worker twice fails."""
    huge = CITIES[0].id
    config = SimulatorConfig(rows=(20, 40), max_latency=0.05, rows_by_city={huge: 700_000})
    async with simulator(config) as sim:
        settings = settings_for(s3, sim, executor="local", worker_processes=1)
        async with api_server(settings, s3) as api:
            async with http.post(f"{api}/process-request", params={"date": str(DAY)}) as answer:
                job_id = (await answer.json())["job_id"]
            async with asyncio.timeout(60):  # the small cities are stored: the huge one is left
                while await cities_succeeded(http, api, job_id) < len(CITIES) - 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            killed: set[int] = set()
            await kill_the_converting_worker(killed)
            await kill_the_converting_worker(killed)  # its second try
            job = await wait_for_job(http, api, job_id)
            answer = await get_stats(http, api, DAY.isoformat(), DAY.isoformat())

            sim.config.rows_by_city = {}
            again = await ingest(http, api, DAY.isoformat())

    assert job["status"] == "partial", job
    failed = [city for city in job["cities"] if city["status"] == "failed"]
    assert [city["city_id"] for city in failed] == [huge]
    assert "the process converting the city died, 2 times" in failed[0]["error"]
    assert answer["incomplete_dates"][0]["cities_counted"] == len(CITIES) - 1
    assert again["status"] == "succeeded", again


def busiest_worker_pid(scheduler: str) -> int:
    """The pid of the Dask worker running the most tasks now."""
    with Client(scheduler, timeout=10) as client:
        pids: dict[str, int] = client.run(os.getpid)  # pyright: ignore[reportUnknownMemberType, reportAssignmentType]
        running: dict[str, list[str]] = client.processing()  # pyright: ignore[reportUnknownMemberType, reportAssignmentType]
    busiest = max(running, key=lambda address: len(running[address]))
    assert running[busiest], "no worker runs a task"
    return pids[busiest]


async def test_a_dask_worker_killed_mid_job_costs_cities_never_numbers(
    s3: S3Store, moto: MotoEndpoint, http: aiohttp.ClientSession, dask_scheduler: str
) -> None:
    # Every city's download is held 6 to 7 s upstream, and the worker is killed once all but
    # two are in flight: then the tasks it runs are mid-download (a task Dask had only
    # assigned to it, not started, would run elsewhere without a second call), even on a
    # loaded machine where the cities reach upstream seconds apart.
    config = SimulatorConfig(rows=(200, 400), min_latency=6.0, max_latency=7.0)
    async with simulator(config) as sim:
        settings = moto_settings(s3, moto, sim, executor="dask", dask_scheduler=dask_scheduler)
        async with api_server(settings, s3) as api:
            async with http.post(f"{api}/process-request", params={"date": str(DAY)}) as answer:
                job_id = (await answer.json())["job_id"]
            async with asyncio.timeout(60):
                while sim.state.in_flight < len(CITIES) - 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            os.kill(await asyncio.to_thread(busiest_worker_pid, dask_scheduler), signal.SIGKILL)
            job = await wait_for_job(http, api, job_id, 90)
            answer = await get_stats(http, api, DAY.isoformat(), DAY.isoformat())

    assert job["status"] in {"succeeded", "partial"}, job
    for city in job["cities"]:
        assert city["status"] in {"succeeded", "failed"}
        assert (city["status"] == "failed") == (city["error"] is not None), city
    raw = await raw_files(s3, [DAY])
    succeeded = {city["city_id"] for city in job["cities"] if city["status"] == "succeeded"}
    assert {city_id for _, city_id in raw} == succeeded
    assert_same_stats(answer["stats"], country_stats(raw, COUNTRY_OF))
    # the worker was killed while its cities waited on upstream: Dask ran them again
    assert sim.state.stats_calls > len(CITIES)
