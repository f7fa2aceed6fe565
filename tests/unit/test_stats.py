"""The stats arithmetic on small, hand-computed data, on both store backends."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from busstats.ingest.convert import MAX_PASSENGERS, convert_file
from busstats.model.cities import City
from busstats.stats.query import country_stats
from busstats.storage import Store
from tests.support.flows import commit_city

MAY_1 = dt.date(2024, 5, 1)
MAY_2 = dt.date(2024, 5, 2)


def bus(day: dt.date, passengers: int, delay: str, accident: bool = False) -> dict[str, Any]:
    return {
        "departure-time": f"{day.isoformat()}T08:00:00",
        "bus-type": "BUS-1",
        "passengers": passengers,
        "delay": delay,
        "accident": accident,
    }


async def put_city(
    store: Store, tmp_path: Path, day: dt.date, city: City, rows: list[dict[str, Any]]
) -> None:
    raw = tmp_path / f"{day}-{city.id}.json"
    raw.write_text(json.dumps(rows))
    out = raw.with_suffix(".parquet")
    result = convert_file(raw, out, city, day)
    await commit_city(store, day, city, raw, out, result)


async def test_the_average_delay_is_over_buses_not_over_cities(
    store: Store, tmp_path: Path
) -> None:
    # City A: one bus, 60 min late. City B: three buses, 0 min late.
    # Mean over buses: 60 / 4 = 15 min; a mean of city means would say 30.
    await put_city(store, tmp_path, MAY_1, City(1, "A", "Peru"), [bus(MAY_1, 10, "PT3600S")])
    await put_city(
        store,
        tmp_path,
        MAY_1,
        City(2, "B", "Peru"),
        [bus(MAY_1, 1, "P0D"), bus(MAY_1, 2, "PT0S"), bus(MAY_1, 3, "P0DT0H0M0S")],
    )
    result = await country_stats(store, MAY_1, MAY_1)
    assert [
        (s.country, s.buses_started, s.total_passengers, s.average_delay_minutes)
        for s in result.stats
    ] == [("Peru", 4, 16, 15.0)]
    assert result.stats[0].accident is False


async def test_days_and_countries_are_kept_apart_and_sorted(store: Store, tmp_path: Path) -> None:
    cities = [
        (MAY_2, City(5, "Seoul", "Korea (Republic of)"), [bus(MAY_2, 7, "PT90S")]),
        (
            MAY_1,
            City(3, "Bouaké", "Côte d'Ivoire"),
            [bus(MAY_1, 5, "PT1M"), bus(MAY_1, 6, "PT2M", accident=True)],
        ),
        (MAY_1, City(4, "Mostar", "Bosnia & Herzegovina"), [bus(MAY_1, 1, "PT30S")]),
        (MAY_2, City(6, "Mostar", "Bosnia & Herzegovina"), [bus(MAY_2, 2, "PT6M")]),
    ]
    for day, city, rows in cities:
        await put_city(store, tmp_path, day, city, rows)
    result = await country_stats(store, dt.date(2024, 4, 30), dt.date(2024, 5, 3))
    assert [
        (
            s.date,
            s.country,
            s.buses_started,
            s.total_passengers,
            s.accident,
            s.average_delay_minutes,
        )
        for s in result.stats
    ] == [
        (MAY_1, "Bosnia & Herzegovina", 1, 1, False, 0.5),
        (MAY_1, "Côte d'Ivoire", 2, 11, True, 1.5),
        (MAY_2, "Bosnia & Herzegovina", 1, 2, False, 6.0),
        (MAY_2, "Korea (Republic of)", 1, 7, False, 1.5),
    ]
    assert result.dates_without_data == [dt.date(2024, 4, 30), dt.date(2024, 5, 3)]


async def test_passenger_sums_do_not_wrap_at_32_bits(store: Store, tmp_path: Path) -> None:
    buses = 2**31 // MAX_PASSENGERS + 1  # the fullest buses allowed, past 2**31 in all
    rows = [bus(MAY_1, MAX_PASSENGERS, "P0D")] * buses
    await put_city(store, tmp_path, MAY_1, City(1, "A", "Peru"), rows)
    result = await country_stats(store, MAY_1, MAY_1)
    assert result.stats[0].total_passengers == buses * MAX_PASSENGERS > 2**31


async def test_a_day_whose_files_hold_no_valid_row_has_no_data(
    store: Store, tmp_path: Path
) -> None:
    await put_city(store, tmp_path, MAY_1, City(1, "A", "Peru"), [bus(MAY_1, -1, "P0D")])
    result = await country_stats(store, MAY_1, MAY_1)
    assert result.stats == []
    assert result.dates_without_data == [MAY_1]


async def test_only_the_dates_asked_for_are_read(store: Store, tmp_path: Path) -> None:
    for day in (MAY_1, MAY_2):
        await put_city(store, tmp_path, day, City(1, "A", "Peru"), [bus(day, 1, "P0D")])
    # a stray non-Parquet object under a date is not read as data
    await store.put_bytes(f"parquet/date={MAY_2.isoformat()}/_notes.txt", b"hello")
    result = await country_stats(store, MAY_2, MAY_2)
    assert [s.date for s in result.stats] == [MAY_2]


@pytest.mark.parametrize("days", [1, 40])
async def test_an_empty_store_answers_every_date_as_without_data(store: Store, days: int) -> None:
    end = MAY_1 + dt.timedelta(days=days - 1)
    result = await country_stats(store, MAY_1, end)
    assert result.stats == []
    assert len(result.dates_without_data) == days
