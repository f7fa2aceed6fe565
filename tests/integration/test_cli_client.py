"""The client commands (`busstats ingest/stats/jobs/cancel`) as a user runs them, in process
(`busstats.cli.main.main`, tests/support/clirun.py) talking over HTTP to a live service (the
simulator and the API on loopback ports), judged by what it prints and by its exit code.
Ctrl-C and a terminal need a process of their own: tests/system/test_cli_terminal.py."""

from __future__ import annotations

import io
import re
from pathlib import Path

import aiohttp
import polars as pl
import pytest

from busstats.reference.sim import Fault, SimulatorConfig
from harness.servers import free_port
from tests.support.clirun import busstats
from tests.support.flows import country_stats, ingest
from tests.support.upstreams import ONE_CITY_MISSING

SPREAD = SimulatorConfig(rows=(5, 10), max_latency=1.5)
"""Cities that finish over a second and a half: seen part done over several polls."""
CITIES = 30
"""Cities the simulator lists."""
EVERY_CITY_MISSING = SimulatorConfig(
    rows=(5, 10), max_latency=0.05, faults=dict.fromkeys(range(CITIES), Fault.NOT_FOUND)
)


@pytest.fixture
def api(local_api: str) -> str:
    """The API over a local store and the simulator (quick small days unless a test
    parametrizes `simulator_config`)."""
    return local_api


@pytest.mark.parametrize("simulator_config", [SPREAD])
async def test_ingest_range_waits_then_stats_and_jobs_show_it(
    api: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    run = await busstats("ingest", "2024-05-01", "--to", "2024-05-02", "--wait", url=api)
    assert run.code == 0, run
    finished = re.findall(r"^(2024-05-0\d) job (\w{32}): succeeded, 30/30 cities", run.out, re.M)
    assert [day for day, _ in finished] == ["2024-05-01", "2024-05-02"], run
    # the range is one backfill, followed to its end, which lists each date's job
    backfill_ids = set(re.findall(r"^backfill (\w{32}) 2024-05-01\.\.2024-05-02: ", run.out, re.M))
    assert len(backfill_ids) == 1, run
    assert list((tmp_path / "store" / "backfills").glob("*.json")) == [
        tmp_path / "store" / "backfills" / f"{next(iter(backfill_ids))}.json"
    ]
    assert run.out.splitlines()[-1].startswith(
        f"backfill {next(iter(backfill_ids))} 2024-05-01..2024-05-02: succeeded:"
        " 2 of 2 dates ingested, 0 failed, 0 left"
    ), run
    async with http.get(f"{api}/backfills/{next(iter(backfill_ids))}") as response:
        record = await response.json()
    assert [(job["date"], job["job_id"]) for job in record["jobs"]] == finished
    # not a terminal: one line per city that finished, never repeated, though cities
    # finish over several polls
    city_lines = [line for line in run.out.splitlines() if " city " in line]
    assert len(city_lines) == 2 * CITIES == len(set(city_lines)), run
    assert all(
        re.search(r": succeeded, \d+ rows, 0 invalid, [\d.]+ s$", line) for line in city_lines
    )
    assert "\x1b[" not in run.out  # no terminal control codes in a pipe

    answer = await country_stats(http, api, "2024-05-01", "2024-05-03")
    table = await busstats("stats", "2024-05-01", "2024-05-03", url=api)
    assert table.code == 0, table
    lines = table.out.splitlines()
    assert lines[0].split() == [
        "date", "country", "buses", "passengers", "accident", "avg", "delay", "min", "cities"
    ]  # fmt: skip
    assert len(lines) == 1 + len(answer["stats"])
    for line, row in zip(lines[1:], answer["stats"], strict=True):
        assert line.startswith(f"{row['date']}  {row['country']} ")
        numbers = line[len(row["date"]) + 2 + len(row["country"]) :].split()
        assert numbers == [
            f"{row['buses_started']:,}",
            f"{row['total_passengers']:,}",
            "yes" if row["accident"] else "no",
            f"{row['average_delay_minutes']:.2f}",
            str(row["cities_counted"]),
        ]
    assert "no data for 1 date(s): 2024-05-03" in table.err
    saved = await busstats(
        "stats", "2024-05-01", "2024-05-03", "--output", str(tmp_path / "t.txt"), url=api
    )
    assert saved.code == 0, saved
    assert (saved.out, (tmp_path / "t.txt").read_text()) == ("", table.out)

    jobs = await busstats("jobs", url=api)
    assert jobs.code == 0, jobs
    listed = [line.split() for line in jobs.out.splitlines()[1:]]
    assert [(day, status, job) for _, day, status, job in listed] == [
        (day, "succeeded", job) for day, job in reversed(finished)
    ]
    one = await busstats("jobs", "--date", "2024-05-01", "--status", "succeeded", url=api)
    assert [line.split()[-1] for line in one.out.splitlines()[1:]] == [finished[0][1]]
    none = await busstats("jobs", "--status", "failed", url=api)
    assert none.code == 0
    assert none.out.splitlines() == ["created_at  date  status  job_id"]


async def test_stats_formats_are_the_bytes_the_service_sends(
    api: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    await ingest(http, api, "2024-05-01")
    query = {"from": "2024-05-01", "to": "2024-05-02"}
    for fmt in ["csv", "json", "parquet"]:
        async with http.get(f"{api}/country-stats", params={**query, "format": fmt}) as sent:
            expected = await sent.read()
        piped = await busstats("stats", *query.values(), "--format", fmt, url=api)
        assert piped.code == 0, piped
        assert piped.raw == expected
        output = tmp_path / f"stats.{fmt}"
        saved = await busstats(
            "stats", *query.values(), "--format", fmt, "--output", str(output), url=api
        )
        assert saved.code == 0, saved
        assert saved.out == ""
        assert output.read_bytes() == expected
    assert pl.read_parquet(io.BytesIO(expected)).height == 5


async def test_jobs_follows_next_up_to_the_limit(api: str) -> None:
    queued = await busstats("ingest", "2024-05-01", "--to", "2024-05-07", "--wait", url=api)
    assert queued.code == 0, queued
    ids = re.findall(r"^2024-05-0\d job (\w{32}): succeeded", queued.out, re.M)
    assert len(ids) == 7
    listed = await busstats("jobs", "--limit", "5", "--page-size", "2", url=api)
    assert listed.code == 0, listed
    assert [line.split()[-1] for line in listed.out.splitlines()[1:]] == ids[::-1][:5]
    everything = await busstats("jobs", "--limit", "50", "--page-size", "3", url=api)
    assert [line.split()[-1] for line in everything.out.splitlines()[1:]] == ids[::-1]


async def test_ingest_without_wait_prints_the_queued_jobs(
    api: str, http: aiohttp.ClientSession
) -> None:
    run = await busstats("ingest", "2024-05-01", url=api)
    assert run.code == 0, run
    day, job_id, status = run.out.split()
    assert (day, status) == ("2024-05-01", "queued")
    async with http.get(f"{api}/jobs/{job_id}") as response:
        assert response.status == 200
        assert (await response.json())["date"] == "2024-05-01"


async def test_a_range_without_wait_prints_its_backfill_and_first_jobs(
    api: str, http: aiohttp.ClientSession
) -> None:
    run = await busstats("ingest", "2024-05-01", "--to", "2024-05-05", url=api)
    assert run.code == 0, run
    first, *jobs = run.out.splitlines()
    found = re.fullmatch(r"backfill (\w{32}) 2024-05-01\.\.2024-05-05: running", first)
    assert found, run
    async with http.get(f"{api}/backfills/{found[1]}") as response:
        assert response.status == 200
        record = await response.json()
    # the service creates the jobs a few at a time (BUSSTATS_MAX_RUNNING_JOBS, 2 here)
    assert [line.split()[:2] for line in jobs] == [
        [job["date"], job["job_id"]] for job in record["jobs"][: len(jobs)]
    ]
    assert [line.split()[0] for line in jobs] == ["2024-05-01", "2024-05-02"]


@pytest.mark.parametrize(
    ("simulator_config", "status", "stored", "backfill"),
    [
        pytest.param(ONE_CITY_MISSING, "partial", CITIES - 1, "partial", id="partial"),
        pytest.param(EVERY_CITY_MISSING, "failed", 0, "failed", id="failed"),
    ],
)
async def test_a_range_with_dates_not_succeeded_exits_1_and_says_why(
    api: str, status: str, stored: int, backfill: str
) -> None:
    run = await busstats("ingest", "2024-05-01", "--to", "2024-05-03", "--wait", url=api)
    assert run.code == 1, run
    ended = re.findall(
        rf"^(2024-05-0\d) job \w{{32}}: {status}, {stored}/{CITIES} cities stored: .+",
        run.out,
        re.M,
    )
    assert ended == ["2024-05-01", "2024-05-02", "2024-05-03"], run
    done = 0 if backfill == "failed" else 3
    assert re.search(
        rf"^backfill \w{{32}} 2024-05-01\.\.2024-05-03: {backfill}: .*"
        rf"{done} of 3 dates ingested, {3 - done} failed, 0 left",
        run.out.splitlines()[-1],
    ), run


@pytest.mark.parametrize(
    ("simulator_config", "status", "stored"),
    [
        pytest.param(ONE_CITY_MISSING, "partial", CITIES - 1, id="partial"),
        pytest.param(EVERY_CITY_MISSING, "failed", 0, id="failed"),
    ],
)
async def test_a_job_not_succeeded_exits_1_and_says_why(api: str, status: str, stored: int) -> None:
    run = await busstats("ingest", "2024-05-01", "--wait", url=api)
    assert run.code == 1, run
    assert re.search(
        rf"^2024-05-01 job \w{{32}}: {status}, {stored}/{CITIES} cities stored: .+",
        run.out,
        re.M,
    ), run
    failed = [line for line in run.out.splitlines() if re.search(r" city \d+ .*: failed: ", line)]
    assert len(failed) == CITIES - stored, run
    assert "city 3 " in "".join(failed)
    assert "404" in "".join(failed)


async def test_service_errors_exit_3_with_the_services_reason(api: str) -> None:
    bad_date = await busstats("ingest", "2024-13-01", url=api)
    assert bad_date.code == 3, bad_date
    assert "400" in bad_date.err
    assert "must be a real date as YYYY-MM-DD, got '2024-13-01'" in bad_date.err
    assert bad_date.out == ""

    backwards = await busstats("stats", "2024-05-02", "2024-05-01", url=api)
    assert backwards.code == 3, backwards
    assert "after" in backwards.err

    unknown_job_date = await busstats("jobs", "--date", "May 1st", url=api)
    assert unknown_job_date.code == 3, unknown_job_date

    not_busstats = await busstats("jobs", url=f"{api}/nowhere")
    assert not_busstats.code == 3, not_busstats
    assert "404" in not_busstats.err


@pytest.mark.parametrize(
    "command",
    [
        ["ingest", "2024-05-01"],
        ["ingest", "2024-05-01", "--wait"],
        ["stats", "2024-05-01", "2024-05-01"],
        ["jobs"],
    ],
)
async def test_an_unreachable_service_exits_4(command: list[str]) -> None:
    run = await busstats(*command, "--url", f"http://127.0.0.1:{free_port()}")
    assert run.code == 4, run
    assert "cannot reach the service" in run.err
    assert "Traceback" not in run.err


@pytest.mark.parametrize(
    "command",
    [
        ["ingest"],
        ["ingest", "2024-05-02", "--to", "2024-05-01"],
        ["ingest", "2024-05-01", "--to", "2026-01-01"],
        ["ingest", "2024-05-01", "--to", "soon"],
        ["stats", "2024-05-01"],
        ["stats", "2024-05-01", "2024-05-01", "--format", "xml"],
        ["jobs", "--limit", "0"],
        ["jobs", "--status", "done"],
    ],
)
async def test_usage_errors_exit_2_before_any_request(command: list[str]) -> None:
    # nothing listens at the URL: a request would exit 4
    run = await busstats(*command, "--url", f"http://127.0.0.1:{free_port()}")
    assert run.code == 2, run
    assert "error" in run.err
