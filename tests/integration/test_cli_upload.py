"""`busstats upload DATE CITY_ID FILE` against a live service: the file's bytes go to
`PUT /raw/{date}/{city_id}` as the body, the job the service answers is printed, a bad file
is the service's 4xx (exit 3) and changes nothing.

Written against the endpoint's contract (201 with the job record; 4xx with `{"error"}`)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from busstats.reference.sim import SimulatorConfig
from harness.servers import RunningSimulator
from tests.support.clirun import busstats
from tests.support.flows import country_stats, ingest


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(rows=(20, 40), max_latency=0.05)


DAY = "2024-05-01"


async def upstream_rows(http: aiohttp.ClientSession, sim: str, city_id: int) -> list[object]:
    """The city's day as upstream sends it."""
    async with http.get(
        f"{sim}/cities/{city_id}/stats", params={"date": f"{DAY}T00:00:00"}
    ) as response:
        assert response.status == 200, await response.text()
        rows: list[object] = json.loads(await response.read())
        return rows


async def test_upload_sends_the_file_and_prints_the_job(
    simulator: RunningSimulator, local_api: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    await ingest(http, local_api, DAY)
    before = await country_stats(http, local_api, DAY, DAY)
    rows = (await upstream_rows(http, simulator.url, 0))[:5]
    junk = {"departure-time": "yesterday", "bus-type": "X", "passengers": 1}
    file = tmp_path / "city-0.json"
    file.write_text(json.dumps([*rows, junk]))

    run = await busstats("upload", DAY, "0", str(file), url=local_api)
    assert run.code == 0, run
    job = json.loads(run.out)
    assert job["status"] == "succeeded"
    [city] = [city for city in job["cities"] if city["city_id"] == 0]
    assert (city["rows"], city["invalid_rows"]) == (5, 1)
    async with http.get(f"{local_api}/jobs/{job['job_id']}") as response:
        assert (await response.json())["status"] == "succeeded"
    after = await country_stats(http, local_api, DAY, DAY)
    assert after != before

    not_json = tmp_path / "page.html"
    not_json.write_text("<html>moved</html>")
    refused = await busstats("upload", DAY, "0", str(not_json), url=local_api)
    assert refused.code == 3, refused
    assert "the service answered 4" in refused.err
    assert await country_stats(http, local_api, DAY, DAY) == after

    missing = await busstats("upload", DAY, "0", str(tmp_path / "nothing.json"), url=local_api)
    assert missing.code == 2, missing
    assert "is not a file" in missing.err
