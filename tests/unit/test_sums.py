"""Sums of extreme rows: exact on both stats routes, never wrapped (see convert.MAX_FILE_BYTES)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from busstats.commit.summaries import PARTIAL_SCHEMA, partials_from_parquet
from busstats.ingest import convert
from busstats.ingest.convert import convert_file
from busstats.model.cities import City
from busstats.model.stats import Source
from busstats.stats.query import MICROSECONDS_PER_MINUTE, country_days, country_stats
from busstats.storage import LocalStore
from tests.support.flows import commit_city

DAY = dt.date(2024, 5, 1)
US = dt.timedelta(microseconds=1)


def bus(delay: str) -> dict[str, Any]:
    return {
        "departure-time": "2024-05-01T08:00:00",
        "bus-type": "B",
        "passengers": 1,
        "delay": delay,
        "accident": False,
    }


async def averages_by_every_route(
    tmp_path: Path, cities: list[list[dict[str, Any]]]
) -> dict[str, float]:
    """Each city converted and stored, then the country's mean delay by the summary route
    and by the full-data route (`partials_from_parquet`)."""
    store = LocalStore(tmp_path / "store")
    for city_id, rows in enumerate(cities):
        raw = tmp_path / f"{city_id}.json"
        raw.write_text(json.dumps(rows))
        city = City(city_id, f"city {city_id}", "Peru")
        result = convert_file(raw, raw.with_suffix(".parquet"), city, DAY)
        await commit_city(store, DAY, city, raw, raw.with_suffix(".parquet"), result)
    full = await country_stats(store, DAY, DAY, Source.FULL)
    summarised = await country_stats(store, DAY, DAY, Source.SUMMARY)
    return {
        "summary": summarised.stats[0].average_delay_minutes,
        "full": full.stats[0].average_delay_minutes,
    }


def mean_minutes(delays_us: list[int]) -> float:
    """The mean as `country_days` computes it, from exact integers."""
    return sum(delays_us) / len(delays_us) / MICROSECONDS_PER_MINUTE


async def test_rows_with_absurd_delays_are_left_out_not_summed(tmp_path: Path) -> None:
    # Issue 8.4: 2,000 rows of P100000D wrapped the Int64 sum to a mean of -6,481,911 min.
    absurd = [bus("P100000D")] * 2000
    good = [bus("PT2M"), bus("PT4M")] * 500
    averages = await averages_by_every_route(tmp_path, [absurd + good, good])
    assert averages == {"summary": 3.0, "full": 3.0}


async def test_thousands_of_extreme_but_valid_delays_give_the_exact_mean(tmp_path: Path) -> None:
    spellings = ["PT8H", "P0DT7H59M59.999999S", "-PT1H", "PT0.000001S", "PT28800S"]
    cities = [
        [bus(spellings[(n + city) % len(spellings)]) for n in range(3000 + city)]
        for city in range(4)
    ]
    delays_us = [convert.duration_microseconds(row["delay"]) for rows in cities for row in rows]
    assert len(delays_us) > 12_000
    averages = await averages_by_every_route(tmp_path, cities)
    assert averages == {"summary": mean_minutes(delays_us), "full": mean_minutes(delays_us)}


def test_a_country_of_cities_at_the_largest_possible_sums_does_not_wrap() -> None:
    # Each city at the most any file can hold (MAX_ROWS buses, all MAX_DELAY late) fits
    # Int64; three of them together do not.
    city_sum = convert.MAX_ROWS * (convert.MAX_DELAY // US)
    assert city_sum < 2**63 - 1 < 3 * city_sum
    partials = pl.DataFrame(
        [
            {
                "date": DAY,
                "city_id": city_id,
                "city_name": f"city {city_id}",
                "country": "Peru",
                "buses": convert.MAX_ROWS,
                "passengers": convert.MAX_ROWS * convert.MAX_PASSENGERS,
                "delay_microseconds": city_sum,
                "accident": False,
            }
            for city_id in range(3)
        ],
        schema=PARTIAL_SCHEMA,
    )
    [day] = country_days(partials.lazy(), partials.lazy())
    assert day.buses_started == 3 * convert.MAX_ROWS
    assert day.total_passengers == 3 * convert.MAX_ROWS * convert.MAX_PASSENGERS
    assert day.average_delay_minutes == pytest.approx(convert.MAX_DELAY / dt.timedelta(minutes=1))


def test_a_parquet_file_whose_delays_overflow_64_bits_is_summed_exactly(
    tmp_path: Path,
) -> None:
    # No file convert writes can hold this (its delays are out of bounds); one written by
    # anything else is summed in 128 bits, never wrapped.
    path = tmp_path / "date=2024-05-01" / "city=1.parquet"
    path.parent.mkdir()
    frame = convert.PARQUET_SCHEMA.empty_table().to_pydict()
    moment = dt.datetime(2024, 5, 1, 8)
    row = dict(zip(frame, [moment, "B", 1, 4e12, False, 1, "A", "Peru"], strict=True))
    table = pa.Table.from_pylist([row] * 3, schema=convert.PARQUET_SCHEMA)
    pq.write_table(table, path)
    target = LocalStore(tmp_path).scan_target(["date=2024-05-01/city=1.parquet"])
    [total] = partials_from_parquet(target).collect()["delay_microseconds"].to_list()
    assert total == 3 * 4 * 10**18 > 2**63
