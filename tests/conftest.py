from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from busstats.store import LocalStore, Store
from harness.servers import MotoEndpoint, moto_server, open_s3_store


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
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session
