"""The daily schedule: start/stop/get over HTTP, firing at the set time, once across
processes, catch-up after downtime, and surviving restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from busstats.core.settings import Settings
from busstats.model.jobs import JobRecord
from busstats.model.schedule import FireMarker, ScheduleState
from busstats.orchestration.schedule import STATE_KEY, Scheduler, fired_key, latest_due
from busstats.reference.sim import SimulatorConfig
from busstats.storage import LocalStore, Store
from harness.servers import (
    MotoEndpoint,
    RunningSimulator,
    api_server,
    open_s3_store,
    s3_environment,
    serve_process,
)

DAY = dt.date(2024, 5, 2)
BEFORE_SIX = dt.datetime(2024, 5, 2, 5, 59, tzinfo=dt.UTC)
AT_SIX = dt.datetime(2024, 5, 2, 6, 0, tzinfo=dt.UTC)


class Clock:
    """An injectable "now" for the scheduler."""

    def __init__(self, moment: dt.datetime) -> None:
        self.moment = moment

    def __call__(self) -> dt.datetime:
        return self.moment


class Submitted:
    """Stands in for `JobRunner.submit`: records each day submitted."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}

    async def submit(self, day: dt.date) -> JobRecord:
        job = JobRecord.new(day)
        self.jobs[job.job_id] = job
        return job

    async def exists(self, job_id: str) -> bool:
        return job_id in self.jobs

    @property
    def days(self) -> list[dt.date]:
        return sorted(job.date for job in self.jobs.values())


def scheduler(store: Store, clock: Clock, submitted: Submitted, **settings: Any) -> Scheduler:
    return Scheduler(
        store, Settings(lease_seconds=30, **settings), submitted.submit, submitted.exists, clock
    )


async def test_fires_at_the_set_time_once_for_yesterday(store: Store) -> None:
    clock, submitted = Clock(BEFORE_SIX), Submitted()
    schedule = scheduler(store, clock, submitted)
    await schedule.change(enabled=True, at="06:00", lag_days=1)
    assert await schedule.check() == []
    view = await schedule.view()
    assert (view.next_run_at, view.next_date) == (AT_SIX, dt.date(2024, 5, 1))
    clock.moment = AT_SIX
    assert await schedule.check() == [dt.date(2024, 5, 1)]
    assert await schedule.check() == []
    assert submitted.days == [dt.date(2024, 5, 1)]
    assert (await schedule.view()).last_date == dt.date(2024, 5, 1)


async def test_a_lag_of_two_ingests_the_day_before_yesterday(store: Store) -> None:
    clock, submitted = Clock(BEFORE_SIX), Submitted()
    schedule = scheduler(store, clock, submitted)
    await schedule.change(enabled=True, at="06:00", lag_days=2)
    clock.moment = AT_SIX
    assert await schedule.check() == [dt.date(2024, 4, 30)]


async def test_stop_prevents_firing(store: Store) -> None:
    clock, submitted = Clock(BEFORE_SIX), Submitted()
    schedule = scheduler(store, clock, submitted)
    await schedule.change(enabled=True, at="06:00", lag_days=1)
    await schedule.change(enabled=False, at=None, lag_days=None)
    clock.moment = AT_SIX + dt.timedelta(days=3)
    assert await schedule.check() == []
    view = await schedule.view()
    assert (view.enabled, view.next_run_at, view.next_date) == (False, None, None)
    assert submitted.days == []


async def test_a_start_does_not_fire_days_already_due(store: Store) -> None:
    clock, submitted = Clock(AT_SIX + dt.timedelta(hours=3)), Submitted()
    schedule = scheduler(store, clock, submitted)
    await schedule.change(enabled=True, at="06:00", lag_days=1)
    assert await schedule.check() == []
    clock.moment = AT_SIX + dt.timedelta(days=1)
    assert await schedule.check() == [DAY]


async def test_catch_up_fires_missed_days_bounded(store: Store) -> None:
    """A service down for 20 days fires only the last `schedule_catch_up_days` at start."""
    clock, submitted = Clock(BEFORE_SIX - dt.timedelta(days=20)), Submitted()
    first = scheduler(store, clock, submitted)
    await first.change(enabled=True, at="06:00", lag_days=1)
    clock.moment = AT_SIX
    again = scheduler(store, clock, submitted, schedule_catch_up_days=3)
    await again.start()
    await again.close()
    assert submitted.days == [dt.date(2024, 4, 29), dt.date(2024, 4, 30), dt.date(2024, 5, 1)]


async def test_the_setting_seeds_the_schedule_only_once(store: Store) -> None:
    clock, submitted = Clock(BEFORE_SIX), Submitted()
    seeded = scheduler(store, clock, submitted, schedule_at="06:00", schedule_lag_days=2)
    await seeded.start()
    await seeded.close()
    view = await seeded.view()
    assert (view.enabled, view.at, view.lag_days) == (True, "06:00", 2)
    await seeded.change(enabled=False, at=None, lag_days=None)
    other = scheduler(store, clock, submitted, schedule_at="07:00")
    await other.start()
    await other.close()
    assert (await other.view()).enabled is False  # the store's state wins over the setting
    assert submitted.days == []


async def test_two_schedulers_on_one_store_fire_a_day_once(moto: MotoEndpoint) -> None:
    s3 = await open_s3_store(moto.url, moto.new_bucket())
    try:
        clock, submitted = Clock(BEFORE_SIX), Submitted()
        schedules = [scheduler(s3, clock, submitted) for _ in range(4)]
        await schedules[0].change(enabled=True, at="06:00", lag_days=1)
        clock.moment = AT_SIX + dt.timedelta(days=2)  # three days due, raced by four
        fired = await asyncio.gather(*(s.check() for s in schedules))
    finally:
        await s3.close()
    assert submitted.days == [dt.date(2024, 5, 1), DAY, dt.date(2024, 5, 3)]
    assert sorted(day for days in fired for day in days) == submitted.days


async def test_a_claim_whose_job_was_never_recorded_fires_again(store: Store) -> None:
    """A process that died between creating the day's marker and submitting its job."""
    clock, submitted = Clock(BEFORE_SIX), Submitted()
    schedule = scheduler(store, clock, submitted)
    await schedule.change(enabled=True, at="06:00", lag_days=1)
    yesterday = dt.date(2024, 5, 1)
    claim = FireMarker(claimed_at=AT_SIX)
    await store.put_bytes(fired_key(yesterday), msgspec.json.encode(claim))
    clock.moment = AT_SIX + dt.timedelta(seconds=5)
    assert await schedule.check() == []  # a fresh claim: its process may still be submitting
    clock.moment = AT_SIX + dt.timedelta(seconds=31)
    assert await schedule.check() == [yesterday]
    gone = FireMarker(claimed_at=AT_SIX, job_id="0" * 32)  # names a job that was never saved
    await store.put_bytes(fired_key(yesterday), msgspec.json.encode(gone))
    state = msgspec.json.decode(await store.get_bytes(STATE_KEY), type=ScheduleState)
    state.last_date = dt.date(2024, 4, 30)
    await store.put_bytes(STATE_KEY, msgspec.json.encode(state))  # as if not yet advanced
    assert await schedule.check() == [yesterday]
    assert submitted.days == [yesterday, yesterday]


async def test_unreadable_objects_stop_nothing_for_good(store: Store) -> None:
    """A garbled state reads as stopped until a start replaces it; a garbled marker is a
    claim nobody can finish, so the day fires."""
    clock, submitted = Clock(BEFORE_SIX), Submitted()
    schedule = scheduler(store, clock, submitted)
    await store.put_bytes(STATE_KEY, b"{not json")
    assert (await schedule.view()).enabled is False
    await schedule.change(enabled=True, at="06:00", lag_days=1)
    await store.put_bytes(fired_key(dt.date(2024, 5, 1)), b"\xff")
    clock.moment = AT_SIX
    assert await schedule.check() == [dt.date(2024, 5, 1)]


async def test_http_start_stop_get_and_bad_params(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    settings = Settings(store=str(tmp_path / "store"))
    async with api_server(settings) as api:
        async with http.get(f"{api}/schedule") as response:
            assert response.status == 200
            assert (await response.json())["enabled"] is False
        bad = [
            "",  # no time set anywhere yet
            "?at=6:30",
            "?at=24:00",
            "?at=06:30&at=07:00",
            "?at=06:30&lag_days=-1",
            "?at=06:30&lag_days=366",
            "?at=06:30&lag_days=one",
            "?at=06:30&every=day",
        ]
        for query in bad:
            async with http.post(f"{api}/schedule/start{query}") as response:
                assert response.status == 400, query
                assert (await response.json())["error"], query
        async with http.post(f"{api}/schedule/stop?now=1") as response:
            assert response.status == 400
        async with http.post(f"{api}/schedule/start?at=06:30&lag_days=2") as response:
            assert response.status == 200
            started = await response.json()
        assert started["enabled"] is True
        assert (started["at"], started["lag_days"]) == ("06:30", 2)
        next_run = dt.datetime.fromisoformat(started["next_run_at"])
        assert next_run.time() == dt.time(6, 30)
        assert dt.date.fromisoformat(started["next_date"]) == next_run.date() - dt.timedelta(2)
        async with http.post(f"{api}/schedule/stop") as response:
            stopped = await response.json()
        assert (stopped["enabled"], stopped["at"], stopped["next_run_at"]) == (False, "06:30", None)
        async with http.post(f"{api}/schedule/start") as response:  # the time set before
            assert (await response.json())["at"] == "06:30"


async def jobs_listed(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/jobs") as response:
        assert response.status == 200
        jobs: list[dict[str, Any]] = (await response.json())["jobs"]
        return jobs


async def wait_for_jobs(
    http: aiohttp.ClientSession, url: str, count: int, limit: float = 30
) -> list[dict[str, Any]]:
    """The jobs listed, once there are at least `count`; fail the test after `limit`."""
    async with asyncio.timeout(limit):
        while True:
            jobs = await jobs_listed(http, url)
            if len(jobs) >= count:
                return jobs
            await asyncio.sleep(0.1)


async def wait_for_log(log: Path, text: str, limit: float = 30) -> None:
    async with asyncio.timeout(limit):
        while True:
            if text in await asyncio.to_thread(log.read_text, errors="replace"):
                return
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("simulator_config", [SimulatorConfig()])
async def test_two_service_processes_fire_the_scheduled_day_once(
    simulator: RunningSimulator, moto: MotoEndpoint, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = s3_environment(moto.new_bucket(), moto.url)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    async with (
        serve_process({**env, "BUSSTATS_REFERENCE_URL": simulator.url}, http, logs[0]) as first,
        serve_process({**env, "BUSSTATS_REFERENCE_URL": simulator.url}, http, logs[1]) as second,
    ):
        fires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=4)
        at = fires.time().isoformat()
        async with http.post(f"{first.url}/schedule/start", params={"at": at}) as response:
            assert response.status == 200, await response.text()
        yesterday = (fires.date() - dt.timedelta(days=1)).isoformat()
        for log in logs:  # each process either fired the day or found it fired
            await wait_for_log(log, f"the schedule checked its run of {fires.isoformat()}")
        jobs = await wait_for_jobs(http, second.url, 1)
        assert [job["date"] for job in jobs] == [yesterday]
        async with http.get(f"{second.url}/jobs/{jobs[0]['job_id']}") as response:
            assert (await response.json())["trigger"] == "schedule"
        async with http.get(f"{second.url}/schedule") as response:
            assert (await response.json())["last_date"] == yesterday
        for service in (first, second):
            await service.stop()
    logged = [log.read_text() for log in logs]
    assert sum(text.count("the schedule submitted job") for text in logged) == 1


@pytest.mark.parametrize("simulator_config", [SimulatorConfig()])
async def test_the_schedule_survives_a_restart_and_catches_up(
    simulator: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A schedule whose last day is four days back: the restarted service submits the three
    days it missed at start, and keeps the schedule."""
    store = LocalStore(tmp_path / "store")
    now = dt.datetime.now(dt.UTC)
    latest = latest_due(now, "00:00", 1)
    three_back = latest - dt.timedelta(days=3)
    state = ScheduleState(
        enabled=True, at="00:00", lag_days=1, last_date=three_back, updated_at=now
    )
    await store.put_bytes(STATE_KEY, msgspec.json.encode(state))
    env = {"BUSSTATS_STORE": str(tmp_path / "store")}
    env["BUSSTATS_REFERENCE_URL"] = simulator.url
    async with serve_process(env, http) as service:
        jobs = await wait_for_jobs(http, service.url, 3)
        await service.stop()
    expected = [(latest - dt.timedelta(days=n)).isoformat() for n in range(3)]
    assert sorted(job["date"] for job in jobs) == sorted(expected)
    async with serve_process(env, http) as service:
        async with http.get(f"{service.url}/schedule") as response:
            view = await response.json()
        assert (view["enabled"], view["at"], view["last_date"]) == (
            True,
            "00:00",
            latest.isoformat(),
        )
        assert len(await jobs_listed(http, service.url)) == 3  # nothing fired twice
        async with http.post(f"{service.url}/schedule/stop") as response:
            assert response.status == 200
        await service.stop()
    async with (
        serve_process(env, http) as service,
        http.get(f"{service.url}/schedule") as response,
    ):
        assert (await response.json())["enabled"] is False


@pytest.mark.parametrize("value", ["6:00", "24:00", "06:00:60", "noon"])
def test_the_setting_refuses_a_bad_time(value: str) -> None:
    from busstats.core.settings import ConfigError

    with pytest.raises(ConfigError, match="BUSSTATS_SCHEDULE_AT"):
        Settings.from_env({"BUSSTATS_SCHEDULE_AT": value})


async def test_http_says_why_a_stored_state_it_cannot_use_is_stopped(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A state edited by hand into a lag out of bounds: GET /schedule answers 200, stopped,
    with a `problem` naming the state and the way out; a start replaces it."""
    settings = Settings(store=str(tmp_path / "store"))
    bad = b'{"enabled": true, "at": "06:00", "lag_days": -3, "updated_at": "2024-05-01T00:00:00Z"}'
    await LocalStore(tmp_path / "store").put_bytes(STATE_KEY, bad)
    async with api_server(settings) as api:
        async with http.get(f"{api}/schedule") as response:
            assert response.status == 200, await response.text()
            shown = await response.json()
        assert (shown["enabled"], shown["next_run_at"]) == (False, None)
        assert STATE_KEY in shown["problem"]
        assert "POST /schedule/start" in shown["problem"]
        async with http.post(f"{api}/schedule/start?at=06:00&lag_days=1") as response:
            assert response.status == 200, await response.text()
            started = await response.json()
        assert (started["enabled"], started["lag_days"], started["problem"]) == (True, 1, None)
