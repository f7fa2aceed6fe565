"""Steps a user takes against the API, shared by the integration tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiohttp

from busstats.layout import RAW, city_id_of, date_prefix
from busstats.store import Store

FINISHED = {"succeeded", "partial", "failed"}


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
    """Every raw file stored for these dates, by (date, city id)."""
    files: dict[tuple[dt.date, int], bytes] = {}
    for day in days:
        for key in await store.list_keys(date_prefix(RAW, day)):
            city_id = city_id_of(key)
            assert city_id is not None, key
            files[(day, city_id)] = await store.get_bytes(key)
    return files
