"""The dashboard at `GET /` in a real headless Chromium against a live service: the numbers
it shows are the API's, the grid shows a failed city as failed, its button starts an ingest,
it says so when a range has no data or the API answers an error, and no request leaves
127.0.0.1 (the chart library is served by the service).

One service, one upstream and one Chromium serve the whole module (they are its slow part),
on the module's event loop; each test opens its own page. A test that ingests uses a date no
other test looks at, so the tests hold in any order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from busstats.api.dashboard import PLOTLY_ASSET
from busstats.reference.sim import CITIES, Fault, SimulatorConfig
from busstats.storage import LocalStore
from harness.browser import RequestLog, chromium
from harness.servers import api_server, settings_for, simulator
from tests.support.flows import country_stats, ingest

DAYS = ("2024-05-01", "2024-05-02")
FAILING = CITIES[3]
FINE = CITIES[0]


@dataclass(frozen=True)
class Service:
    url: str
    jobs: dict[str, dict[str, Any]]
    """The job each ingested date ended with."""


pytestmark = pytest.mark.asyncio(loop_scope="module")

UPSTREAM = SimulatorConfig(rows=(20, 60), max_latency=0.0, faults={FAILING.id: Fault.ERROR})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(
    tmp_path_factory: pytest.TempPathFactory, http: aiohttp.ClientSession
) -> AsyncIterator[Service]:
    """A service over two ingested dates on which one city fails upstream."""
    store = LocalStore(tmp_path_factory.mktemp("dashboard") / "store")
    async with simulator(UPSTREAM) as sim, api_server(settings_for(store, sim), store) as url:
        jobs = {day: await ingest(http, url, day) for day in DAYS}
        yield Service(url, jobs)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page of the module's Chromium, closed after the test."""
    opened = await browser.new_page()
    yield opened
    await opened.close()


async def rendered(page: Page, first: str, last: str) -> None:
    """Wait (bounded) until the page has drawn this range."""
    await page.wait_for_selector(f'body[data-rendered="{first}..{last}"]', timeout=30_000)


async def table_rows(page: Page) -> list[list[str]]:
    rows: list[list[str]] = await page.eval_on_selector_all(
        "#stats tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    return rows


def expected_rows(answer: dict[str, Any]) -> list[list[str]]:
    """The table as the page should print the JSON answer: integers with thousands
    separators, the average delay to two decimals."""
    return [
        [
            row["date"],
            row["country"],
            f"{row['buses_started']:,}",
            f"{row['total_passengers']:,}",
            f"{row['average_delay_minutes']:.2f}",
            "yes" if row["accident"] else "",
            str(row["cities_counted"]),
        ]
        for row in answer["stats"]
    ]


async def test_the_page_shows_the_apis_numbers_and_the_failed_city(
    service: Service, page: Page, http: aiohttp.ClientSession
) -> None:
    assert all(job["status"] == "partial" for job in service.jobs.values())
    requests = RequestLog(page)
    await page.goto(f"{service.url}/")
    await rendered(page, "2024-04-26", "2024-05-02")  # the 7 days up to the newest data

    await page.fill("#from", "2024-05-01")
    await page.fill("#to", "2024-05-03")
    await page.click("#show")
    await rendered(page, "2024-05-01", "2024-05-03")

    answer = await country_stats(http, service.url, "2024-05-01", "2024-05-03")
    assert answer["stats"], "the fixture ingested data"
    assert await table_rows(page) == expected_rows(answer)
    assert await page.text_content("#message") == ""

    failed = f'#grid td[data-city="{FAILING.name}"][data-date="2024-05-01"]'
    assert await page.get_attribute(failed, "data-status") == "failed"
    fine = f'#grid td[data-city="{FINE.name}"][data-date="2024-05-02"]'
    assert await page.get_attribute(fine, "data-status") == "succeeded"
    no_job = f'#grid td[data-city="{FINE.name}"][data-date="2024-05-03"]'
    assert await page.get_attribute(no_job, "data-status") == "none"
    # the dates /country-stats calls incomplete (a city missing) are marked so
    incomplete = {entry["date"] for entry in answer["incomplete_dates"]}
    assert incomplete == set(DAYS)
    for day in ("2024-05-01", "2024-05-02", "2024-05-03"):
        classes = await page.get_attribute(f'#grid th.day[data-date="{day}"]', "class")
        assert ("incomplete" in (classes or "").split()) == (day in incomplete)

    # one line per country on each chart, and the accident days as markers
    charts: list[dict[str, Any]] = await page.eval_on_selector_all(
        ".chart",
        "divs => divs.map(d => ({id: d.id, traces: d.data.map(t => [t.name, t.x, t.y])}))",
    )
    countries = sorted({row["country"] for row in answer["stats"]})
    accidents = [row for row in answer["stats"] if row["accident"]]
    assert 0 < len(accidents) < len(answer["stats"]), "the data has days with and without"
    fields = {
        "chart-buses": "buses_started",
        "chart-passengers": "total_passengers",
        "chart-delay": "average_delay_minutes",
    }
    assert [chart["id"] for chart in charts] == list(fields)
    for chart in charts:
        field = fields[chart["id"]]
        names = [name for name, _, _ in chart["traces"]]
        assert names == [*countries, "accident"]
        _, x, y = chart["traces"][-1]
        assert list(zip(x, y, strict=True)) == [(row["date"], row[field]) for row in accidents]

    csv_link = await page.get_attribute("#csv", "href")
    assert csv_link == "country-stats?from=2024-05-01&to=2024-05-03&format=csv"
    async with http.get(f"{service.url}/{csv_link}") as response:
        assert response.status == 200
        assert response.content_type == "text/csv"

    assert requests.hosts() == {"127.0.0.1"}, requests.urls
    assert any(url.endswith(f"/dashboard/{PLOTLY_ASSET}") for url in requests.urls)


async def test_the_ingest_button_starts_a_job_and_the_grid_follows_it(
    service: Service, page: Page, http: aiohttp.ClientSession
) -> None:
    await page.goto(f"{service.url}/?from=2024-05-01&to=2024-05-04")
    await rendered(page, "2024-05-01", "2024-05-04")
    assert await page.text_content('#grid button[data-date="2024-05-04"]') == "Ingest"
    assert await page.text_content('#grid button[data-date="2024-05-01"]') == "Re-ingest"

    await page.click('#grid button[data-date="2024-05-04"]')
    async with asyncio.timeout(30):
        while True:
            async with http.get(f"{service.url}/jobs", params={"date": "2024-05-04"}) as response:
                jobs = (await response.json())["jobs"]
            if jobs:
                break
            await asyncio.sleep(0.1)
    assert len(jobs) == 1
    # the page follows the job to its end (it polls once a second: a bound for a loaded
    # machine), then says how it ended and draws the date's cities; the grid may show the
    # failed city while the job still runs, so the end is judged by the message
    await page.wait_for_function(
        "document.querySelector('#message').textContent.includes('ended')", timeout=90_000
    )
    message = await page.text_content("#message")
    assert message is not None
    assert message.startswith("Ingest of 2024-05-04 ended partial")
    failed = f'#grid td[data-city="{FAILING.name}"][data-date="2024-05-04"][data-status="failed"]'
    await page.wait_for_selector(failed, timeout=30_000)


async def test_a_range_without_data_says_so(service: Service, page: Page) -> None:
    await page.goto(f"{service.url}/?from=2020-01-01&to=2020-01-07")
    await rendered(page, "2020-01-01", "2020-01-07")
    assert await page.text_content("#message") == "No data from 2020-01-01 to 2020-01-07."
    assert await table_rows(page) == []
    assert await page.text_content("#grid-message") == (
        "No job has ingested a date of this range yet."
    )


async def test_an_error_of_the_api_is_shown(service: Service, page: Page) -> None:
    await page.goto(f"{service.url}/?from=2024-05-03&to=2024-05-01")
    await rendered(page, "2024-05-03", "2024-05-01")
    assert await page.get_attribute("#message", "class") == "error"
    message = await page.text_content("#message")
    assert message is not None
    assert message.startswith("The statistics could not be read: 400:")
    assert "2024-05-03" in message
    assert await table_rows(page) == []


async def test_the_chart_library_is_served_versioned_cached_and_compressed(
    service: Service, http: aiohttp.ClientSession
) -> None:
    local_api = service.url
    async with http.get(f"{local_api}/") as response:
        assert response.status == 200
        page = await response.text()
    assert f'src="dashboard/{PLOTLY_ASSET}"' in page
    assert "http://" not in page
    assert "https://" not in page
    async with http.get(f"{local_api}/dashboard/{PLOTLY_ASSET}") as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.headers["Content-Encoding"] == "gzip"
        assert (await response.read()).startswith(b"/**\n* plotly.js v")
    for name in ("dashboard.js", "dashboard.css"):
        async with http.get(f"{local_api}/dashboard/{name}") as response:
            assert response.status == 200
    for name in ("plotly-0.0.1.min.js", "..%2F..%2Fapp.py", "index.html"):
        async with http.get(f"{local_api}/dashboard/{name}") as response:
            assert response.status == 404
            assert "error" in await response.json()
