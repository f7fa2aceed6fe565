"""Caps on what one city may cost: wall time (retries included) and decoded body size.

The simulator's fault knobs play the misbehaving upstream for real on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from busstats.core.settings import ConfigError, DateParam, Settings
from busstats.reference.client import (
    BodyTooLarge,
    DateSpelling,
    DownloadLimits,
    ReferenceClient,
    RetryPolicy,
    TookTooLong,
)
from busstats.reference.sim import CITIES, Fault, SimulatorConfig
from busstats.reference.sim.data import generate_rows
from busstats.storage import LocalStore
from busstats.storage.keys import RAW, city_file_of, date_prefix, raw_key
from harness.servers import api_server, simulator
from tests.support.flows import ingest, wait_for_job
from tests.support.loopback import loopback_app

DAY = dt.date(2024, 5, 1)
BROKEN = 4
MIB = 2**20
QUICK: dict[str, Any] = {"reference_attempts": 3, "reference_backoff_seconds": 0.01}


class PeakFile(io.FileIO):
    """A real file on disk that remembers the largest size it reached."""

    peak = 0

    def write(self, data: Any) -> int:
        written = super().write(data)
        self.peak = max(self.peak, self.tell())
        return written


@contextlib.asynccontextmanager
async def reference_client(
    url: str, limits: DownloadLimits, attempts: int = 3
) -> AsyncIterator[ReferenceClient]:
    timeout = aiohttp.ClientTimeout(connect=5, sock_read=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        retry = RetryPolicy(attempts=attempts, wait_initial=0.01, wait_max=0.05)
        yield ReferenceClient(session, url, DateSpelling(DateParam.DATETIME), retry, limits)


def faulty(fault: Fault, **options: Any) -> SimulatorConfig:
    return SimulatorConfig(rows=(20, 30), max_latency=0.02, faults={BROKEN: fault}, **options)


async def test_an_endless_city_fails_at_the_time_limit_and_frees_its_date(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with simulator(faulty(Fault.ENDLESS)) as sim:
        # a limit of seconds: the other cities (a few rows, 20 ms away) end far within it even
        # on a loaded machine, the endless one never does
        settings = Settings(
            store=str(tmp_path),
            reference_url=sim.url,
            city_max_seconds=4,
            executor="threads",
            **QUICK,
        )
        async with api_server(settings) as api:
            ids = []
            for _ in range(2):  # the second job for the date waits for the first one
                async with http.post(f"{api}/process-request", params={"date": "2024-05-01"}) as r:
                    ids.append((await r.json())["job_id"])
            jobs = [await wait_for_job(http, api, job_id, limit_seconds=60) for job_id in ids]
    for job in jobs:
        assert job["status"] == "partial"
        city = next(c for c in job["cities"] if c["city_id"] == BROKEN)
        assert city["status"] == "failed"
        assert "took longer than 4 s, retries included (BUSSTATS_CITY_MAX_SECONDS)" in str(
            city["error"]
        )
        assert city["duration_seconds"] < 4 + 10  # the limit, and no retry after it
        assert sum(c["status"] == "succeeded" for c in job["cities"]) == len(CITIES) - 1
    keys = await LocalStore(tmp_path).list_keys(date_prefix(RAW, DAY))
    assert BROKEN not in {f.city_id for key in keys if (f := city_file_of(key)) is not None}
    assert len(keys) == len(CITIES) - 1


async def test_the_time_limit_bounds_the_retries_too() -> None:
    async with simulator(faulty(Fault.ERROR)) as sim:
        limits = DownloadLimits(max_seconds=0.5)
        async with reference_client(sim.url, limits, attempts=1000) as client:
            started = time.monotonic()
            with pytest.raises(TookTooLong, match=r"took longer than 0.5 s, retries included"):
                await client.download_day(BROKEN, DAY, io.BytesIO())
            assert time.monotonic() - started < 3
        assert 1 < sim.state.calls_by_city[BROKEN] < 1000


async def test_a_body_over_the_cap_stops_at_the_cap_and_leaves_no_temp_data(
    tmp_path: Path,
) -> None:
    cap = MIB
    async with simulator(faulty(Fault.HUGE)) as sim:
        async with reference_client(sim.url, DownloadLimits(max_bytes=cap)) as client:
            with PeakFile(tmp_path / "raw.json", "w+b") as dest:
                with pytest.raises(BodyTooLarge, match="sent more than the cap of 1,048,576 bytes"):
                    await client.download_day(BROKEN, DAY, dest)
                assert 0 < dest.peak <= cap
            assert (tmp_path / "raw.json").stat().st_size == 0
        assert sim.state.calls_by_city[BROKEN] == 1  # an oversized body is not retried


async def test_a_gzip_bomb_fails_its_city_quickly_at_the_decoded_cap(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with simulator(faulty(Fault.GZIP_BOMB)) as sim:
        settings = Settings(store=str(tmp_path), reference_url=sim.url, city_max_mb=4, **QUICK)
        async with api_server(settings) as api:
            job = await ingest(http, api, DAY.isoformat())
    assert job["status"] == "partial"
    city = next(c for c in job["cities"] if c["city_id"] == BROKEN)
    assert "more than the cap of 4,194,304 bytes (4 MiB, BUSSTATS_CITY_MAX_MB)" in city["error"]
    assert "counted after decompression" in city["error"]
    assert city["duration_seconds"] < 5
    assert city["raw_bytes"] == 0
    keys = await LocalStore(tmp_path).list_keys(date_prefix(RAW, DAY))
    assert BROKEN not in {f.city_id for key in keys if (f := city_file_of(key)) is not None}


async def test_a_body_announced_over_the_cap_is_not_read() -> None:
    async def announced(_: web.Request) -> web.Response:
        return web.Response(body=b"[" + b" " * (2 * MIB) + b"]", content_type="application/json")

    async with (
        loopback_app(announced) as (url, _),
        reference_client(url, DownloadLimits(max_bytes=MIB)) as client,
    ):
        dest = io.BytesIO()
        with pytest.raises(BodyTooLarge, match=r"announced 2,097,154 bytes, more than"):
            await client.download_day(1, DAY, dest)
        assert dest.getvalue() == b""


async def endless_city_list(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b"[")
    for position in range(100_000):  # about 4 MB over 50 s: bounded, but past every cap here
        await response.write(b'{"id": %d, "name": "N", "country": "C"},' % position)
        if position % 100 == 0:
            await asyncio.sleep(0.05)
    return response


@pytest.mark.parametrize(
    ("limits", "error", "message"),
    [
        (DownloadLimits(max_seconds=0.5), TookTooLong, "the city list took longer than 0.5 s"),
        (DownloadLimits(max_bytes=64 * 1024), BodyTooLarge, "GET /cities sent more than the cap"),
    ],
)
async def test_the_city_list_is_capped_too(
    limits: DownloadLimits, error: type[Exception], message: str
) -> None:
    async with (
        loopback_app(endless_city_list) as (url, _),
        reference_client(url, limits) as client,
    ):
        with pytest.raises(error, match=message):
            await client.cities()


async def test_a_gzip_encoded_day_is_stored_decoded(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(20, 30), max_latency=0.02, gzip=True)
    async with simulator(config) as sim:
        async with http.get(
            f"{sim.url}/cities/{BROKEN}/stats",
            params={"date": "2024-05-01T00:00:00"},
            auto_decompress=False,
        ) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            sent = await response.read()
        settings = Settings(store=str(tmp_path), reference_url=sim.url, **QUICK)
        async with api_server(settings) as api:
            job = await ingest(http, api, DAY.isoformat())
    assert job["status"] == "succeeded", job
    stored = await LocalStore(tmp_path).get_bytes(raw_key(DAY, BROKEN, job["job_id"]))
    rows = next(c["rows"] for c in job["cities"] if c["city_id"] == BROKEN)
    expected = "".join(generate_rows(0, DAY, BROKEN, rows)).encode()
    assert stored == expected == gzip.decompress(sent)
    assert next(c["raw_bytes"] for c in job["cities"] if c["city_id"] == BROKEN) == len(expected)


def test_the_caps_come_from_the_environment() -> None:
    assert (Settings().city_max_seconds, Settings().city_max_bytes) == (3600, 8 * 2**30)
    settings = Settings.from_env({"BUSSTATS_CITY_MAX_SECONDS": "90", "BUSSTATS_CITY_MAX_MB": "2"})
    assert (settings.city_max_seconds, settings.city_max_bytes) == (90, 2 * MIB)
    for name in ("BUSSTATS_CITY_MAX_SECONDS", "BUSSTATS_CITY_MAX_MB"):
        with pytest.raises(ConfigError, match=f"{name}='0': expected a (whole )?number from 1 to"):
            Settings.from_env({name: "0"})
