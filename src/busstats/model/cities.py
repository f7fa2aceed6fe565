"""A city as upstream lists it, and a city-list entry that was refused."""

from __future__ import annotations

from typing import Annotated

import msgspec

MAX_CITY_ID = 2**63 - 1
"""Ids are stored as Parquet int64; a larger one is refused here, not later by an overflow."""

CityId = Annotated[int, msgspec.Meta(ge=0, le=MAX_CITY_ID)]


class City(msgspec.Struct, frozen=True):
    id: CityId
    name: str
    country: str


class RejectedCity(msgspec.Struct, frozen=True, kw_only=True):
    """An entry of the city list that was skipped, and why."""

    position: int
    """Where it stood in the list, counting from 0."""
    city_id: int | None
    """Its id when that alone was usable (e.g. a later duplicate, a missing name), else None."""
    entry: str
    """A short, printable excerpt of the entry as sent."""
    reason: str
