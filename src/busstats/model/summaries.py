"""A stored city's row of its date's summary: where its files are and its sums."""

from __future__ import annotations

from dataclasses import dataclass

from busstats.model.cities import City


@dataclass(frozen=True, slots=True)
class StoredCity:
    """A city this run stored, with the sums its conversion counted."""

    city: City
    raw_key: str
    parquet_key: str
    buses: int
    passengers: int
    delay_microseconds: int
    accident: bool
