"""Hostile tests of backfills and of stopping the service while they run."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from busstats.backfills import BackfillRecord
from busstats.layout import backfill_key
from busstats.refsim import SimulatorConfig
from busstats.store import LocalStore
from harness.servers import serve_process, simulator

FIRST, LAST = dt.date(2024, 5, 1), dt.date(2024, 5, 5)
SLOW = SimulatorConfig(seed=1, rows=(5, 20), min_latency=30, max_latency=40)
"""Cities that answer only after half a minute: jobs surely run when the test acts."""


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def until(http: aiohttp.ClientSession, url: str, done: Callable[[list[Any]], bool]) -> None:
    """Poll a `/jobs` listing until `done` holds for its jobs (20 s at most)."""
    async with asyncio.timeout(20):
        while not done((await get_json(http, url))["jobs"]):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_sigterm_with_an_upload_waiting_for_a_slot_still_stops_within_seconds(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The SIGTERM test of tests/test_backfills.py, plus one upload waiting for a job slot.
    uvicorn (`busstats serve`: no timeout_graceful_shutdown) waits for every request in
    flight before the lifespan's shutdown, which is what stops the backfills and the jobs:
    the upload waits for a slot, the backfill's jobs take their half minute, and the
    backfill goes on creating jobs meanwhile. The process ends only once the upload ran."""
    store = LocalStore(tmp_path / "store")
    environment = {
        "BUSSTATS_STORE": str(store.root),
        "BUSSTATS_MAX_RUNNING_JOBS": "2",
        # room for the upload's conversion beside the two jobs' 2 x 30 slow cities: it then
        # waits for a job slot, not for a city slot (which it also would, before any job)
        "BUSSTATS_CITY_CONCURRENCY": "128",
    }
    async with simulator(SLOW) as sim:
        environment["BUSSTATS_REFERENCE_URL"] = sim.url
        async with serve_process(environment, http) as service:
            query = {"from": FIRST.isoformat(), "to": LAST.isoformat()}
            async with http.post(f"{service.url}/process-request", params=query) as response:
                assert response.status == 202, await response.text()
                backfill_id = (await response.json())["backfill_id"]
            await until(http, f"{service.url}/jobs?status=running", lambda jobs: len(jobs) == 2)
            async with http.get(f"{sim.url}/cities") as response:
                city = (await response.json())[0]
            rows = [{"departure-time": "2024-06-01T08:00:00Z", "bus-type": "X", "passengers": 3}]
            upload = asyncio.create_task(
                http.put(f"{service.url}/raw/2024-06-01/{city['id']}", data=json.dumps(rows))
            )
            # the upload's job is recorded, queued for a slot
            await until(http, f"{service.url}/jobs?date=2024-06-01", lambda jobs: len(jobs) == 1)
            service.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            try:
                async with asyncio.timeout(15):
                    await service.process.wait()
            except TimeoutError:
                pass
            stopped_after = time.monotonic() - started
            upload.cancel()
    stored = await store.get_bytes(backfill_key(backfill_id))
    backfill = msgspec.json.decode(stored, type=BackfillRecord)
    assert stopped_after < 10, f"SIGTERM took {stopped_after:.1f} s (or more) to stop the service"
    assert backfill.status == "interrupted", backfill
