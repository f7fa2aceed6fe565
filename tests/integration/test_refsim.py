"""The bundled simulator speaks upstream's API and quirks, deterministically."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import zlib

import aiohttp
import pytest

from busstats.ingest.convert import parse_duration_seconds
from busstats.reference.sim import CITIES, Fault, SimulatorConfig
from busstats.reference.sim.data import generate_rows
from busstats.reference.sim.hostile import BAD_CITY_ENTRIES
from harness import servers
from harness.servers import RunningSimulator, free_socket

QUICK = SimulatorConfig(rows=(3, 8), max_latency=0)


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return QUICK


async def test_cities_have_free_text_names_and_integer_ids(
    simulator: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{simulator.url}/cities") as response:
        cities = await response.json()
    assert len(cities) == 30
    assert len({c["country"] for c in cities}) == 5
    assert all(isinstance(c["id"], int) for c in cities)
    names = [c["name"] for c in cities]
    assert len(set(names)) < len(names)  # two cities share a name
    text = " ".join(names + [c["country"] for c in cities])
    for char in ("'", "&", "(", ",", "é", "ć"):
        assert char in text


@pytest.mark.parametrize(
    ("date_param", "accepted", "refused", "message"),
    [
        ("datetime", "2024-05-01T00:00:00", "2024-05-01", "Invalid RFC3339 encoded datetime"),
        ("date", "2024-05-01", "2024-05-01T00:00:00", "Invalid date format"),
    ],
)
async def test_each_deployment_accepts_one_date_spelling(
    http: aiohttp.ClientSession, date_param: str, accepted: str, refused: str, message: str
) -> None:
    config = SimulatorConfig(rows=(3, 3), max_latency=0, date_param=date_param)
    async with servers.simulator(config) as sim:
        url = f"{sim.url}/cities/0/stats"
        async with http.get(url, params={"date": accepted}) as response:
            assert response.status == 200
            assert len(await response.json()) == 3
        async with http.get(url, params={"date": refused}) as response:
            assert response.status == 400
            assert (await response.json())["extra"][0]["message"] == message


async def test_a_zone_in_the_date_comes_back_on_the_departure_times(
    simulator: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    url = f"{simulator.url}/cities/1/stats"
    async with http.get(url, params={"date": "2024-05-01T00:00:00Z"}) as response:
        rows = await response.json()
    assert rows
    assert all(row["departure-time"].endswith("Z") for row in rows)


async def test_the_same_seed_and_date_give_the_same_bytes(http: aiohttp.ClientSession) -> None:
    bodies = []
    for _ in range(2):
        async with servers.simulator(QUICK) as sim:
            url = f"{sim.url}/cities/5/stats?date=2024-05-01T00:00:00"
            async with http.get(url) as response:
                bodies.append(await response.read())
    assert bodies[0] == bodies[1]
    rows = json.loads(bodies[0])
    assert 3 <= len(rows) <= 8
    assert set(rows[0]) == {"departure-time", "bus-type", "passengers", "delay", "accident"}


def test_rows_use_upstream_spellings_and_mixed_ones_mean_the_same() -> None:
    day = dt.date(2024, 5, 1)
    plain = json.loads("".join(generate_rows(1, day, 2, 2000)))
    mixed = json.loads("".join(generate_rows(1, day, 2, 2000, mixed_durations=True)))
    assert {row["delay"] for row in plain} <= {"P0D"} | {f"PT{60 * m}S" for m in range(1, 121)}
    assert len({row["delay"] for row in mixed} - {row["delay"] for row in plain}) > 10
    assert [parse_duration_seconds(r["delay"]) for r in plain] == [
        parse_duration_seconds(r["delay"]) for r in mixed
    ]


def test_large_days_stream_in_pieces() -> None:
    pieces = generate_rows(0, dt.date(2024, 5, 1), 0, 25_000)
    sizes = [len(piece) for piece in pieces]
    assert len(sizes) == 5  # "[", three batches, "]"
    assert max(sizes) < 1_500_000


@pytest.mark.parametrize(
    ("fault", "status", "starts_with"),
    [
        (Fault.ERROR, 500, b"{"),
        (Fault.HTML, 200, b"<html>"),
        (Fault.NOT_JSON, 200, b"rows"),
        (Fault.TRUNCATED, 200, b"[{"),
    ],
)
async def test_faults_break_only_the_chosen_city(
    http: aiohttp.ClientSession, fault: Fault, status: int, starts_with: bytes
) -> None:
    config = SimulatorConfig(rows=(20, 20), max_latency=0, faults={2: fault})
    async with servers.simulator(config) as sim:
        base = f"{sim.url}/cities/{{}}/stats?date=2024-05-01T00:00:00"
        async with http.get(base.format(2)) as response:
            assert response.status == status
            body = await response.read()
        async with http.get(base.format(3)) as response:
            assert len(await response.json()) == 20
    assert body.startswith(starts_with)
    if status == 200:
        with pytest.raises(json.JSONDecodeError, match=r"Expecting|Unterminated"):
            json.loads(body)


def test_city_ids_are_dense_from_zero() -> None:
    assert [city.id for city in CITIES] == list(range(30))


async def test_misbehaviour_knobs_answer_as_documented(http: aiohttp.ClientSession) -> None:
    faults = {1: Fault.REDIRECT, 2: Fault.MOVED, 3: Fault.GZIP_BOMB}
    config = SimulatorConfig(
        rows=(5, 5), max_latency=0, faults=faults, redirect_url="http://127.0.0.1:9/x"
    )
    async with servers.simulator(config) as sim:
        base = f"{sim.url}/cities/{{}}/stats?date=2024-05-01T00:00:00"
        async with http.get(base.format(1), allow_redirects=False) as response:
            assert (response.status, response.headers["Location"]) == (302, config.redirect_url)
        async with http.get(base.format(2), allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"] == "/moved/cities/2/stats?date=2024-05-01T00:00:00"
        async with http.get(base.format(2)) as response:
            assert len(await response.json()) == 5
        async with http.get(base.format(3), auto_decompress=False) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            bomb = await response.read()
    assert len(bomb) < 1_100_000
    assert int.from_bytes(bomb[-4:], "little") == (2**30 + 2) % 2**32  # gzip's size field
    head = zlib.decompressobj(31).decompress(bomb[:4096], 1000)
    assert head == b"[" + b" " * 999


async def test_an_endless_city_keeps_streaming(http: aiohttp.ClientSession) -> None:
    config = SimulatorConfig(rows=(5, 5), max_latency=0, faults={1: Fault.ENDLESS})
    async with servers.simulator(config) as sim:
        url = f"{sim.url}/cities/1/stats?date=2024-05-01T00:00:00"
        received = 0
        async with http.get(url) as response, asyncio.timeout(10):
            async for chunk in response.content.iter_chunked(1 << 16):
                received += len(chunk)
                if received > 200_000:  # more than the 5 rows asked for, many times over
                    break
    assert received > 200_000


async def test_bad_city_entries_follow_the_good_ones(http: aiohttp.ClientSession) -> None:
    config = SimulatorConfig(rows=(5, 5), max_latency=0, bad_city_entries=True)
    async with servers.simulator(config) as sim, http.get(f"{sim.url}/cities") as response:
        entries = await response.json()
    assert entries[: len(CITIES)] == [
        {"id": c.id, "name": c.name, "country": c.country} for c in CITIES
    ]
    assert entries[len(CITIES) :] == [json.loads(entry) for entry in BAD_CITY_ENTRIES]


async def test_the_refsim_command_takes_the_misbehaviour_knobs(
    http: aiohttp.ClientSession,
) -> None:
    with free_socket() as sock:
        port = sock.getsockname()[1]
    command = [
        sys.executable, "-m", "busstats.cli", "refsim", "--port", str(port),
        "--max-latency", "0", "--rows", "5", "--gzip", "--bad-city-entries",
        "--fault", "3=redirect", "--redirect-url", "http://127.0.0.1:9/elsewhere",
        "--fault", "4=gzip-bomb",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    stats = base + "/cities/{}/stats?date=2024-05-01T00:00:00"
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    async with http.get(f"{base}/cities") as response:
                        entries = await response.json()
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        async with http.get(stats.format(3), allow_redirects=False) as response:
            assert response.headers["Location"] == "http://127.0.0.1:9/elsewhere"
        async with http.get(stats.format(4), auto_decompress=False) as response:
            assert len(await response.read()) < 1_100_000
        async with http.get(stats.format(5)) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert len(await response.json()) == 5
    finally:
        process.terminate()
        async with asyncio.timeout(15):
            await process.wait()
    assert len(entries) == len(CITIES) + len(BAD_CITY_ENTRIES)
