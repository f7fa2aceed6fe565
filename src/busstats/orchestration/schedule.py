"""The daily schedule: ingest the latest day upstream has, every day at a set time (UTC).

The schedule's state lives in the store (`schedule/state.json`, replaced with `If-Match`), so
it survives restarts and every process sharing the store follows the same schedule. Each
process runs a `Scheduler` task; at the set time, and once at start to catch up on days missed
while no process ran, it fires every due day not fired yet. A day fires once across processes:
the first process to create its marker `schedule/fired/<date>` (a conditional create) submits
the job and writes the job's id into the marker. A marker that names no job after
`lease_seconds` was left by a process that died between the two writes: it is taken over
(`If-Match`) and the day fires again. See docs/schedule.md.

Example (not run: it needs a store and a runner)::

    scheduler = Scheduler(store, settings, submit=runner.submit, job_exists=job_exists)
    await scheduler.start()                       # seeds the state, catches up, starts the task
    await scheduler.change(enabled=True, at="06:00", lag_days=1)
    (await scheduler.view()).next_date            # the day the next fire ingests
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import msgspec
import stamina

from busstats.core.clock import now
from busstats.core.settings import Settings
from busstats.model.jobs import JobRecord
from busstats.model.schedule import (
    AT_PATTERN,
    FireMarker,
    ScheduleState,
    ScheduleView,
)
from busstats.storage import ObjectNotFound, PreconditionFailed, Store, StoreError, store_down

log = logging.getLogger(__name__)

STATE_KEY = "schedule/state.json"
FIRED_PREFIX = "schedule/fired/"
_AT = re.compile(AT_PATTERN)
_WRITE_ATTEMPTS = 5

Clock = Callable[[], dt.datetime]
Submit = Callable[[dt.date], Awaitable[JobRecord]]


class Stored(NamedTuple):
    """The schedule's state as read, the version read, and why it is unusable (if it is)."""

    state: ScheduleState
    etag: str
    problem: str | None = None


def valid_at(text: str) -> bool:
    """Whether `text` is a time of day as `HH:MM` or `HH:MM:SS` (24-hour).

    >>> valid_at("06:30"), valid_at("6:30"), valid_at("24:00")
    (True, False, False)
    """
    return bool(_AT.fullmatch(text))


def fire_time(day: dt.date, at: str) -> dt.datetime:
    """When the schedule fires on calendar day `day`.

    >>> fire_time(dt.date(2024, 5, 2), "06:00")
    datetime.datetime(2024, 5, 2, 6, 0, tzinfo=datetime.timezone.utc)
    """
    return dt.datetime.combine(day, dt.time.fromisoformat(at), dt.UTC)


def latest_due(moment: dt.datetime, at: str, lag_days: int) -> dt.date:
    """The day the latest fire at or before `moment` ingests.

    >>> latest_due(dt.datetime(2024, 5, 2, 7, tzinfo=dt.UTC), "06:00", 1)
    datetime.date(2024, 5, 1)
    >>> latest_due(dt.datetime(2024, 5, 2, 5, tzinfo=dt.UTC), "06:00", 1)
    datetime.date(2024, 4, 30)
    """
    fired_on = moment.date()
    if moment < fire_time(fired_on, at):
        fired_on -= dt.timedelta(days=1)
    return fired_on - dt.timedelta(days=lag_days)


def next_fire(moment: dt.datetime, at: str) -> dt.datetime:
    """The first fire strictly after `moment`."""
    today = fire_time(moment.date(), at)
    return today if today > moment else today + dt.timedelta(days=1)


def due_days(state: ScheduleState, moment: dt.datetime, catch_up_days: int) -> list[dt.date]:
    """The days to fire at `moment`: after `last_date`, up to the latest due, at most the
    last `catch_up_days` of them."""
    if not state.enabled or state.at is None:
        return []
    last = latest_due(moment, state.at, state.lag_days)
    first = last - dt.timedelta(days=catch_up_days - 1)
    if state.last_date is not None:
        first = max(first, state.last_date + dt.timedelta(days=1))
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def fired_key(day: dt.date) -> str:
    return f"{FIRED_PREFIX}{day.isoformat()}"


class Scheduler:
    """One per process: keeps the schedule's state and fires due days once across processes."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        submit: Submit,
        job_exists: Callable[[str], Awaitable[bool]],
        clock: Clock = now,
    ) -> None:
        self._store = store
        self._settings = settings
        self._submit = submit
        self._job_exists = job_exists
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._checking = asyncio.Lock()
        self._last_seen: ScheduleState | None = None

    async def start(self) -> None:
        """Seed the state from the settings if the store has none, catch up, start the task."""
        try:
            await self._seed()
            await self.check()
        except (StoreError, PreconditionFailed) as exc:  # a job's creation can lose a race
            log.error("the schedule could not start its catch-up yet: %s", exc)
        except Exception:  # the schedule never stops the service from starting
            log.exception("the schedule's catch-up at start failed")
        self._task = asyncio.create_task(self._keep(), name="schedule")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def view(self) -> ScheduleView:
        """The state with the next fire time and the day it ingests."""
        found = await self._read()
        if found is None:
            return ScheduleView(
                enabled=False,
                at=None,
                lag_days=self._settings.schedule_lag_days,
                last_date=None,
                updated_at=None,
                next_run_at=None,
                next_date=None,
            )
        state = found.state
        next_run = next_date = None
        if state.enabled and state.at is not None and found.problem is None:
            next_run = next_fire(self._clock(), state.at)
            next_date = next_run.date() - dt.timedelta(days=state.lag_days)
        return ScheduleView(
            enabled=state.enabled,
            at=state.at,
            lag_days=state.lag_days,
            last_date=state.last_date,
            updated_at=state.updated_at,
            next_run_at=next_run,
            next_date=next_date,
            problem=found.problem,
        )

    async def change(self, *, enabled: bool, at: str | None, lag_days: int | None) -> None:
        """Start (with a new time or lag if given) or stop the schedule. A start fires from
        the next set time on: days already due when it starts are not fired (that is what
        backfills are for). ValueError if starting with no time set anywhere."""
        for _ in range(_WRITE_ATTEMPTS):
            found = await self._read()
            moment = self._clock()
            state = found.state if found else self._seeded(enabled=False)
            state.at = at or state.at
            state.lag_days = state.lag_days if lag_days is None else lag_days
            if enabled and state.at is None:
                raise ValueError("no time set: give at=HH:MM (UTC)")
            if enabled and not state.enabled:
                assert state.at is not None
                due = latest_due(moment, state.at, state.lag_days)
                state.last_date = due if state.last_date is None else max(state.last_date, due)
            state.enabled = enabled
            state.updated_at = moment
            if await self._write(state, found.etag if found else None):
                self._wake.set()
                return
        raise StoreError("the schedule changed under every attempt to update it; try again")

    async def check(self) -> list[dt.date]:
        """Fire every due day not fired yet; returns the days this process fired."""
        async with self._checking:
            found = await self._read()
            self._last_seen = None if found is None or found.problem else found.state
            if found is None or found.problem:
                return []
            days = due_days(found.state, self._clock(), self._settings.schedule_catch_up_days)
            fired = [day for day in days if await self._fire_once(day)]
            if days and all([await self._fired(day) for day in days]):
                await self._advance(days[-1])
            return fired

    async def _fire_once(self, day: dt.date) -> bool:
        """Submit the day's job unless another process did or is doing it."""
        key = fired_key(day)
        claim = msgspec.json.encode(FireMarker(claimed_at=self._clock()))
        try:
            etag = await self._put_marker(key, claim, if_absent=True)
        except PreconditionFailed:
            etag = await self._take_over(key)
            if etag is None:
                return False
        except StoreError as exc:  # not claimed: the next check tries again
            log.warning("the schedule could not claim %s yet: %s", day, exc)
            return False
        job = await self._submit(day)
        marker = msgspec.json.encode(FireMarker(claimed_at=self._clock(), job_id=job.job_id))
        try:
            await self._put_marker(key, marker, if_match=etag)
        except (PreconditionFailed, ObjectNotFound):
            pass
        except StoreError as exc:
            # the claim stays without its job: after lease_seconds another check fires the
            # day again (ingested twice, which is safe; see docs/schedule.md)
            log.error("the schedule could not record job %s in %s: %s", job.job_id, key, exc)
        log.info("the schedule submitted job %s for %s", job.job_id, day)
        return True

    async def _put_marker(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        """Write a marker, trying again while the store is down, for at most half a lease (so
        that the claim is still fresh when its job is named)."""
        async for attempt in stamina.retry_context(
            on=store_down,
            attempts=None,
            timeout=self._settings.lease_seconds / 2,
            wait_initial=0.1,
            wait_max=5,
        ):
            with attempt:
                return await self._store.put_bytes(
                    key, data, if_absent=if_absent, if_match=if_match
                )
        raise AssertionError("unreachable: stamina returns or raises")

    async def _take_over(self, key: str) -> str | None:
        """Claim a marker left by a process that died before its job was recorded; None
        if the day has its job, or another process's claim is still fresh."""
        try:
            found = await self._store.get_versioned(key)
        except ObjectNotFound:
            return None  # removed by hand: the next check creates it again
        try:
            marker = msgspec.json.decode(found.data, type=FireMarker)
        except msgspec.DecodeError:  # unreadable: a claim nobody can finish, taken over now
            marker = FireMarker(claimed_at=dt.datetime.min.replace(tzinfo=dt.UTC))
        if marker.job_id is not None and await self._job_exists(marker.job_id):
            return None
        stale_after = dt.timedelta(seconds=self._settings.lease_seconds)
        if marker.job_id is None and self._clock() - marker.claimed_at < stale_after:
            return None
        claim = msgspec.json.encode(FireMarker(claimed_at=self._clock()))
        try:
            return await self._store.put_bytes(key, claim, if_match=found.etag)
        except (PreconditionFailed, ObjectNotFound):
            return None

    async def _fired(self, day: dt.date) -> bool:
        try:
            data = await self._store.get_bytes(fired_key(day))
        except ObjectNotFound:
            return False
        try:
            return msgspec.json.decode(data, type=FireMarker).job_id is not None
        except msgspec.DecodeError:
            return False

    async def _advance(self, day: dt.date) -> None:
        """Move `last_date` forward to `day` (never back)."""
        for _ in range(_WRITE_ATTEMPTS):
            found = await self._read()
            if found is None or found.problem is not None:
                return
            state, etag, _ = found
            if state.last_date is not None and state.last_date >= day:
                return
            state.last_date = day
            if await self._write(state, etag):
                return

    async def _keep(self) -> None:
        """Check at each set time, and at least every `lease_seconds` (to follow changes made
        through other processes and to retry claims left by dead ones)."""
        while True:
            wait, target = self._settings.lease_seconds, None
            state = self._last_seen  # as the last check read it: one read per check
            try:
                if state is not None and state.enabled and state.at is not None:
                    moment = self._clock()
                    target = next_fire(moment, state.at)
                    wait = min(wait, (target - moment).total_seconds())
            except Exception:  # a value the state's checks let through: check at the lease
                log.exception("the schedule could not compute its next fire")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.check()
            except (StoreError, PreconditionFailed) as exc:
                log.warning("the schedule will try again: %s", exc)
                continue
            except Exception:
                log.exception("the schedule's check failed")
                continue
            if target is not None and self._clock() >= target:
                log.info("the schedule checked its run of %s", target.isoformat())

    async def _seed(self) -> None:
        """Write the state the settings describe, unless the store has one already."""
        if self._settings.schedule_at is None:
            return
        state = self._seeded(enabled=True)
        assert state.at is not None
        state.last_date = latest_due(self._clock(), state.at, state.lag_days)
        await self._write(state, None)

    def _seeded(self, *, enabled: bool) -> ScheduleState:
        return ScheduleState(
            enabled=enabled,
            at=self._settings.schedule_at,
            lag_days=self._settings.schedule_lag_days,
            updated_at=self._clock(),
        )

    async def _read(self) -> Stored | None:
        """The stored state; one that does not decode or breaks the state's checks reads as
        stopped, with the reason as `problem`, until a start or stop replaces it (If-Match on
        this version)."""
        try:
            found = await self._store.get_versioned(STATE_KEY)
        except ObjectNotFound:
            return None
        try:
            return Stored(msgspec.json.decode(found.data, type=ScheduleState), found.etag)
        except msgspec.DecodeError as exc:  # ValidationError too: a value out of bounds
            log.error("%s is unreadable, the schedule is stopped: %s", STATE_KEY, exc)
            problem = (
                f"the stored schedule ({STATE_KEY}) is unreadable: {exc}; the schedule is"
                " stopped until POST /schedule/start (or /schedule/stop) replaces it"
            )
            return Stored(self._seeded(enabled=False), found.etag, problem)

    async def _write(self, state: ScheduleState, etag: str | None) -> bool:
        """Create (etag None) or replace version `etag`; False if someone else was first."""
        data = msgspec.json.encode(state)
        try:
            if etag is None:
                await self._store.put_bytes(STATE_KEY, data, if_absent=True)
            else:
                await self._store.put_bytes(STATE_KEY, data, if_match=etag)
        except (PreconditionFailed, ObjectNotFound):
            return False
        return True
