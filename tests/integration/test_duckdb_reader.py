"""An external engine reading the store: DuckDB's Hive reader, with exactly the SQL that
docs/external-engines.md shows, gives the numbers of `/country-stats`.

The store holds what a real one may: a re-ingested date, a city upstream does not know (a
summary row with `counted = false`), a city with no bus, invalid rows, and the Parquet
files of a crashed run (one beside a committed date's files, one in a date that has no
commit). The doc's views must leave the crashed run's files out; a plain read of
`parquet/` counts them, which is why the views exist.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import polars as pl
import pytest

from busstats.commit.dates import read_summary
from busstats.reference.sim import SimulatorConfig
from busstats.reference.sim.server import Fault
from busstats.storage import LocalStore
from tests.support.flows import StartApi, country_stats, ingest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "external-engines.md"
TESTED_BLOCK = "<!-- tests/integration/test_duckdb_reader.py runs the next sql block -->"
DOC_BUCKET = "s3://my-bucket"
FIRST, SECOND, UNCOMMITTED = "2024-05-01", "2024-05-02", "2024-05-03"
UNKNOWN_CITY, EMPTY_CITY, JUNK_CITY = 5, 7, 9
STATS_COLUMNS = (
    "country",
    "date",
    "buses_started",
    "total_passengers",
    "accident",
    "average_delay_minutes",
    "cities_counted",
)


def documented_views(store_root: Path) -> str:
    """The doc's DuckDB block, reading this store's folder instead of the doc's bucket."""
    text = DOC.read_text()
    assert text.count(TESTED_BLOCK) == 1, f"{DOC.name} must mark exactly one tested block"
    after = text.split(TESTED_BLOCK, 1)[1]
    match = re.match(r"\s*```sql\n(.*?)```", after, re.DOTALL)
    assert match, f"{DOC.name}: no sql block right after the marker"
    sql = match.group(1)
    assert DOC_BUCKET in sql
    return sql.replace(DOC_BUCKET, store_root.as_posix())


def rows(connection: duckdb.DuckDBPyConnection, query: str) -> list[dict[str, Any]]:
    """A query's rows as the JSON answer spells them, in the answer's order."""
    cursor = connection.execute(query)
    names = [column[0] for column in cursor.description or []]
    found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in found:
        row["date"] = row["date"].isoformat()
        for name in ("buses_started", "total_passengers", "cities_counted"):
            row[name] = int(row[name])
    return sorted(found, key=lambda row: (row["date"], row["country"]))


def same_stats(found: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Equal to the last digit, but the average: a double division the service's Polars may
    round once or twice, so it may differ in the last digit (a relative 1e-15)."""
    assert len(found) == len(expected), (found, expected)
    for row, wanted in zip(found, expected, strict=True):
        average, wanted_average = row["average_delay_minutes"], wanted["average_delay_minutes"]
        assert math.isclose(average, wanted_average, rel_tol=1e-14), (row, wanted)
        assert {**row, "average_delay_minutes": 0} == {**wanted, "average_delay_minutes": 0}
    return True


def one_row(connection: duckdb.DuckDBPyConnection, query: str) -> tuple[Any, ...]:
    row = connection.execute(query).fetchone()
    assert row is not None
    return row


def stats_query(view: str) -> str:
    return f"SELECT {', '.join(STATS_COLUMNS)} FROM {view}"


NAIVE = """
SELECT country, "date", count(*) AS buses_started, sum(passengers) AS total_passengers,
       bool_or(accident) AS accident,
       avg(delay_seconds) / 60 AS average_delay_minutes, 0 AS cities_counted
FROM read_parquet('{root}/parquet/date=*/city=*.parquet', hive_partitioning = true)
GROUP BY country, "date"
"""


async def crash_leftovers(store: LocalStore) -> None:
    """What a crashed run leaves: a copy of a committed file under another run's key in a
    committed date, and a file in a date that has no commit at all."""
    summary, _ = await read_summary(store, dt.date.fromisoformat(FIRST))
    committed = summary.filter("counted", pl.col("buses") > 0).row(0, named=True)
    source = store.root / committed["parquet_key"]
    crashed_run = uuid.uuid4().hex
    beside = source.with_name(f"city={committed['city_id']}.{crashed_run}.parquet")
    shutil.copyfile(source, beside)
    orphan = store.root / f"parquet/date={UNCOMMITTED}/city=0.{crashed_run}.parquet"
    orphan.parent.mkdir(parents=True)
    shutil.copyfile(source, orphan)


@pytest.mark.parametrize(
    "simulator_config",
    [
        SimulatorConfig(
            rows=(5, 40),
            max_latency=0.0,
            faults={UNKNOWN_CITY: Fault.NOT_FOUND, JUNK_CITY: Fault.JUNK_ROWS},
            rows_by_city={EMPTY_CITY: 0},
        )
    ],
)
async def test_the_documented_duckdb_views_give_the_service_numbers(
    local_store: LocalStore, start_api: StartApi, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    store = local_store
    async with start_api(store) as api:  # stopped before DuckDB reads the folder
        for day in (FIRST, SECOND, FIRST):  # the first date re-ingested: one commit replaced
            assert (await ingest(http, api, day))["status"] == "partial"
        await crash_leftovers(store)
        answer = await country_stats(http, api, FIRST, UNCOMMITTED)

    expected = sorted(answer["stats"], key=lambda row: (row["date"], row["country"]))
    assert {row["date"] for row in expected} == {FIRST, SECOND}
    connection = duckdb.connect()
    connection.execute(documented_views(store.root))

    assert same_stats(rows(connection, stats_query("country_stats")), expected)
    assert same_stats(rows(connection, stats_query("country_stats_full")), expected)
    listed, counted = one_row(connection, "SELECT count(*), count_if(counted) FROM summaries")
    assert listed - counted == 2, "the unknown city is listed, not counted, on both dates"

    # Read without the summaries, parquet/ holds more than the service counts.
    naive = rows(connection, NAIVE.format(root=store.root.as_posix()))
    buses = {(row["date"], row["country"]): row["buses_started"] for row in expected}
    naive_buses = {(row["date"], row["country"]): row["buses_started"] for row in naive}
    assert naive_buses != buses
    assert UNCOMMITTED in {day for day, _ in naive_buses}
    assert sum(naive_buses.values()) > sum(buses.values())
