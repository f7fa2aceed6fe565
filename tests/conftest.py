from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from busstats.store import LocalStore, S3Store, Store
from tests.servers import CREDENTIALS, REGION, MotoEndpoint, moto_server


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
    s3 = await S3Store.open(
        moto.new_bucket(),
        region=REGION,
        endpoint_url=moto.url,
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
    )
    yield s3
    await s3.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session
