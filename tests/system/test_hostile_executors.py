"""Hostile tests of the executors (issue 11): a Dask scheduler that refuses, hangs or is
misspelled must fail each city with a reason, within bounds, never hang or raise."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest
from distributed import Client

from busstats.core.settings import ConfigError, Settings
from busstats.executors.conversions import ProcessConversions, ThreadConversions
from busstats.executors.select import DASK_CONNECT_SECONDS, DaskExecutor
from busstats.ingest.citywork import CityOutcome, CityTask
from busstats.model.cities import City
from busstats.model.jobs import CityStatus
from busstats.reference.sim import CITIES, SimulatorConfig
from busstats.reference.sim.data import generate_rows
from harness.servers import MotoEndpoint, s3_environment, serve_process, simulator

DAY = dt.date(2024, 5, 1)


def tasks(count: int) -> list[CityTask]:
    return [
        CityTask(DAY, "run-1", City(city_id, f"City {city_id}", "X")) for city_id in range(count)
    ]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_scheduler() -> Iterator[str]:
    """A loopback socket that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
async def executor_at() -> AsyncIterator[list[DaskExecutor]]:
    """Executors the test made, closed afterwards (bounded: a hung connect must not hang
    the suite too)."""
    made: list[DaskExecutor] = []
    yield made
    for executor in made:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                await executor.close()


def dask_executor(address: str, made: list[DaskExecutor]) -> DaskExecutor:
    # unchecked (`model_copy`): the executor must survive an address the settings would refuse
    dask = Settings(executor="dask", dask_scheduler="tcp://127.0.0.1:8786")
    settings = dask.model_copy(update={"dask_scheduler": address})
    executor = DaskExecutor(settings, ThreadConversions())
    made.append(executor)
    return executor


async def run_all(
    executor: DaskExecutor, count: int, bound: float
) -> tuple[list[CityOutcome], float]:
    started = time.monotonic()
    async with asyncio.timeout(bound):
        outcomes = await asyncio.gather(*(executor.run_city(task) for task in tasks(count)))
    return outcomes, time.monotonic() - started


async def test_a_scheduler_that_never_answers_fails_the_city_within_bounds(
    silent_scheduler: str, executor_at: list[DaskExecutor]
) -> None:
    """A scheduler address that accepts TCP connections but never speaks (a wrong port, a
    stuck scheduler) must fail the city "unreachable" after the connect timeout, not hang
    the job forever."""
    executor = dask_executor(silent_scheduler, executor_at)
    outcomes, _ = await run_all(executor, 1, DASK_CONNECT_SECONDS + 10)
    assert outcomes[0].status == CityStatus.FAILED
    assert "unreachable" in (outcomes[0].error or ""), outcomes[0]


async def test_an_unreachable_scheduler_fails_all_cities_in_one_connect_timeout(
    closed_port: int, executor_at: list[DaskExecutor]
) -> None:
    """Cities of a job start together; an unreachable scheduler must not cost each city its
    own connect timeout one after the other (30 cities: 5 minutes before the job ends)."""
    executor = dask_executor(f"tcp://127.0.0.1:{closed_port}", executor_at)
    outcomes, took = await run_all(executor, 3, 3 * DASK_CONNECT_SECONDS + 15)
    assert [outcome.status for outcome in outcomes] == [CityStatus.FAILED] * 3
    assert all("unreachable" in (outcome.error or "") for outcome in outcomes), outcomes
    assert took < 2 * DASK_CONNECT_SECONDS, f"3 cities took {took:.1f} s to fail"


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:abc", "tcp://[::1"])
async def test_a_misspelled_scheduler_fails_the_city_never_raises(
    address: str, executor_at: list[DaskExecutor]
) -> None:
    """`Executor.run_city`: "its failure is in the outcome, never raised". A raise ends the
    job's TaskGroup: every other city of the job is cancelled."""
    executor = dask_executor(address, executor_at)
    outcomes, _ = await run_all(executor, 1, DASK_CONNECT_SECONDS + 10)
    assert outcomes[0].status == CityStatus.FAILED
    assert outcomes[0].error


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:abc", "tcp://127.0.0.1:99999", "tcp://[::1"])
def test_a_scheduler_address_dask_cannot_use_is_a_config_error(
    address: str,
) -> None:
    """Bad configuration is refused at start, with the setting's name, not found city by
    city after a job has begun."""
    environ = {"BUSSTATS_EXECUTOR": "dask", "BUSSTATS_DASK_SCHEDULER": address}
    with pytest.raises(ConfigError, match="BUSSTATS_DASK_SCHEDULER"):
        Settings.from_env(environ)


BIG_ROWS = 2_500_000
"""About 300 MB of JSON: several seconds of conversion in one worker process."""


def write_day(path: Path, rows: int) -> Path:
    with path.open("w") as file:
        for piece in generate_rows(1, DAY, 4, rows):
            file.write(piece)
    return path


async def test_a_cancelled_conversion_stops_and_frees_its_worker(tmp_path: Path) -> None:
    """A job cancelled while a city converts in a worker process: its slot (and, in
    `run_city`, its bytes budget) are given back at once, so the worker must stop too.
    Otherwise the next job's conversions wait behind a city nobody wants, in a pool the
    semaphore says is free, and the cancelled city's memory is held outside the budget."""
    city = City(4, "Mostar", "BA")
    small = write_day(tmp_path / "small.json", 200)
    big = write_day(tmp_path / "big.json", BIG_ROWS)
    big_parquet = tmp_path / "big.parquet"
    conversions = ProcessConversions(processes=1)
    try:
        await conversions(small, tmp_path / "warm.parquet", city, DAY)  # the pool is up

        converting = asyncio.create_task(conversions(big, big_parquet, city, DAY))
        async with asyncio.timeout(30):
            while not big_parquet.exists():  # the worker has begun writing  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        pool = conversions._pool  # pyright: ignore[reportPrivateUsage]
        assert pool is not None
        workers = [
            psutil.Process(pid)
            for pid in pool._processes  # pyright: ignore[reportPrivateUsage, reportUnknownVariableType, reportUnknownArgumentType]
        ]
        converting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await converting
        # the worker that was converting stops: a bounded poll, as a loaded machine may take
        # its time to reap it (on an idle one it is gone in milliseconds)
        async with asyncio.timeout(30):
            while any(alive(worker) for worker in workers):  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        # and the next conversion runs, in a fresh worker
        async with asyncio.timeout(60):
            result = await conversions(small, tmp_path / "next.parquet", city, DAY)
    finally:
        async with asyncio.timeout(30):
            await conversions.close()
    assert result.rows == 200


async def test_a_stopped_service_leaves_no_worker_and_no_temp_file_mid_conversion(
    bucket: str, moto: MotoEndpoint, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """SIGTERM while large cities convert in worker processes: the service stops within
    seconds, its workers with it, and its temporary folder is gone."""
    big = {city.id: 1_500_000 for city in CITIES[:4]}
    config = SimulatorConfig(rows=(20, 40), max_latency=0.1, rows_by_city=big)
    temp = tmp_path / "temp"
    async with simulator(config) as sim:
        env = {
            **s3_environment(bucket, moto.url),
            "BUSSTATS_REFERENCE_URL": sim.url,
            "BUSSTATS_EXECUTOR": "local",
            "BUSSTATS_WORKER_PROCESSES": "2",
            "BUSSTATS_TEMP_DIR": str(temp),
        }
        async with serve_process(env, http) as service:
            pid = service.process.pid
            async with http.post(f"{service.url}/process-request", params={"date": str(DAY)}):
                pass
            async with asyncio.timeout(120):
                while not [w for w in children_of(pid) if busy(w)]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            workers = children_of(pid)
            service.process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            async with asyncio.timeout(30):
                await service.process.wait()
            took = time.monotonic() - stopped
            async with asyncio.timeout(15):
                while any(alive(worker) for worker in workers):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
    assert took < 10, f"the service took {took:.1f} s to stop"
    left = [path for path in temp.rglob("*") if path.is_file()]
    assert left == [], left


def children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def busy(process: psutil.Process) -> bool:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return False
    return times.user + times.system > 0.5


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def dask_cluster(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A `dask scheduler` on loopback and one `dask worker` for it, as processes of their
    own (so the scheduler can be killed); yields the scheduler's process."""
    dask = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [dask, "worker", address, "--nthreads", "2", "--no-dashboard", "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield scheduler
    finally:
        for process in (worker, scheduler):
            process.kill()
            process.wait(timeout=30)


def workers_up(address: str) -> None:
    """Wait (bounded) until the scheduler at `address` has a worker."""
    with Client(address, timeout=30) as client:
        client.wait_for_workers(1, timeout=30)  # pyright: ignore[reportUnknownMemberType]


async def test_a_restarted_scheduler_runs_later_cities_never_hangs(
    tmp_path: Path, silent_scheduler: str, executor_at: list[DaskExecutor]
) -> None:
    """The executor keeps its Dask client for the process's life. When its scheduler is
    killed while a city runs and comes back on the same address (a restart, a redeploy),
    a later city must run there, or end with a reason, not wait forever."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    settings = Settings(
        executor="dask",
        dask_scheduler=address,
        store=str(tmp_path / "store"),
        # a reference server that never answers: each city fails on its worker after 3 s
        reference_url=silent_scheduler.replace("tcp://", "http://"),
        reference_timeout_seconds=3,
        reference_attempts=1,
    )
    executor = DaskExecutor(settings, ThreadConversions())
    executor_at.append(executor)
    with dask_cluster(port) as scheduler:
        await asyncio.to_thread(workers_up, address)
        running = asyncio.create_task(executor.run_city(tasks(1)[0]))
        # the city runs on a worker (where it waits on the silent reference server): a
        # bounded poll of the scheduler, not a guess at how long that takes
        async with asyncio.timeout(30):
            while not await asyncio.to_thread(tasks_processing, address):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        scheduler.kill()
        scheduler.wait(timeout=30)
        async with asyncio.timeout(30):
            lost = await running
        assert lost.status == CityStatus.FAILED
    with dask_cluster(port):  # the scheduler is back on its address, with a worker
        await asyncio.to_thread(workers_up, address)
        started = time.monotonic()
        async with asyncio.timeout(DASK_CONNECT_SECONDS + 30):
            later = await executor.run_city(tasks(1)[0])
    assert later.status == CityStatus.FAILED, later
    assert "unreachable" not in (later.error or "unreachable"), later  # it ran on the worker
    assert time.monotonic() - started < DASK_CONNECT_SECONDS + 30


def tasks_processing(scheduler: str) -> int:
    """How many tasks the scheduler's workers are running now."""
    with Client(scheduler, timeout=10) as client:
        running: dict[str, list[str]] = client.processing()  # pyright: ignore[reportUnknownMemberType, reportAssignmentType]
    return sum(len(keys) for keys in running.values())
