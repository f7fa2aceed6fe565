"""Steps a user takes against the API, shared by the integration tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp

from busstats.commit.dates import read_summary, summary_rows, write_summary
from busstats.ingest.convert import ConversionResult
from busstats.model.cities import City
from busstats.model.summaries import StoredCity
from busstats.storage import Store
from busstats.storage.keys import parquet_key, raw_key

FINISHED = {"succeeded", "partial", "failed"}

StartApi = Callable[..., AbstractAsyncContextManager[str]]
"""`start_api(store, **setting_overrides)`: `async with` it for the API's base URL."""


async def wait_for_job(
    http: aiohttp.ClientSession, api: str, job_id: str, limit_seconds: float = 60
) -> dict[str, Any]:
    """Poll the job until it finishes; fail the test if it takes longer than the limit."""
    async with asyncio.timeout(limit_seconds):
        while True:
            async with http.get(f"{api}/jobs/{job_id}") as response:
                assert response.status == 200, await response.text()
                job: dict[str, Any] = await response.json()
            if job["status"] in FINISHED:
                return job
            await asyncio.sleep(0.05)


async def ingest(http: aiohttp.ClientSession, api: str, day: str) -> dict[str, Any]:
    async with http.post(f"{api}/process-request", params={"date": day}) as response:
        assert response.status == 202, await response.text()
        accepted = await response.json()
    assert accepted["status"] == "queued"
    assert accepted["date"] == day
    assert accepted["status_url"] == f"/jobs/{accepted['job_id']}"
    return await wait_for_job(http, api, accepted["job_id"])


async def country_stats(
    http: aiohttp.ClientSession, api: str, start: str, end: str
) -> dict[str, Any]:
    async with http.get(f"{api}/country-stats", params={"from": start, "to": end}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def raw_files(store: Store, days: list[dt.date]) -> dict[tuple[dt.date, int], bytes]:
    """The raw file each date's commit counts, by (date, city id)."""
    files: dict[tuple[dt.date, int], bytes] = {}
    for day in days:
        summary, _ = await read_summary(store, day)
        for row in summary.filter("counted").iter_rows(named=True):
            files[(day, row["city_id"])] = await store.get_bytes(row["raw_key"])
    return files


async def commit_city(
    store: Store, day: dt.date, city: City, raw: Path, parquet: Path, result: ConversionResult
) -> None:
    """Store a converted city under a run of its own and commit it into the date's summary,
    as an ingest would, keeping the cities committed before."""
    run_id = uuid.uuid4().hex
    keys = raw_key(day, city.id, run_id), parquet_key(day, city.id, run_id)
    await store.put_file(keys[0], raw)
    await store.put_file(keys[1], parquet)
    previous, read = await read_summary(store, day)
    listed = [
        City(row["city_id"], row["city_name"], row["country"])
        for row in previous.iter_rows(named=True)
        if row["city_id"] != city.id
    ]
    new = City(city.id, city.name, city.country)
    stored = StoredCity(
        new, *keys, result.rows, result.passengers, result.delay_microseconds, result.accident
    )
    rows = summary_rows(day, run_id, [*listed, new], {city.id: stored}, {}, previous)
    await write_summary(store, day, rows, read, run_id)
