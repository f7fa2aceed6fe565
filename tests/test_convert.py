"""Upstream JSON to typed Parquet: types, invalid rows with reasons, slicing, junk."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from busstats import convert
from busstats.convert import (
    PARQUET_SCHEMA,
    CityInfo,
    UnusableResponse,
    convert_file,
    parse_duration_seconds,
)

DAY = dt.date(2024, 5, 1)
CITY = CityInfo(4, "Bouaké", "Côte d'Ivoire")


def row(**overrides: Any) -> dict[str, Any]:
    base = {
        "departure-time": "2024-05-01T06:21:00",
        "bus-type": "BUS-111",
        "passengers": 63,
        "delay": "PT2460S",
        "accident": False,
    }
    return {**base, **overrides}


def run(
    tmp_path: Path,
    body: bytes | list[Any],
    slice_bytes: int = convert.SLICE_BYTES,
    row_group_rows: int = convert.ROW_GROUP_ROWS,
) -> tuple[convert.ConversionResult, pl.DataFrame]:
    raw = tmp_path / "raw.json"
    raw.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    out = tmp_path / "out.parquet"
    result = convert_file(
        raw, out, CITY, DAY, slice_bytes=slice_bytes, row_group_rows=row_group_rows
    )
    return result, pl.read_parquet(out)


@pytest.mark.parametrize(
    ("spelling", "seconds"),
    [
        ("PT2460S", 2460),
        ("P0D", 0),
        ("PT0S", 0),
        ("PT1H5M", 3900),
        ("P0DT1H5M0S", 3900),
        ("PT65M", 3900),
        ("PT3.5S", 3.5),
        ("PT0.25S", 0.25),
        ("P1DT2H", 93600),
        ("-PT5M", -300),
    ],
)
def test_iso_durations_in_any_spelling(spelling: str, seconds: float) -> None:
    assert parse_duration_seconds(spelling) == seconds


@pytest.mark.parametrize("spelling", ["", "PT", "P", "2460", "P1Y", "P1M", "PT5X", "soon"])
def test_anything_but_a_duration_is_refused(spelling: str) -> None:
    with pytest.raises(ValueError, match="not an ISO 8601 duration"):
        parse_duration_seconds(spelling)


def test_rows_become_typed_columns_with_the_city_attached(tmp_path: Path) -> None:
    result, frame = run(tmp_path, [row(), row(passengers=0, delay="P0D", accident=True)])
    assert result.rows == 2
    assert result.invalid_rows == 0
    assert pq.read_schema(tmp_path / "out.parquet").equals(PARQUET_SCHEMA)
    assert frame.to_dicts() == [
        {
            "departure_time": dt.datetime(2024, 5, 1, 6, 21),
            "bus_type": "BUS-111",
            "passengers": 63,
            "delay_seconds": 2460.0,
            "accident": False,
            "city_id": 4,
            "city_name": "Bouaké",
            "country": "Côte d'Ivoire",
        },
        {
            "departure_time": dt.datetime(2024, 5, 1, 6, 21),
            "bus_type": "BUS-111",
            "passengers": 0,
            "delay_seconds": 0.0,
            "accident": True,
            "city_id": 4,
            "city_name": "Bouaké",
            "country": "Côte d'Ivoire",
        },
    ]
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0).column(0).compression == (
        "ZSTD"
    )


def test_an_offset_on_the_departure_time_is_dropped_not_applied(tmp_path: Path) -> None:
    _, frame = run(
        tmp_path,
        [
            row(**{"departure-time": "2024-05-01T23:30:00-05:00"}),
            row(**{"departure-time": "2024-05-01T00:10:00Z"}),
        ],
    )
    assert frame["departure_time"].to_list() == [
        dt.datetime(2024, 5, 1, 23, 30),
        dt.datetime(2024, 5, 1, 0, 10),
    ]


def test_each_invalid_row_is_counted_with_its_position_and_reason(tmp_path: Path) -> None:
    rows: list[Any] = [
        row(),
        row(passengers=-1),
        row(passengers="12"),
        row(passengers=True),
        row(passengers=2.5),
        {k: v for k, v in row().items() if k != "accident"},
        row(delay="P1M"),
        row(**{"departure-time": "2024-05-02T00:00:00"}),
        row(**{"departure-time": "yesterday"}),
        "not an object",
        row(accident="no"),
        row(passengers=2**40),
        row(),
    ]
    result, frame = run(tmp_path, rows)
    assert result.rows == 2
    assert result.invalid_rows == len(rows) - 2
    assert frame.height == 2
    assert [example.index for example in result.invalid_examples] == [1, 2, 3, 4, 5]
    reasons = [example.reason for example in result.invalid_examples]
    assert reasons == [
        "Expected `int` >= 0 - at `$.passengers`",
        "Expected `int`, got `str` - at `$.passengers`",
        "Expected `int`, got `bool` - at `$.passengers`",
        "Expected `int`, got `float` - at `$.passengers`",
        "Object missing required field `accident`",
    ]


def test_rows_off_the_day_or_with_a_bad_delay_are_explained(tmp_path: Path) -> None:
    result, _ = run(
        tmp_path, [row(delay="P1M"), row(**{"departure-time": "2024-05-02T00:00:00"}), row()]
    )
    assert [(e.index, e.reason) for e in result.invalid_examples] == [
        (0, "delay 'P1M' is not an ISO 8601 duration"),
        (1, "departure-time 2024-05-02T00:00:00 is not on 2024-05-01"),
    ]


def test_slicing_a_large_array_gives_the_same_rows_as_decoding_it_whole(tmp_path: Path) -> None:
    rows = [row(passengers=n % 100, delay=f"PT{n}S") for n in range(500)]
    rows[250] = row(passengers=-3)
    body = json.dumps(rows, indent=1).encode()
    whole, whole_frame = run(tmp_path, body)
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups == 1
    sliced, sliced_frame = run(tmp_path, body, slice_bytes=700)
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups == 1  # slices are merged
    in_groups, _ = run(tmp_path, body, slice_bytes=700, row_group_rows=40)
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups > 10
    assert in_groups == whole
    assert sliced == whole
    assert sliced.invalid_examples[0].index == 250
    assert sliced_frame.equals(whole_frame)


def test_a_slice_boundary_inside_a_string_is_never_a_wrong_split(tmp_path: Path) -> None:
    tricky = [row(**{"bus-type": 'x"},{"y'}) for _ in range(50)]
    tricky += [row(**{"bus-type": "},  {"}) for _ in range(50)]
    result, frame = run(tmp_path, tricky, slice_bytes=60)
    assert result.rows == 100
    assert frame["bus_type"].to_list() == ['x"},{"y'] * 50 + ["},  {"] * 50


def test_an_empty_array_gives_an_empty_typed_file(tmp_path: Path) -> None:
    result, frame = run(tmp_path, b" [ ] \n")
    assert result.rows == 0
    assert frame.height == 0
    assert pq.read_schema(tmp_path / "out.parquet").equals(PARQUET_SCHEMA)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"<html><body>Bad gateway</body></html>", "not a JSON array"),
        (b'{"rows": []}', "not a JSON array"),
        (b"rows: none today", "not a JSON array"),
        (b'[{"departure-time": "2024-05-01T06:21:00", "bus-ty', "not a JSON array"),
        (b'[{"departure-time": "2024-05-01T06:21:00",,]', "not valid JSON"),
    ],
)
def test_a_response_that_is_no_json_array_fails_as_a_whole(
    tmp_path: Path, body: bytes, message: str
) -> None:
    with pytest.raises(UnusableResponse, match=message):
        run(tmp_path, body)
    assert not (tmp_path / "out.parquet").exists()
