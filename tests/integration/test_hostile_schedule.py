"""Hostile tests of the schedule: junk that decodes (right types, wrong values) in the stored
state and in a day's fire marker. A garbled object is already handled
(tests/integration/test_schedule.py); these are the values msgspec lets through."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import aiohttp
import msgspec
import pytest

from busstats.core.settings import Settings
from busstats.model.jobs import JobRecord
from busstats.orchestration.schedule import FIRED_PREFIX, STATE_KEY, Scheduler, fired_key
from busstats.storage import LocalStore, Store, StoreError
from harness.servers import serve_process

AT_SIX = dt.datetime(2024, 5, 2, 6, 0, tzinfo=dt.UTC)
YESTERDAY = dt.date(2024, 5, 1)


class Clock:
    def __init__(self, moment: dt.datetime) -> None:
        self.moment = moment

    def __call__(self) -> dt.datetime:
        return self.moment


class Submitted:
    def __init__(self) -> None:
        self.days: list[dt.date] = []

    async def submit(self, day: dt.date) -> JobRecord:
        self.days.append(day)
        return JobRecord.new(day)

    async def exists(self, job_id: str) -> bool:
        return True


def state(**fields: object) -> bytes:
    base: dict[str, object] = {
        "enabled": True,
        "at": "06:00",
        "lag_days": 1,
        "last_date": "2024-04-30",
        "updated_at": "2024-04-30T06:00:00Z",
    }
    return msgspec.json.encode({**base, **fields})


JUNK_STATES = [
    pytest.param(state(at="25:00"), id="hour-25"),
    pytest.param(state(at="nonsense"), id="at-not-a-time"),
    pytest.param(state(lag_days=100_000_000), id="lag-overflows-dates"),
    pytest.param(state(last_date="9999-12-31"), id="last-date-at-the-end-of-time"),
]


@pytest.mark.parametrize("junk", JUNK_STATES)
async def test_a_stored_state_it_cannot_use_neither_stops_the_start_nor_the_view(
    store: Store, junk: bytes
) -> None:
    """A state written by hand (or by an older version) with the right types and a value
    out of range: Scheduler.start() (in the app's lifespan) and view() (GET /schedule) raise
    ValueError / OverflowError, which no handler turns into anything but a crash or a 500.
    It should read as stopped (like a garbled one) until a start with good values replaces it."""
    await store.put_bytes(STATE_KEY, junk)
    submitted = Submitted()
    schedule = Scheduler(
        store, Settings(lease_seconds=30), submitted.submit, submitted.exists, Clock(AT_SIX)
    )
    try:
        await schedule.start()  # raises today: the service's start-up fails
        await schedule.view()  # raises today: GET /schedule answers 500
        await schedule.change(enabled=True, at="06:00", lag_days=1)
        assert (await schedule.view()).at == "06:00"
    finally:
        await schedule.close()


async def test_the_service_process_starts_despite_a_stored_state_it_cannot_use(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The same as the service is run: `busstats serve` exits at once (uvicorn: "Application
    startup failed", exit 3) and stays down until someone edits the store by hand."""
    store = LocalStore(tmp_path / "store")
    await store.put_bytes(STATE_KEY, state(at="25:00"))
    async with (
        serve_process({"BUSSTATS_STORE": str(store.root)}, http) as service,
        http.get(f"{service.url}/schedule") as response,
    ):
        assert response.status == 200, await response.text()


async def test_a_negative_stored_lag_never_fires_a_day_that_has_not_ended(store: Store) -> None:
    """POST /schedule/start refuses lag_days < 0, but a stored -3 is used as it is: the
    schedule then ingests days in the future (upstream has nothing for them yet)."""
    await store.put_bytes(STATE_KEY, state(lag_days=-3))
    submitted = Submitted()
    clock = Clock(AT_SIX)
    schedule = Scheduler(
        store, Settings(lease_seconds=30), submitted.submit, submitted.exists, clock
    )
    await schedule.check()
    assert all(day < clock.moment.date() for day in submitted.days), submitted.days


async def test_a_fire_marker_with_a_time_without_zone_stops_nothing(store: Store) -> None:
    """A marker whose `claimed_at` has no zone decodes (msgspec gives a naive datetime), then
    `clock() - claimed_at` raises TypeError: the check fails, at start-up too (the service
    does not start), and while it runs every later day stays unfired."""
    await store.put_bytes(STATE_KEY, state())
    # a claim made a day before (stale, read as UTC or not) that never named its job
    await store.put_bytes(fired_key(YESTERDAY), b'{"claimed_at": "2024-05-01T06:00:00"}')
    submitted = Submitted()
    schedule = Scheduler(
        store, Settings(lease_seconds=30), submitted.submit, submitted.exists, Clock(AT_SIX)
    )
    await schedule.check()  # TypeError: can't subtract offset-naive and offset-aware datetimes
    assert submitted.days == [YESTERDAY]


class MarkerWriteFails(LocalStore):
    """A local store whose first write of a day's marker naming its job fails (S3 down for
    a moment): the job was submitted, the marker still says "claimed, no job yet"."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.failed = False

    async def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        if key.startswith(FIRED_PREFIX) and b'"job_id":"' in data and not self.failed:
            self.failed = True
            raise StoreError(f"S3 put {key} failed: injected")
        return await super().put_bytes(key, data, if_absent=if_absent, if_match=if_match)


async def test_a_failed_marker_update_does_not_fire_the_day_twice(tmp_path: Path) -> None:
    """ "Each day fires once across processes." _fire_once submits the job, then writes its
    id into the marker; when that write fails with a StoreError (only PreconditionFailed and
    ObjectNotFound are suppressed) the check fails, and lease_seconds later `_take_over`
    reads the marker as left by a dead process and submits the day again: two jobs of one
    scheduled day, although the first was recorded (and `job_exists` would have said so,
    had the marker named it)."""
    store = MarkerWriteFails(tmp_path / "store")
    await store.put_bytes(STATE_KEY, state())
    submitted = Submitted()
    clock = Clock(AT_SIX)
    schedule = Scheduler(
        store, Settings(lease_seconds=30), submitted.submit, submitted.exists, clock
    )
    with contextlib.suppress(StoreError):
        await schedule.check()  # the store fails once, the check says so
    assert submitted.days == [YESTERDAY]
    clock.moment = AT_SIX + dt.timedelta(minutes=5)  # the next checks, lease_seconds later
    await schedule.check()
    await schedule.check()
    assert submitted.days == [YESTERDAY], "the scheduled day was submitted twice"
