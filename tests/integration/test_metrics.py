"""GET /metrics after real work: an ingest against the simulator (with faults), stats calls
and failing store calls, read back with the Prometheus parser and checked value by value."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from busstats.core.settings import Settings
from busstats.reference.sim import Fault, SimulatorConfig
from harness.servers import api_server, simulator
from tests.support.flows import FINISHED

DAY = "2024-05-01"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: aiohttp.ClientSession, api: str) -> Samples:
    async with http.get(f"{api}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape_until(
    http: aiohttp.ClientSession, api: str, name: str, minimum: float, **labels: str
) -> Samples:
    """The runner counts a job just after saving its end: poll /metrics until it shows."""
    async with asyncio.timeout(10):
        while True:
            samples = await scrape(http, api)
            if value(samples, name, **labels) >= minimum:
                return samples
            await asyncio.sleep(0.02)


async def test_metrics_after_an_ingest_and_stats_calls(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    faults = {3: Fault.FLAKY, 5: Fault.ERROR, 7: Fault.JUNK_ROWS, 9: Fault.NOT_FOUND}
    config = SimulatorConfig(rows=(20, 40), max_latency=0.0, faults=faults)
    async with simulator(config) as refsim:
        settings = Settings(
            store=str(tmp_path / "store"),
            reference_url=refsim.url,
            reference_attempts=3,
            reference_backoff_seconds=0.01,
        )
        async with api_server(settings) as api:
            async with http.post(f"{api}/process-request", params={"date": DAY}) as response:
                assert response.status == 202
                job_id = (await response.json())["job_id"]
            polls = 0
            async with asyncio.timeout(30):
                while True:
                    polls += 1
                    async with http.get(f"{api}/jobs/{job_id}") as response:
                        assert response.status == 200
                        job: dict[str, Any] = await response.json()
                    if job["status"] in FINISHED:
                        break
                    await asyncio.sleep(0.02)
            for _ in range(2):
                params = {"from": DAY, "to": DAY}
                async with http.get(f"{api}/country-stats", params=params) as response:
                    assert response.status == 200
            async with http.get(f"{api}/country-stats", params={"from": DAY}) as response:
                assert response.status == 400
            async with http.get(f"{api}/jobs/{'0' * 32}") as response:
                assert response.status == 404
            async with http.get(f"{api}/no/such/{job_id}") as response:
                assert response.status == 404
            samples = await scrape_until(http, api, "busstats_jobs_total", 1, outcome="partial")

    assert job["status"] == "partial"
    cities = job["cities"]
    failed = {c["city_id"] for c in cities if c["status"] == "failed"}
    assert failed == {5, 9}
    assert value(samples, "busstats_ingest_cities_total", outcome="succeeded") == 28
    assert value(samples, "busstats_ingest_cities_total", outcome="failed") == 2
    rows = sum(c["rows"] for c in cities)
    invalid = sum(c["invalid_rows"] for c in cities)
    assert rows > 0
    assert invalid > 0
    assert value(samples, "busstats_ingest_rows_total") == rows
    assert value(samples, "busstats_ingest_invalid_rows_total") == invalid
    assert value(samples, "busstats_ingest_raw_bytes_total") == sum(c["raw_bytes"] for c in cities)
    assert value(samples, "busstats_jobs_total", outcome="partial") == 1
    assert value(samples, "busstats_job_duration_seconds_count", outcome="partial") == 1
    assert value(samples, "busstats_jobs_total", outcome="succeeded") == 0

    # Tries: the city list and 27 cities at once; the flaky city on its second try; the
    # failing one three times (two retries); the unknown one is rejected without a retry.
    assert value(samples, "busstats_upstream_requests_total", outcome="ok") == 1 + 27 + 1
    assert value(samples, "busstats_upstream_requests_total", outcome="retryable") == 1 + 3
    assert value(samples, "busstats_upstream_requests_total", outcome="rejected") == 1
    assert value(samples, "busstats_upstream_retries_total", reason="status") == 1 + 2

    def requests(route: str, method: str, status: int) -> float:
        labels = {"route": route, "method": method, "status": str(status)}
        return value(samples, "busstats_http_requests_total", **labels)

    assert requests("/process-request", "POST", 202) == 1
    assert requests("/jobs/{job_id}", "GET", 200) == polls
    assert requests("/jobs/{job_id}", "GET", 404) == 1
    assert requests("/country-stats", "GET", 200) == 2
    assert requests("/country-stats", "GET", 400) == 1
    assert requests("(unmatched)", "GET", 404) == 1
    stats_latency = {"route": "/country-stats", "method": "GET", "status": "200"}
    assert value(samples, "busstats_http_request_duration_seconds_count", **stats_latency) == 2
    assert value(samples, "busstats_http_request_duration_seconds_sum", **stats_latency) > 0
    assert not [key for key in samples if job_id in str(key)], "a raw path became a label"


async def test_store_errors_are_counted_by_operation(http: aiohttp.ClientSession) -> None:
    settings = Settings(
        store="s3://nowhere",
        s3_endpoint_url="http://127.0.0.1:9",  # nothing listens: every call fails
        aws_access_key_id="key",
        aws_secret_access_key="secret",
        s3_attempts=1,
    )
    async with api_server(settings) as api:
        async with http.get(f"{api}/health/ready") as response:
            assert response.status == 503
        async with http.get(f"{api}/jobs/{'0' * 32}") as response:
            assert response.status == 503
        samples = await scrape(http, api)
    # start-up looked for unfinished jobs and backfills (a listing each) outside any
    # request: counted too
    assert value(samples, "busstats_store_errors_total", operation="list") == 2
    assert value(samples, "busstats_store_errors_total", operation="head") == 1
    # the schedule's state, read at start-up, and the job's record
    assert value(samples, "busstats_store_errors_total", operation="get") == 2
    labels = {"route": "/health/ready", "method": "GET", "status": "503"}
    assert value(samples, "busstats_http_requests_total", **labels) == 1


async def test_each_app_counts_only_its_own_requests(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    first = Settings(store=str(tmp_path / "a"))
    second = Settings(store=str(tmp_path / "b"))
    async with api_server(first) as api_a, api_server(second) as api_b:
        async with http.get(f"{api_a}/health") as response:
            assert response.status == 200
        labels = {"route": "/health", "method": "GET", "status": "200"}
        assert value(await scrape(http, api_a), "busstats_http_requests_total", **labels) == 1
        assert value(await scrape(http, api_b), "busstats_http_requests_total", **labels) == 0
