"""Redirects stay on the reference server's origin; upstream text reaches a job only as a
short, printable excerpt."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from busstats.core.settings import DateParam, Settings
from busstats.reference.client import DateSpelling, ReferenceClient, RetryPolicy, UpstreamError
from busstats.reference.sim import Fault, SimulatorConfig
from harness.servers import api_server, simulator
from tests.support.flows import ingest
from tests.support.loopback import loopback_app

DAY = dt.date(2024, 5, 1)
BROKEN = 4
SECRET = "SECRET-7d1e: internal admin page"


async def secret_page(_: web.Request) -> web.Response:
    return web.Response(text=SECRET * 3)


async def test_a_redirect_to_another_origin_is_not_followed(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with loopback_app(secret_page) as (private_url, hits):
        config = SimulatorConfig(
            rows=(20, 30),
            max_latency=0.02,
            faults={BROKEN: Fault.REDIRECT},
            redirect_url=f"{private_url}/admin",
        )
        async with simulator(config) as sim:
            settings = Settings(store=str(tmp_path), reference_url=sim.url)
            async with api_server(settings) as api:
                job = await ingest(http, api, DAY.isoformat())
    assert job["status"] == "partial"
    city = next(c for c in job["cities"] if c["city_id"] == BROKEN)
    assert city["status"] == "failed"
    assert "answered 302: redirected to another origin (not followed)" in city["error"]
    assert "gave up" not in city["error"]
    assert hits == []
    assert "SECRET" not in json.dumps(job)


async def test_a_redirect_on_the_same_origin_is_followed(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = SimulatorConfig(rows=(20, 30), max_latency=0.02, faults={BROKEN: Fault.MOVED})
    async with simulator(config) as sim:
        settings = Settings(store=str(tmp_path), reference_url=sim.url)
        async with api_server(settings) as api:
            job = await ingest(http, api, DAY.isoformat())
        assert sim.state.calls_by_city[BROKEN] == 2  # the 301, then the moved address
    assert job["status"] == "succeeded", job
    assert next(c for c in job["cities"] if c["city_id"] == BROKEN)["rows"] >= 20


async def test_redirects_in_circles_end() -> None:
    async def in_circles(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": request.path_qs})

    async with loopback_app(in_circles) as (url, hits), aiohttp.ClientSession() as session:
        client = ReferenceClient(session, url, DateSpelling(DateParam.DATE))
        with pytest.raises(UpstreamError, match="redirected more than 5 times"):
            await client.download_day(1, DAY, io.BytesIO())
    assert len(hits) == 6


async def hostile_error(_: web.Request) -> web.Response:
    body = "\x1b[2J\x07bad\r\n\tthings " + "A" * 5000 + "\x00"
    return web.Response(status=404, text=body)


async def test_error_bodies_are_quoted_short_and_printable() -> None:
    async with loopback_app(hostile_error) as (url, _), aiohttp.ClientSession() as session:
        retry = RetryPolicy(attempts=1)
        client = ReferenceClient(session, url, DateSpelling(DateParam.DATE), retry)
        with pytest.raises(UpstreamError) as caught:
            await client.download_day(1, DAY, io.BytesIO())
    message = str(caught.value)
    assert message.startswith("GET /cities/1/stats?date=2024-05-01 answered 404: ")
    quoted = message.removeprefix("GET /cities/1/stats?date=2024-05-01 answered 404: ")
    assert quoted.startswith(r"\x1b[2J\x07bad things AAAA")
    assert quoted.endswith("A…")
    assert len(quoted) == 101
    assert message.isprintable()
