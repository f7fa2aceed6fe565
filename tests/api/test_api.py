"""The HTTP contract, the app in process (tests/support/inprocess.py): payload shapes and a JSON
4xx for every bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from busstats.core.settings import Settings
from tests.support.inprocess import app_client

STATS = "/country-stats"
PROCESS = "/process-request"


def settings_over(store: Path) -> Settings:
    """A store folder, and an upstream nobody listens on (port 9, discard)."""
    return Settings(
        store=str(store),
        reference_url="http://127.0.0.1:9",
        reference_backoff_seconds=0.01,
        executor="threads",
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings_over(tmp_path / "store")) as client:
        yield client


def expect_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].split(";")[0] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    for word in words:
        assert word in body["error"]


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    response = await api.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": "ok"}


@pytest.mark.parametrize(
    ("method", "route", "query", "words"),
    [
        ("GET", STATS, "", ["'from' is required", "YYYY-MM-DD"]),
        ("GET", STATS, "from=2024-05-01", ["'to' is required"]),
        ("GET", STATS, "from=&to=2024-05-01", ["'from' is required"]),
        ("GET", STATS, "from=2024-5-1&to=2024-05-01", ["'from' must be a real date", "'2024-5-1'"]),
        ("GET", STATS, "from=2024-02-30&to=2024-03-01", ["'from' must be a real date"]),
        ("GET", STATS, "from=0000-01-01&to=2024-03-01", ["'from' must be a real date"]),
        ("GET", STATS, "from=2024-01-01&to=10000-01-01", ["'to' must be a real date"]),
        ("GET", STATS, "from=20240501&to=2024-05-01", ["'from' must be a real date"]),
        ("GET", STATS, "from=2024-05-01T00:00:00&to=2024-05-01", ["must be a real date"]),
        ("GET", STATS, "from=2024-05-02&to=2024-05-01", ["after", "from <= to"]),
        ("GET", STATS, "from=2024-05-01&from=2024-05-02&to=2024-05-03", ["given 2 times"]),
        ("GET", STATS, "from=2000-01-01&to=2024-01-01", ["8767 days", "at most 3660"]),
        ("GET", STATS, "from=%E2%80%93&to=2024-01-01", ["must be a real date"]),
        (
            "GET",
            STATS,
            "from=2024-05-01&to=2024-05-01&source=fast",
            ["'source' must be one of summary, full"],
        ),
        (
            "GET",
            STATS,
            "from=2024-05-01&to=2024-05-01&source=full&source=full",
            ["'source' was given 2"],
        ),
        (
            "GET",
            STATS,
            "from=2024-05-01&to=2024-05-01&compress=1",
            ["unknown query parameter 'compress'; /country-stats accepts from, to, source, format"],
        ),
        ("GET", STATS, "From=2024-05-01&to=2024-05-01", ["unknown query parameter 'From'"]),
        ("GET", STATS, "from=2024-05-01&to=2024-05-01&=x", ["unknown query parameter ''"]),
        ("GET", STATS, "compress=1", ["unknown query parameter 'compress'"]),  # before the rest
        ("GET", STATS, "x" * 500 + "=1", ["unknown query parameter '" + "x" * 60 + "...'"]),
        (
            "POST",
            PROCESS,
            "date=2024-05-01&force=true",
            ["unknown query parameter 'force'; /process-request accepts date"],
        ),
        ("GET", "/jobs/" + "0" * 32, "v=1", ["/jobs/{job_id} accepts no query parameters"]),
        ("GET", "/health", "verbose", ["unknown query parameter 'verbose'; /health accepts no"]),
        ("GET", "/health/ready", "x=1", ["/health/ready accepts no query parameters"]),
        ("POST", PROCESS, "", ["'date' is required"]),
        ("POST", PROCESS, "date=yesterday", ["'date' must be a real date", "YYYY-MM-DD"]),
        ("POST", PROCESS, "date=2024-05-01&date=2024-05-02", ["given 2 times"]),
    ],
)
async def test_bad_queries_are_400_with_a_reason(
    api: httpx.AsyncClient, method: str, route: str, query: str, words: list[str]
) -> None:
    expect_error(await api.request(method, f"{route}?{query}"), 400, *words)


@pytest.mark.parametrize(
    ("job_id", "words"),
    [
        ("0" * 32, ["no job with id '000"]),
        ("nope", ["no job with id 'nope'"]),
        ("ABCDEF0123456789ABCDEF0123456789", ["no job"]),
        ("%2E%2E/nope", ["no route"]),  # /jobs/../nope, however a client normalises it
        ("..%2F..%2Fraw", ["no route"]),  # never reaches a store key
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_unknown_jobs_are_404(
    api: httpx.AsyncClient, method: str, job_id: str, words: list[str]
) -> None:
    expect_error(await api.request(method, f"/jobs/{job_id}"), 404, *words)


async def test_unknown_routes_and_methods_are_json_errors(api: httpx.AsyncClient) -> None:
    expect_error(await api.get("/stats"), 404, "no route GET /stats")
    expect_error(await api.get("/process-request?date=2024-05-01"), 405, "GET is not allowed")


async def test_stats_over_an_empty_store(api: httpx.AsyncClient) -> None:
    response = await api.get("/country-stats?from=2024-05-01&to=2024-05-02")
    assert response.status_code == 200
    assert response.json() == {
        "from": "2024-05-01",
        "to": "2024-05-02",
        "stats": [],
        "dates_without_data": ["2024-05-01", "2024-05-02"],
        "incomplete_dates": [],
    }


async def test_an_unreachable_reference_server_fails_the_job_with_the_reason(
    api: httpx.AsyncClient,
) -> None:
    accepted = await api.post("/process-request?date=2024-05-01")
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    async with asyncio.timeout(60):  # a bounded poll
        while True:
            job = (await api.get(f"/jobs/{job_id}")).json()
            if job["status"] not in {"queued", "running"}:
                break
            await asyncio.sleep(0.02)
    assert job["status"] == "failed"
    assert "GET /cities failed" in job["error"]
    assert job["cities"] == []
    assert job["started_at"] <= job["finished_at"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{PROCESS}?date=2024-05-01"),
        ("GET", "/jobs/" + "0" * 32),
        ("GET", f"{STATS}?from=2024-05-01&to=2024-05-02"),
        ("GET", f"{STATS}?from=2024-05-01&to=2024-05-02&source=full"),
        ("GET", "/health/ready"),
    ],
)
async def test_a_store_that_is_a_file_answers_503_on_every_route(
    tmp_path: Path, method: str, path: str
) -> None:
    not_a_folder = tmp_path / "store"
    not_a_folder.write_text("a regular file where the store folder should be")
    # it starts, and says what is wrong with the store
    async with app_client(settings_over(not_a_folder)) as api:
        assert (await api.get("/health")).status_code == 200
        response = await api.request(method, path)
        expect_error(response, 503, "store is unavailable", str(not_a_folder))


@pytest.mark.parametrize("kind", ["jobs", "backfills"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_an_unreadable_record_is_503_naming_it(
    tmp_path: Path, kind: str, method: str
) -> None:
    """A record the store holds damaged: the answer says which object, never a 500."""
    record_id = "deadbeef" * 4
    folder = tmp_path / "store" / kind
    folder.mkdir(parents=True)
    (folder / f"{record_id}.json").write_bytes(b'{"job_id": "deadbeef", "x": tru')
    async with app_client(settings_over(tmp_path / "store")) as api:
        response = await api.request(method, f"/{kind}/{record_id}")
    expect_error(response, 503, f"{kind}/{record_id}.json is unreadable")
