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
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from busstats.reference.sim import SimulatorConfig
from busstats.storage import LocalStore, Store
from harness import servers
from harness.servers import MotoEndpoint, RunningSimulator, moto_server, open_s3_store
from tests.support.flows import StartApi
from tests.support.upstreams import QUICK_UPSTREAM


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoEndpoint]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(moto: MotoEndpoint) -> str:
    return moto.new_bucket()


BOTH_STORES = pytest.mark.both_stores
"""Marks a test (or, as `pytestmark`, a module) whose `store` is each backend in turn."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`store` is the local store, and each backend in turn where a test is marked
    `both_stores`: the logic above the store is the same on both, and
    tests/integration/test_store_contract.py keeps the backends equal."""
    if "store" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_stores") is not None
        metafunc.parametrize("store", ["local", "s3"] if both else ["local"], indirect=True)


@pytest.fixture
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The local store, or each backend in turn for a test marked `both_stores` (moto starts
    only for those)."""
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    moto: MotoEndpoint = request.getfixturevalue("moto")
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
    """The API over `store` and `simulator`; its base URL."""
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
