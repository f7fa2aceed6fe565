"""Upstream JSON to typed Parquet: types, invalid rows with reasons, slicing, junk."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from busstats.ingest import convert
from busstats.ingest.convert import (
    PARQUET_SCHEMA,
    UnusableResponse,
    convert_file,
    parse_duration_seconds,
)
from busstats.ingest.jsonslices import MAX_ITEM_BYTES
from busstats.model.cities import City

DAY = dt.date(2024, 5, 1)
CITY = City(4, "Bouaké", "Côte d'Ivoire")


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
        "Expected `int | float`, got `str` - at `$.passengers`",
        "Expected `int | float`, got `bool` - at `$.passengers`",
        "passengers 2.5 is not a whole number",
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


def decoded_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every text handed to the JSON decoder from now on."""
    sizes: list[int] = []
    decode = convert._decode_rows

    def recording(text: bytes) -> Any:
        sizes.append(len(text))
        return decode(text)

    monkeypatch.setattr(convert, "_decode_rows", recording)
    return sizes


@pytest.mark.parametrize("slice_bytes", [500, 1000, 1500])
def test_row_separators_inside_strings_never_make_a_slice_grow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slice_bytes: int
) -> None:
    # Every row's bus type is full of "},{": whatever the slice size, cuts fall inside them.
    rows = [row(**{"bus-type": f"{n}" + "},{" * 20}) for n in range(2000)]
    row_bytes = len(json.dumps(rows[-1]))
    sizes = decoded_sizes(monkeypatch)
    result, frame = run(tmp_path, rows, slice_bytes=slice_bytes)
    assert result.rows == 2000
    assert frame["bus_type"].to_list() == [r["bus-type"] for r in rows]
    assert sum(sizes) < len(json.dumps(rows)) + 3 * len(sizes)  # every byte decoded once
    assert max(sizes) <= slice_bytes + row_bytes + 4  # a slice and the row it ends in


def test_memory_follows_the_slice_not_the_file_whatever_the_strings_hold(
    tmp_path: Path,
) -> None:
    slice_bytes = 64 * 1024
    rows = [row(**{"bus-type": "},{" * (n % 30)}) for n in range(60_000)]
    body = json.dumps(rows).encode()
    assert len(body) > 100 * slice_bytes
    (tmp_path / "raw.json").write_bytes(body)
    del rows, body
    (tmp_path / "warm-up").mkdir()
    run(tmp_path / "warm-up", [row()])  # a first conversion imports modules (pyarrow: pandas)
    tracemalloc.start()
    try:
        result = convert_file(
            tmp_path / "raw.json", tmp_path / "out.parquet", CITY, DAY, slice_bytes=slice_bytes
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.rows == 60_000
    # Python objects of about one slice being decoded (~14x its JSON), never the file's.
    assert peak < 40 * slice_bytes


def test_an_item_too_long_to_slice_around_fails_the_city_unread(tmp_path: Path) -> None:
    rows: list[Any] = [row(), row(**{"bus-type": "x" * (2 * MAX_ITEM_BYTES)}), row()]
    with pytest.raises(UnusableResponse, match=f"longer than {MAX_ITEM_BYTES} bytes"):
        run(tmp_path, rows, slice_bytes=100)
    assert not (tmp_path / "out.parquet").exists()


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
        (b"[" * 100_000 + b"]" * 100_000, "too deeply"),  # was a RecursionError: a 500
        (b"[{}, " + b"[" * 100_000 + b"]" * 100_000 + b"]", "too deeply"),
    ],
)
def test_a_response_that_is_no_json_array_fails_as_a_whole(
    tmp_path: Path, body: bytes, message: str
) -> None:
    with pytest.raises(UnusableResponse, match=message):
        run(tmp_path, body)
    assert not (tmp_path / "out.parquet").exists()


def test_delays_outside_the_bounds_are_invalid_rows_and_the_city_keeps_the_rest(
    tmp_path: Path,
) -> None:
    extreme = ["P999999999D", "P200000D", "P100000D", "PT8H0.000001S", "-PT1H1S", "-P1D"]
    rows = [row(delay="PT1M")] * 999 + [row(delay=delay) for delay in extreme]
    result, frame = run(tmp_path, rows)
    assert (result.rows, result.invalid_rows) == (999, len(extreme))
    assert frame.height == 999
    assert [(e.index, e.reason) for e in result.invalid_examples] == [
        (999 + n, f"delay {delay!r} is outside -PT1H to PT8H")
        for n, delay in enumerate(extreme[:5])
    ]


def test_the_delay_bounds_are_inclusive_and_an_early_departure_counts_negative(
    tmp_path: Path,
) -> None:
    rows = [row(delay="PT8H"), row(delay="-PT1H"), row(delay="-PT5M"), row(delay="P0D")]
    result, frame = run(tmp_path, rows)
    assert result.invalid_rows == 0
    assert frame["delay_seconds"].to_list() == [28800.0, -3600.0, -300.0, 0.0]
    assert result.delay_microseconds == (28800 - 3600 - 300) * 1_000_000
    assert convert.DELAY_BOUNDS == "-PT1H to PT8H"
    assert (parse_duration_seconds("-PT1H"), parse_duration_seconds("PT8H")) == (
        convert.MIN_DELAY.total_seconds(),
        convert.MAX_DELAY.total_seconds(),
    )


def test_passengers_are_whole_numbers_up_to_the_bound_integral_floats_included(
    tmp_path: Path,
) -> None:
    counts = ["3", "3.0", "1e2", "-0.0", "10000", "10000.0", "3.5", "10001", "10000.5", "1e400"]
    spelled = [json.dumps(row(passengers="@")).replace('"@"', count) for count in counts]
    body = f"[{', '.join(spelled)}]".encode()
    result, frame = run(tmp_path, body)
    assert frame["passengers"].to_list() == [3, 3, 100, 0, 10_000, 10_000]
    assert [e.reason for e in result.invalid_examples] == [
        "passengers 3.5 is not a whole number",
        "Expected `int` <= 10000 - at `$.passengers`",
        "Expected `float` <= 10000.0 - at `$.passengers`",
        "Number out of range - at `$.passengers`",
    ]


@pytest.mark.parametrize(
    ("written", "on_the_day"),
    [
        ("2024-05-01T00:00:00", True),
        ("2024-05-01T23:59:59.999999", True),
        ("2024-05-01T23:30:00-05:00", True),  # 04:30 UTC on May 2: the wall clock counts
        ("2024-05-01T00:30:00+02:00", True),  # 22:30 UTC on April 30
        ("2024-05-01T12:00:00Z", True),
        ("2024-05-02T00:30:00+02:00", False),  # 22:30 UTC on May 1: still a May 2 bus
        ("2024-04-30T23:30:00-05:00", False),
        ("2024-05-02T00:00:00", False),
        ("9999-12-31T23:59:59-05:00", False),  # offsets are never applied, so never overflow
        ("0001-01-01T00:00:00+05:00", False),
    ],
)
def test_a_row_is_on_the_day_its_departure_time_is_written_with(
    tmp_path: Path, written: str, on_the_day: bool
) -> None:
    result, frame = run(tmp_path, [row(**{"departure-time": written})])
    assert result.rows == int(on_the_day)
    if on_the_day:
        wall_clock = dt.datetime.fromisoformat(written).replace(tzinfo=None)
        assert frame["departure_time"].to_list() == [wall_clock]
    else:
        assert result.invalid_examples[0].reason == (
            f"departure-time {dt.datetime.fromisoformat(written).isoformat()} is not on 2024-05-01"
        )


def test_no_delay_sum_can_wrap_in_64_bits_for_any_file_converted(tmp_path: Path) -> None:
    # The five keys alone take MIN_ROW_BYTES: no valid row is shorter.
    shortest = b'{"departure-time":"2024-05-01T00:00:00","bus-type":"","passengers":0,'
    shortest += b'"delay":"-PT1H","accident":true}'
    result, _ = run(tmp_path, b"[" + shortest + b"]")
    assert result.rows == 1
    assert convert.MIN_ROW_BYTES == 60 < len(shortest)
    largest_delay_us = max(-convert.MIN_DELAY, convert.MAX_DELAY) // dt.timedelta(microseconds=1)
    assert convert.MAX_ROWS * largest_delay_us < 2**63 - 1
    assert convert.MAX_ROWS * convert.MAX_PASSENGERS < 2**63 - 1
    # and a larger file is refused before it is read (a sparse file: no disk is used)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as file:
        file.truncate(convert.MAX_FILE_BYTES + 1)
    with pytest.raises(UnusableResponse, match="more than 17179869184"):
        convert_file(huge, tmp_path / "huge.parquet", CITY, DAY)
