"""Backfills (`POST /process-request?from=&to=`): every date committed once, no more jobs
running than the process allows, cancelling a backfill or a job, SIGTERM and a dead process
during a backfill, and bad parameters."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from busstats.commit.dates import read_summary
from busstats.jobs.records import JobStore
from busstats.model.backfills import BackfillRecord
from busstats.reference.sim import SimulatorConfig
from busstats.storage import LocalStore, Store
from busstats.storage.keys import backfill_key
from harness.servers import RunningSimulator, api_server, serve_process, settings_for, simulator
from tests.support.flows import FINISHED, StartApi, country_stats, ingest, wait_for_job

FIRST, LAST = dt.date(2024, 5, 1), dt.date(2024, 5, 5)
DAYS = [FIRST + dt.timedelta(days=n) for n in range(5)]
QUICK = SimulatorConfig(rows=(5, 20), min_latency=0.1, max_latency=0.3)
"""What the module's simulator serves unless a test parametrizes `simulator_config`."""
SLOW = SimulatorConfig(seed=1, rows=(5, 20), min_latency=30, max_latency=40)
"""Cities that answer only after half a minute: jobs surely run when the test acts."""
ENDED = {"succeeded", "partial", "failed", "cancelled", "interrupted"}


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return QUICK


async def post_backfill(
    http: aiohttp.ClientSession, url: str, first: dt.date, last: dt.date
) -> dict[str, Any]:
    query = {"from": first.isoformat(), "to": last.isoformat()}
    async with http.post(f"{url}/process-request", params=query) as response:
        assert response.status == 202, await response.text()
        accepted: dict[str, Any] = await response.json()
    assert (accepted["from"], accepted["to"]) == (first.isoformat(), last.isoformat())
    assert accepted["status"] == "running"
    assert accepted["status_url"] == f"/backfills/{accepted['backfill_id']}"
    return accepted


async def get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        found: dict[str, Any] = await response.json()
        return found


async def wait_for_backfill(
    http: aiohttp.ClientSession, url: str, backfill_id: str, limit_seconds: float = 90
) -> dict[str, Any]:
    async with asyncio.timeout(limit_seconds):
        while True:
            backfill = await get_json(http, f"{url}/backfills/{backfill_id}")
            if backfill["status"] in ENDED:
                return backfill
            await asyncio.sleep(0.05)


async def wait_until_running(
    http: aiohttp.ClientSession, url: str, backfill_id: str, count: int
) -> dict[str, Any]:
    """The backfill once `count` of its jobs run."""
    async with asyncio.timeout(20):
        while True:
            backfill = await get_json(http, f"{url}/backfills/{backfill_id}")
            statuses = [
                (await get_json(http, f"{url}/jobs/{job['job_id']}"))["status"]
                for job in backfill["jobs"]
            ]
            if statuses.count("running") >= count:
                return backfill
            await asyncio.sleep(0.05)


@pytest.mark.both_stores
async def test_a_backfill_commits_every_date_once_within_the_job_limit(
    store: Store, start_api: StartApi, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    extra_days = ["2024-06-01", "2024-06-02"]
    async with start_api(store, max_running_jobs=2) as url:
        accepted = await post_backfill(http, url, FIRST, LAST)
        assert 1 <= len(accepted["jobs"]) <= 2
        singles: list[str] = []
        for day in extra_days:  # single-date jobs share the process's two slots
            async with http.post(f"{url}/process-request", params={"date": day}) as response:
                singles.append((await response.json())["job_id"])
        most_running = 0
        async with asyncio.timeout(90):
            while True:
                backfill = await get_json(http, f"{url}/backfills/{accepted['backfill_id']}")
                job_ids = [job["job_id"] for job in backfill["jobs"]] + singles
                # one LIST of the index: a snapshot (GETs of each job, one after the other,
                # could see a job still running and the one that took its slot already)
                running = await get_json(http, f"{url}/jobs?status=running")
                most_running = max(most_running, len(running["jobs"]))
                jobs = [await get_json(http, f"{url}/jobs/{job_id}") for job_id in job_ids]
                if backfill["status"] in ENDED and all(j["status"] in FINISHED for j in jobs):
                    break
                await asyncio.sleep(0.02)
        backfilled = await country_stats(http, url, FIRST.isoformat(), LAST.isoformat())
        records = [await get_json(http, f"{url}/jobs/{job['job_id']}") for job in backfill["jobs"]]
    assert most_running == 2
    assert backfill["status"] == "succeeded", backfill
    assert backfill["reason"]
    assert [job["date"] for job in backfill["jobs"]] == [day.isoformat() for day in DAYS]
    assert backfill["dates_done"] == [job["date"] for job in backfill["jobs"]]
    assert (backfill["dates_left"], backfill["dates_failed"]) == ([], [])
    assert backfill["progress"] == {"total": 5, "done": 5, "failed": 0, "in_progress": 0, "left": 0}
    for job, record in zip(backfill["jobs"], records, strict=True):
        assert record["status"] == "succeeded"
        assert record["backfill_id"] == backfill["backfill_id"]
        summary, _ = await read_summary(store, dt.date.fromisoformat(job["date"]))
        assert set(summary["commit_id"]) == {job["job_id"]}  # committed once, by its job

    one_by_one = LocalStore(tmp_path / "one-by-one")
    async with start_api(one_by_one) as url:
        for day in DAYS:
            assert (await ingest(http, url, day.isoformat()))["status"] == "succeeded"
        expected = await country_stats(http, url, FIRST.isoformat(), LAST.isoformat())
    assert backfilled["stats"] == expected["stats"]
    assert backfilled["incomplete_dates"] == []


async def test_cancelling_a_backfill_stops_it_and_keeps_the_previous_commits(
    local_store: LocalStore, start_api: StartApi, http: aiohttp.ClientSession
) -> None:
    store = local_store
    async with start_api(store) as url:
        for day in DAYS:
            await ingest(http, url, day.isoformat())
        before = await country_stats(http, url, FIRST.isoformat(), LAST.isoformat())
    async with (
        simulator(SLOW) as sim,
        api_server(settings_for(store, sim, max_running_jobs=2), store) as url,
    ):
        accepted = await post_backfill(http, url, FIRST, LAST)
        backfill_url = f"{url}/backfills/{accepted['backfill_id']}"
        await wait_until_running(http, url, accepted["backfill_id"], 2)
        async with asyncio.timeout(15), http.delete(backfill_url) as response:
            assert response.status == 200, await response.text()
            cancelled = await response.json()
        assert cancelled["status"] == "cancelled"
        assert "cancelled" in cancelled["reason"]
        assert len(cancelled["jobs"]) == 2  # no job after the cancel
        assert cancelled["dates_left"] == [day.isoformat() for day in DAYS]
        for job in cancelled["jobs"]:
            record = await get_json(http, f"{url}/jobs/{job['job_id']}")
            assert (record["status"], record["error"]) == ("failed", "cancelled")
            assert record["commit_id"] is None
        async with http.get(f"{url}/jobs", params={"from": "2024-05-01"}) as response:
            listed = (await response.json())["jobs"]
        assert len(listed) == 5 + 2
        async with http.delete(backfill_url) as response:
            assert response.status == 409, await response.text()
        stored = await store.get_bytes(backfill_key(accepted["backfill_id"]))
        assert msgspec.json.decode(stored, type=BackfillRecord).status == "cancelled"
        after = await country_stats(http, url, FIRST.isoformat(), LAST.isoformat())
    assert after == before


@pytest.mark.parametrize("simulator_config", [SLOW])
async def test_deleting_a_job_cancels_it_here_and_is_refused_elsewhere(
    local_store: LocalStore, start_api: StartApi, http: aiohttp.ClientSession
) -> None:
    async with start_api(local_store) as url, start_api(local_store) as other:
        async with http.post(f"{url}/process-request", params={"date": "2024-05-01"}) as response:
            job_id = (await response.json())["job_id"]
        async with asyncio.timeout(10):
            while True:
                if (await get_json(http, f"{url}/jobs/{job_id}"))["status"] == "running":
                    break
                await asyncio.sleep(0.02)
        async with http.delete(f"{other}/jobs/{job_id}") as response:
            assert response.status == 409
            assert "another process" in (await response.json())["error"]
        async with asyncio.timeout(10), http.delete(f"{url}/jobs/{job_id}") as response:
            assert response.status == 200, await response.text()
            job = await response.json()
        assert (job["status"], job["error"]) == ("failed", "cancelled")
        assert job["finished_at"] is not None
        assert all(city["status"] == "failed" for city in job["cities"])
        assert (await wait_for_job(http, url, job_id))["error"] == "cancelled"
        async with http.delete(f"{url}/jobs/{job_id}") as response:
            assert response.status == 409
            assert "has ended" in (await response.json())["error"]
        async with http.delete(f"{url}/jobs/{'0' * 32}") as response:
            assert response.status == 404


def environment(tmp_path: Path, reference_url: str) -> dict[str, str]:
    return {
        "BUSSTATS_STORE": str(tmp_path / "store"),
        "BUSSTATS_REFERENCE_URL": reference_url,
        "BUSSTATS_MAX_RUNNING_JOBS": "2",
    }


async def stored_backfill(store: Store, backfill_id: str) -> BackfillRecord:
    return msgspec.json.decode(
        await store.get_bytes(backfill_key(backfill_id)), type=BackfillRecord
    )


@pytest.mark.parametrize("simulator_config", [SLOW])
async def test_sigterm_during_a_backfill_stops_quickly_with_every_job_recorded(
    simulator: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    store = LocalStore(tmp_path / "store")
    async with serve_process(environment(tmp_path, simulator.url), http) as service:
        accepted = await post_backfill(http, service.url, FIRST, LAST)
        await wait_until_running(http, service.url, accepted["backfill_id"], 2)
        service.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(6):
            await service.process.wait()
    backfill = await stored_backfill(store, accepted["backfill_id"])
    assert backfill.status == "interrupted"
    assert backfill.reason is not None
    assert backfill.reason.startswith("interrupted")
    assert backfill.finished_at is not None
    assert backfill.dates_left == DAYS
    assert len(backfill.jobs) == 2
    for entry in backfill.jobs:
        job = await JobStore(store).load(entry.job_id)
        assert job is not None
        assert (job.status, job.finished_at is not None) == ("failed", True)
        assert (job.error or "").startswith("interrupted")
    assert await store.list_keys("backfills/running/") == []


@pytest.mark.parametrize("simulator_config", [SLOW])
async def test_a_backfill_left_by_a_dead_process_ends_interrupted(
    simulator: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serve_process(environment(tmp_path, simulator.url), http) as service:
        accepted = await post_backfill(http, service.url, FIRST, LAST)
        await wait_until_running(http, service.url, accepted["backfill_id"], 2)
        service.kill()
        await service.process.wait()
    async with serve_process(environment(tmp_path, simulator.url), http) as service:
        async with asyncio.timeout(20):  # the lease (2 s here) expires, recovery ends it
            while True:
                backfill = await get_json(
                    http, f"{service.url}/backfills/{accepted['backfill_id']}"
                )
                if backfill["status"] in ENDED:
                    break
                await asyncio.sleep(0.1)
    assert backfill["status"] == "interrupted"
    assert "died" in backfill["reason"]
    assert backfill["dates_left"] == [day.isoformat() for day in DAYS]


async def test_bad_backfill_requests_are_refused(
    local_store: LocalStore, start_api: StartApi, http: aiohttp.ClientSession
) -> None:
    store = local_store
    async with start_api(store, max_range_days=10) as url:
        for query, message in [
            ({"from": "2024-05-01"}, "'to' is required"),
            ({"to": "2024-05-01"}, "'from' is required"),
            ({"from": "2024-05-03", "to": "2024-05-01"}, "is after"),
            ({"from": "2024-05-01", "to": "2024-05-11"}, "at most 10 days"),
            ({"from": "2024-05-01", "to": "2024-02-30"}, "real date"),
            ({"from": "2024-05-01", "to": "2024-05-02", "date": "2024-05-01"}, "either"),
        ]:
            async with http.post(f"{url}/process-request", params=query) as response:
                assert response.status == 400, query
                assert message in (await response.json())["error"], query
        for method in ("GET", "DELETE"):
            for backfill_id in ("not-an-id", "0" * 32):
                async with http.request(method, f"{url}/backfills/{backfill_id}") as response:
                    assert response.status == 404
        accepted = await post_backfill(http, url, FIRST, FIRST)
        done = await wait_for_backfill(http, url, accepted["backfill_id"])
        assert done["status"] == "succeeded"
        async with http.delete(f"{url}{accepted['status_url']}") as response:
            assert response.status == 409
            assert "has ended" in (await response.json())["error"]
    assert await store.list_keys("jobs/running/") == []
    assert await store.list_keys("backfills/running/") == []
