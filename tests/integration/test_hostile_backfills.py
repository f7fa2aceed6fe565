"""Hostile tests of backfills and of stopping the service while they run."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from busstats.jobs.records import JobStore
from busstats.model.backfills import BackfillRecord
from busstats.reference.sim import SimulatorConfig
from busstats.storage import LocalStore
from busstats.storage.keys import backfill_key
from harness.servers import api_server, serve_process, settings_for, simulator

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
    """The SIGTERM test of tests/integration/test_backfills.py, plus one upload waiting for a
    job slot. uvicorn (`busstats serve`: no timeout_graceful_shutdown) waits for every request in
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


class SlowJobCreate(LocalStore):
    """A local store where, once `armed`, the next new job record waits for `gate` (a slow
    PUT on S3): the backfill's driver is then inside `JobRunner.submit` for as long as the
    test wants."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.armed = False
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        if self.armed and if_absent and re.fullmatch(r"jobs/[0-9a-f]{32}\.json", key):
            self.armed = False
            self.entered.set()
            await self.gate.wait()
        return await super().put_bytes(key, data, if_absent=if_absent, if_match=if_match)


async def test_a_job_a_backfill_was_creating_when_the_service_stopped_ends_interrupted(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The lifespan's shutdown stops the backfills (`stop_all`), then `JobRunner.close`
    cancels the tasks of the jobs it knows. A job whose creation was under way in the
    driver (`await self._runner.submit(day, ...)`) when stop_all ran is started after
    close() listed its tasks: `_drive` re-checks only for CANCELLED (`_cancelled`), not
    INTERRUPTED. That job then runs with the process's HTTP session and temp folder closed,
    and ends `failed` "internal error" instead of "interrupted" (or is still running when
    the service has stopped)."""
    store = SlowJobCreate(tmp_path / "store")
    temp = tmp_path / "temp"
    temp.mkdir()
    quick = SimulatorConfig(rows=(5, 10), min_latency=0.05, max_latency=0.2)
    async with simulator(quick) as sim:
        server = api_server(settings_for(store, sim, max_running_jobs=1, temp_dir=str(temp)), store)
        url = await server.__aenter__()
        query = {"from": FIRST.isoformat(), "to": LAST.isoformat()}
        async with http.post(f"{url}/process-request", params=query) as response:
            assert response.status == 202, await response.text()
            backfill_id = (await response.json())["backfill_id"]
        store.armed = True  # the second date's job: created once the first has ended
        async with asyncio.timeout(30):
            await store.entered.wait()
        stopping = asyncio.create_task(server.__aexit__(None, None, None))
        async with asyncio.timeout(20):  # JobRunner.close() has run: its temp folder is gone
            while any(temp.glob("*/*")):  # noqa: ASYNC110  (temp/busstats/proc-<pid>)
                await asyncio.sleep(0.02)
        store.gate.set()
        async with asyncio.timeout(30):
            await stopping
        jobs = JobStore(store)
        async with asyncio.timeout(10):  # whatever still runs in this event loop, ends
            while True:
                records = [
                    await jobs.load(key.removeprefix("jobs/").removesuffix(".json"))
                    for key in await store.list_keys("jobs/")
                    if re.fullmatch(r"jobs/[0-9a-f]{32}\.json", key)
                ]
                if all(r is not None and r.finished for r in records):
                    break
                await asyncio.sleep(0.05)
    backfill = msgspec.json.decode(
        await store.get_bytes(backfill_key(backfill_id)), type=BackfillRecord
    )
    assert backfill.status == "interrupted", backfill
    second = [r for r in records if r is not None and r.date == FIRST + dt.timedelta(days=1)]
    for record in second:
        assert (record.error or "").startswith("interrupted"), (record.status, record.error)


async def test_cancelling_the_first_ingest_of_a_date_leaves_the_date_as_it_was(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """DELETE /jobs/{id}: "the date keeps its previous commit". A date with no data yet gets
    a placeholder summary when its ingest begins (commit.begin_date); a job ending by itself
    without a commit drops it (drop_placeholder), a cancelled one does not: `_finish` skips
    the sweep when `abort_reason` is set, and nothing else drops it (recovery fences and
    sweeps it, and keeps it). From then on /country-stats reports the date as incomplete,
    "the first ingest is still running, or was interrupted", instead of without data."""
    store = LocalStore(tmp_path / "store")
    day = FIRST.isoformat()
    query = {"from": day, "to": day}
    async with simulator(SLOW) as sim, api_server(settings_for(store, sim), store) as url:
        before = await get_json(http, f"{url}/country-stats?from={day}&to={day}")
        async with http.post(f"{url}/process-request", params={"date": day}) as response:
            job_id = (await response.json())["job_id"]
        async with asyncio.timeout(20):
            while (await get_json(http, f"{url}/jobs/{job_id}"))["status"] != "running":  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        async with asyncio.timeout(20):  # running: its placeholder is written
            while not await store.list_keys("summary/"):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        async with asyncio.timeout(15), http.delete(f"{url}/jobs/{job_id}") as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["error"] == "cancelled"
        async with http.get(f"{url}/country-stats", params=query) as response:
            after = await response.json()
    assert before["dates_without_data"] == [day]
    assert after["incomplete_dates"] == before["incomplete_dates"] == [], after
    assert after["dates_without_data"] == [day]
