"""The daily schedule's stored state, its answer, and the markers of fired days."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

MAX_LAG_DAYS = 365
AT_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"
TimeOfDay = Annotated[str, msgspec.Meta(pattern=AT_PATTERN)]
LagDays = Annotated[int, msgspec.Meta(ge=0, le=MAX_LAG_DAYS)]
_LAST_USABLE_DATE = dt.date(9000, 1, 1)
"""Dates from here on leave no room for the days a schedule counts forward."""


class ScheduleState(msgspec.Struct, kw_only=True):
    """What `schedule/state.json` holds. Decoding checks the values too (a time of day, a lag
    within the settings' bounds, a date the schedule can count on from): a state written by
    hand or by another version that breaks them fails to decode, and reads as unusable."""

    enabled: bool
    at: TimeOfDay | None
    """The time of day it fires, `HH:MM` or `HH:MM:SS`, UTC."""
    lag_days: LagDays
    """Each fire ingests the day this many days before the fire's day (1: yesterday)."""
    last_date: dt.date | None = None
    """The latest day fired (or, right after a start, the latest day that was already due)."""
    updated_at: dt.datetime

    def __post_init__(self) -> None:
        # msgspec's Meta has no bounds for dates; a ValueError here fails the decode
        if self.last_date is not None and self.last_date >= _LAST_USABLE_DATE:
            raise ValueError(f"last_date {self.last_date} is past {_LAST_USABLE_DATE}")


class ScheduleView(msgspec.Struct, kw_only=True):
    """`GET /schedule`: the state, and when it fires next for which day (null when stopped)."""

    enabled: bool
    at: str | None
    lag_days: int
    last_date: dt.date | None
    updated_at: dt.datetime | None
    next_run_at: dt.datetime | None
    next_date: dt.date | None
    problem: str | None = None
    """Why the schedule is stopped when the stored state cannot be used (null otherwise)."""


class FireMarker(msgspec.Struct, kw_only=True):
    """`schedule/fired/<date>`: which process claimed the day, and the job it submitted."""

    claimed_at: dt.datetime
    """When it was claimed; a time written without a zone is read as UTC."""
    job_id: str | None = None

    def __post_init__(self) -> None:
        if self.claimed_at.tzinfo is None:
            self.claimed_at = self.claimed_at.replace(tzinfo=dt.UTC)
