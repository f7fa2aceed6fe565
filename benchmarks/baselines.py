"""The alternatives, answering the same question over the same data.

- pandas over the raw JSON in the bucket, re-reading every file per request (what the
  existing services do);
- DuckDB over the same Parquet (local disk, or S3 through its httpfs extension);
- a bare Polars scan of the same Parquet (to show the service's own overhead).

Each reads exactly the files the dates' summaries name (the committed runs' files), which the
benchmark lists beforehand, untimed; once the sweeps are done these are also every file under
`raw/` and `parquet/`, and the benchmark checks that they are. Each returns rows shaped like
the API's `stats`, so `same_numbers` can hold them side by side.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import duckdb_extension_httpfs
import pandas as pd
import polars as pl

from busstats.storage.keys import city_file_of

Rows = list[dict[str, Any]]


def _rows(frame: pl.DataFrame) -> Rows:
    return [
        {**row, "date": row["date"].isoformat()}
        for row in frame.sort("date", "country").iter_rows(named=True)
    ]


def pandas_from_raw(s3: Any, bucket: str, keys: list[str], country_of: dict[int, str]) -> Rows:
    """Every raw JSON file in `keys` (`raw/date=D/city=<id>.<run>.json`) read into pandas; the
    city comes from the key, its country from upstream's city list."""

    def load(key: str) -> pd.DataFrame:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        frame = pd.read_json(io.BytesIO(body), orient="records", convert_dates=False)
        city = city_file_of(key)
        assert city is not None, f"not a city file: {key}"
        frame["country"] = country_of[city.city_id]
        frame["date"] = key.split("/")[1].removeprefix("date=")
        return frame

    with ThreadPoolExecutor(8) as pool:
        frames = list(pool.map(load, keys))
    data = pd.concat(frames, ignore_index=True)
    delays: Any = data["delay"]
    data["delay_seconds"] = pd.to_timedelta(delays).dt.total_seconds()
    grouped = (
        data.groupby(["date", "country"])
        .agg(
            buses_started=("passengers", "size"),
            total_passengers=("passengers", "sum"),
            accident=("accident", "any"),
            average_delay_minutes=("delay_seconds", "mean"),
        )
        .reset_index()
    )
    grouped["average_delay_minutes"] /= 60
    records: list[dict[str, Any]] = grouped.sort_values(["date", "country"]).to_dict("records")
    return [
        {
            "country": row["country"],
            "date": row["date"],
            "buses_started": int(row["buses_started"]),
            "total_passengers": int(row["total_passengers"]),
            "accident": bool(row["accident"]),
            "average_delay_minutes": float(row["average_delay_minutes"]),
        }
        for row in records
    ]


_DUCKDB_QUERY = """
SELECT country, date, count(*) AS buses_started, sum(passengers)::BIGINT AS total_passengers,
       bool_or(accident) AS accident, avg(delay_seconds) / 60 AS average_delay_minutes
FROM read_parquet($files, hive_partitioning = true)
GROUP BY country, date
"""


def duckdb_parquet(files: list[str], s3_endpoint: str | None = None) -> Rows:
    """`files` are the committed Parquet files; a fresh connection each time, caches off."""
    connection = duckdb.connect()
    try:
        connection.execute("SET threads = 2")
        if s3_endpoint:
            extension = os.path.join(
                os.path.dirname(duckdb_extension_httpfs.__file__),
                "extensions",
                f"v{duckdb.__version__}",
                "httpfs.duckdb_extension",
            )
            connection.execute(f"LOAD '{extension}'")
            for statement in (
                f"SET s3_endpoint = '{s3_endpoint.removeprefix('http://')}'",
                "SET s3_url_style = 'path'",
                "SET s3_use_ssl = false",
                "SET s3_region = 'us-east-1'",
                "SET s3_access_key_id = 'testing'",
                "SET s3_secret_access_key = 'testing'",
                "SET enable_http_metadata_cache = false",
                "SET enable_external_file_cache = false",
            ):
                connection.execute(statement)
        frame = connection.execute(_DUCKDB_QUERY, {"files": files}).pl()
    finally:
        connection.close()
    return _rows(frame.with_columns(pl.col("date").cast(pl.Date)))


def polars_parquet(files: list[str], storage_options: dict[str, str] | None = None) -> Rows:
    frame = (
        pl.scan_parquet(files, hive_partitioning=True, storage_options=storage_options)
        .group_by("country", "date")
        .agg(
            buses_started=pl.len(),
            total_passengers=pl.col("passengers").sum(),
            accident=pl.col("accident").any(),
            average_delay_minutes=pl.col("delay_seconds").mean() / 60,
        )
        .collect(engine="streaming")
    )
    return _rows(frame)


def same_numbers(ours: Rows, theirs: Rows) -> str | None:
    """None when both answers agree (averages to 1e-9 relative), else what differs."""
    keys = [(r["date"], r["country"]) for r in ours]
    other = [(r["date"], r["country"]) for r in theirs]
    if keys != other:
        return f"different days or countries: {keys[:3]}... vs {other[:3]}..."
    for a, b in zip(ours, theirs, strict=True):
        for name in ("buses_started", "total_passengers", "accident"):
            if a[name] != b[name]:
                return f"{name} differs on {a['date']} {a['country']}: {a[name]} vs {b[name]}"
        if abs(a["average_delay_minutes"] - b["average_delay_minutes"]) > 1e-9 * max(
            1.0, abs(a["average_delay_minutes"])
        ):
            return f"average delay differs on {a['date']} {a['country']}"
    return None
