"""Real servers for the tests, on 127.0.0.1: moto (S3) and stores over it or a folder, the
simulated upstream, and the API under uvicorn. Each is a fixture, so a test names what it
needs and pytest starts it and stops it (the API before the simulator and the store).

The simulator serves `simulator_config`: small quick days by default. A module whose tests
need another upstream defines its own `simulator_config` fixture; a single test parametrizes it:

    @pytest.mark.parametrize("simulator_config", [SimulatorConfig(faults={3: Fault.ERROR})])
    async def test_x(local_api: str) -> None: ...

`start_api` starts more APIs, or one with other settings, over the simulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from busstats.reference.sim import SimulatorConfig
from busstats.storage import LocalStore, Store
from harness import servers
from harness.servers import MotoEndpoint, RunningSimulator, moto_server, open_s3_store

QUICK_UPSTREAM = SimulatorConfig(rows=(5, 10), max_latency=0.05)
"""30 cities of 5 to 10 rows a day, each answering within 50 ms."""

StartApi = Callable[..., AbstractAsyncContextManager[str]]
"""`start_api(store, **setting_overrides)`: `async with` it for the API's base URL."""


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoEndpoint]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(moto: MotoEndpoint) -> str:
    return moto.new_bucket()


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, moto: MotoEndpoint
) -> AsyncIterator[Store]:
    """Each test using this runs against both backends."""
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    s3 = await open_s3_store(moto.url, moto.new_bucket())
    yield s3
    await s3.close()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A store in the test's folder (`tmp_path / "store"`), for tests of one backend."""
    return LocalStore(tmp_path / "store")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    """What `simulator` serves; override it in a module, or parametrize it in a test."""
    return QUICK_UPSTREAM


@pytest.fixture
async def simulator(simulator_config: SimulatorConfig) -> AsyncIterator[RunningSimulator]:
    """The simulated upstream, serving a copy of `simulator_config` (a test may change its
    `config`, as upstream changes, without changing the next test's)."""
    async with servers.simulator(dataclasses.replace(simulator_config)) as running:
        yield running


@pytest.fixture
def start_api(simulator: RunningSimulator) -> StartApi:
    """Start the API over a store and `simulator`, with settings overridden by keyword:
    `async with start_api(store, max_running_jobs=1) as url: ...`."""

    def start(store: Store, **overrides: Any) -> AbstractAsyncContextManager[str]:
        return servers.api_server(servers.settings_for(store, simulator, **overrides), store)

    return start


@pytest.fixture
async def api(store: Store, start_api: StartApi) -> AsyncIterator[str]:
    """The API over `store` (so on both backends) and `simulator`; its base URL."""
    async with start_api(store) as url:
        yield url


@pytest.fixture
async def local_api(local_store: LocalStore, start_api: StartApi) -> AsyncIterator[str]:
    """The API over `local_store` and `simulator`; its base URL."""
    async with start_api(local_store) as url:
        yield url


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """`test_x[upstream]`, not `test_x[simulator_config0]`, for a test with its own upstream."""
    return "upstream" if argname == "simulator_config" else None
