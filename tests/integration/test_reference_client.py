"""What the client remembers across jobs, and what it says when it retries."""

from __future__ import annotations

import datetime as dt
import io
import logging
from pathlib import Path

import aiohttp
import pytest

from busstats.core.settings import DateParam, Settings
from busstats.reference import client as reference
from busstats.reference.client import DateSpelling, ReferenceClient, RetryPolicy
from busstats.reference.sim import CITIES, Fault, SimulatorConfig
from harness.servers import api_server, simulator
from tests.support.flows import ingest

DAY = dt.date(2024, 5, 1)


async def test_a_later_job_sends_no_wasted_date_400s(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(5, 5), max_latency=0.02, date_param="datetime")
    async with simulator(config) as sim:
        settings = Settings(
            store=str(tmp_path), reference_url=sim.url, reference_date_param=DateParam.AUTO
        )
        async with api_server(settings) as api:
            first = await ingest(http, api, "2024-05-01")
            learned_with = sim.state.date_rejections
            second = await ingest(http, api, "2024-05-02")
    assert first["status"] == second["status"] == "succeeded"
    assert 1 <= learned_with <= len(CITIES)
    assert sim.state.date_rejections == learned_with


async def test_retry_log_lines_name_the_url_city_attempt_and_cause_but_no_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = SimulatorConfig(rows=(5, 5), max_latency=0, faults={4: Fault.ERROR})
    async with simulator(config) as sim, aiohttp.ClientSession() as session:
        retry = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02)
        with_credentials = sim.url.replace("http://", "http://user:hunter2@")
        client = ReferenceClient(session, with_credentials, DateSpelling(DateParam.DATETIME), retry)
        with (
            caplog.at_level(logging.WARNING, logger="busstats.reference.client"),
            pytest.raises(reference.UpstreamError, match="gave up after 3 attempts"),
        ):
            await client.download_day(4, DAY, io.BytesIO())
    lines = [r.getMessage() for r in caplog.records if r.name == "busstats.reference.client"]
    cause = "GET /cities/4/stats?date=2024-05-01T00:00:00 answered 500"
    assert len(lines) == 3
    for number, line in enumerate(lines, start=1):
        assert line.startswith(f"reference server {sim.url}, city 4: attempt {number}/3 failed")
        assert cause in line
    assert "retrying" in lines[0]
    assert "giving up" in lines[2]
    assert "hunter2" not in caplog.text


class CountingFile(io.BytesIO):
    """A file that counts its truncations."""

    def __init__(self, initial: bytes = b"") -> None:
        super().__init__(initial)
        self.truncations = 0

    def truncate(self, size: int | None = None) -> int:
        self.truncations += 1
        return super().truncate(size)


async def test_a_download_truncates_only_a_file_that_holds_bytes_already() -> None:
    """Truncating an empty file costs the event loop ~1.5 ms a city on ext4 (the close then
    starts its write-back), so a fresh file is written as it is; old bytes are still dropped."""
    config = SimulatorConfig(rows=(5, 5), max_latency=0)
    async with simulator(config) as sim, aiohttp.ClientSession() as session:
        spelling = DateSpelling(DateParam.DATETIME)
        client = ReferenceClient(session, sim.url, spelling, RetryPolicy())
        fresh = CountingFile()
        await client.download_day(4, DAY, fresh)
        used = CountingFile(b"bytes of an earlier attempt, longer than nothing" * 1000)
        await client.download_day(4, DAY, used)
    assert fresh.truncations == 0
    assert used.truncations == 1
    assert used.getvalue() == fresh.getvalue()
    assert fresh.getvalue().startswith(b"[")
