"""S3 failing mid-way, for real: a loopback proxy in front of moto errors chosen requests."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from busstats.commit.dates import read_summary
from busstats.reference.sim import CITIES, SimulatorConfig
from busstats.storage import ObjectNotFound, S3Store, StoreError
from busstats.storage.keys import PARQUET, RAW, date_prefix, parquet_key, raw_key
from harness.servers import MotoEndpoint, api_server, open_s3_store, s3_settings, simulator
from tests.support.expected import assert_same_stats, country_stats
from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.flows import country_stats as get_stats
from tests.support.flows import ingest, raw_files

DAY = dt.date(2024, 5, 1)
COUNTRY_OF = {city.id: city.country for city in CITIES}
MIB = 1024 * 1024


@pytest.fixture
async def proxy(moto: MotoEndpoint) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(moto.url) as running:
        yield running


async def open_store(endpoint: str, bucket: str) -> S3Store:
    return await open_s3_store(endpoint, bucket, part_size=5 * MIB, attempts=2)


async def test_a_large_file_goes_up_in_parts_and_comes_back_whole(
    moto: MotoEndpoint, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    source = tmp_path / "big.json"
    source.write_bytes(os.urandom(11 * MIB))
    store = await open_store(proxy.url, bucket)
    try:
        await store.put_file("raw/big.json", source)
        assert await store.get_bytes("raw/big.json") == source.read_bytes()
    finally:
        await store.close()
    assert sum("partNumber=" in line for line in proxy.seen) == 3


async def test_a_failed_multipart_upload_leaves_nothing_behind(
    moto: MotoEndpoint, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    source = tmp_path / "big.json"
    source.write_bytes(os.urandom(11 * MIB))
    proxy.fail("PUT", r"partNumber=2")  # every retry of part 2 fails too
    store = await open_store(proxy.url, bucket)
    try:
        with pytest.raises(StoreError, match=r"multipart upload of raw/big\.json"):
            await store.put_file("raw/big.json", source)
        with pytest.raises(ObjectNotFound):
            await store.get_bytes("raw/big.json")
    finally:
        await store.close()
    s3 = moto.client()
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="raw/big.json")


def parquet_sha(data: bytes) -> str:
    metadata = pq.read_schema(pa.BufferReader(data)).metadata or {}
    return metadata[b"busstats.raw_sha256"].decode()


async def assert_pairs_consistent(store: S3Store) -> dict[int, str]:
    """Every committed Parquet file names the sha256 of the raw file committed with it, both
    from one run; returns the run of each city."""
    summary, _ = await read_summary(store, DAY)
    runs: dict[int, str] = {}
    for row in summary.filter("counted").iter_rows(named=True):
        raw = await store.get_bytes(row["raw_key"])
        parquet = await store.get_bytes(row["parquet_key"])
        assert parquet_sha(parquet) == hashlib.sha256(raw).hexdigest(), row
        assert row["raw_key"] == raw_key(DAY, row["city_id"], row["run_id"])
        assert row["parquet_key"] == parquet_key(DAY, row["city_id"], row["run_id"])
        runs[row["city_id"]] = row["run_id"]
    return runs


async def test_a_parquet_upload_failing_mid_job_never_pairs_new_raw_with_old_parquet(
    moto: MotoEndpoint, bucket: str, proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    settings = s3_settings(bucket, proxy.url, s3_attempts=2)
    store = await open_store(moto.url, bucket)
    try:
        # 1. a good day from upstream's first answer
        first_answer = SimulatorConfig(seed=0, rows=(20, 30), max_latency=0.02)
        async with (
            simulator(first_answer) as sim,
            api_server(settings.model_copy(update={"reference_url": sim.url})) as api,
        ):
            first = await ingest(http, api, DAY.isoformat())
        assert first["status"] == "succeeded"
        assert await assert_pairs_consistent(store) == {c.id: first["job_id"] for c in CITIES}

        # 2. upstream now answers differently, and S3 refuses city 3's Parquet mid-job
        proxy.fail("PUT", r"/parquet/date=2024-05-01/city=3\.[0-9a-f]+\.parquet")
        async with simulator(SimulatorConfig(seed=1, rows=(20, 30), max_latency=0.02)) as sim:
            with_sim = settings.model_copy(update={"reference_url": sim.url})
            async with api_server(with_sim) as api:
                job = await ingest(http, api, DAY.isoformat())
                answer = await get_stats(http, api, DAY.isoformat(), DAY.isoformat())
                city = next(c for c in job["cities"] if c["city_id"] == 3)
                assert job["status"] == "partial"
                assert f"S3 put parquet/date=2024-05-01/city=3.{job['job_id']}" in city["error"]
                # city 3 still counts, from the pair of the first run; the others are new
                assert await assert_pairs_consistent(store) == {
                    c.id: first["job_id"] if c.id == 3 else job["job_id"] for c in CITIES
                }
                raw = await raw_files(store, [DAY])
                assert_same_stats(answer["stats"], country_stats(raw, COUNTRY_OF))
                assert answer["incomplete_dates"] == []

                # 3. S3 heals; the same request again makes the date whole and consistent
                proxy.heal()
                job = await ingest(http, api, DAY.isoformat())
                answer = await get_stats(http, api, DAY.isoformat(), DAY.isoformat())
        assert job["status"] == "succeeded"
        assert await assert_pairs_consistent(store) == {c.id: job["job_id"] for c in CITIES}
        for kind in (RAW, PARQUET):
            assert len(await store.list_keys(date_prefix(kind, DAY))) == len(CITIES)
        assert_same_stats(answer["stats"], country_stats(await raw_files(store, [DAY]), COUNTRY_OF))
    finally:
        await store.close()


async def test_a_passing_s3_error_is_retried_by_botocore(
    bucket: str, proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    rule = proxy.fail("PUT", r"/parquet/date=2024-05-01/city=5\.[0-9a-f]+\.parquet", times=2)
    async with simulator(SimulatorConfig(rows=(5, 10), max_latency=0.02)) as sim:
        settings = s3_settings(bucket, proxy.url, reference_url=sim.url)
        async with api_server(settings) as api:
            job = await ingest(http, api, DAY.isoformat())
    assert rule.failed == 2
    assert job["status"] == "succeeded"
    key = parquet_key(DAY, 5, job["job_id"])
    assert sum(key in line for line in proxy.seen if line.startswith("PUT")) == 3


async def test_stats_answer_503_when_the_store_fails(
    bucket: str, proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    settings = s3_settings(bucket, proxy.url, s3_attempts=2)
    proxy.fail("GET", r"/summary/|list-type=2")  # reading a summary, or listing them
    async with api_server(settings) as api:
        for end in ("2024-05-01", "2024-08-01"):  # a short range reads, a long one lists
            async with http.get(f"{api}/country-stats?from=2024-05-01&to={end}") as response:
                assert response.status == 503
                body = await response.json()
            assert "the store is unavailable" in body["error"]
        async with http.get(f"{api}/health/ready") as ready:
            assert ready.status == 200  # the bucket itself still answers
