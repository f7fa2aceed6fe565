"""/openapi.json is a valid OpenAPI 3.1 document that covers the whole contract and is built
from the handlers' types; /docs is served whole by the service, with no asset from elsewhere."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec
import pytest
from openapi_spec_validator import validate
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from busstats.api.app import create_app
from busstats.api.openapi import openapi_document
from busstats.api.operations import Answer, operation
from busstats.api.params import NoQuery
from busstats.core.settings import Settings
from busstats.model.backfills import BackfillAccepted, BackfillRecord
from busstats.model.jobs import CityReport, JobRecord
from busstats.model.payloads import JobAccepted
from busstats.model.stats import CountryDay, CountryStats
from tests.support.inprocess import BASE_URL, app_client

NOT_IN_DOCUMENT = {"/openapi.json", "/docs", "/docs/{name}", "/", "/dashboard/{name}"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        store=str(tmp_path / "store"), reference_url="http://127.0.0.1:9", executor="threads"
    )
    async with app_client(settings) as client:
        yield client


@pytest.fixture
async def served(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def body_schema(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = document["paths"][path][method]["responses"][str(status)]
    return resolve(document, response["content"]["application/json"]["schema"])


def field_names(struct: type[msgspec.Struct]) -> set[str]:
    return {field.encode_name for field in msgspec.structs.fields(struct)}


async def test_the_served_document_is_valid_openapi_3_1(served: dict[str, Any]) -> None:
    validate(served)
    assert served["openapi"].startswith("3.1")
    assert served == openapi_document()


def test_every_route_of_the_app_is_in_the_document() -> None:
    document = openapi_document()
    routes = [r for r in create_app(Settings()).routes if isinstance(r, Route)]
    documented = {(path, m.upper()) for path, item in document["paths"].items() for m in item}
    for route in routes:
        if route.path in NOT_IN_DOCUMENT:
            continue
        for method in (route.methods or set()) - {"HEAD"}:
            assert (route.path, method) in documented, f"{method} {route.path} is undocumented"


def test_the_contract_routes_parameters_and_status_codes_are_all_there() -> None:
    document = openapi_document()
    expected = {
        ("/process-request", "post"): ({"date", "from", "to"}, {"202", "400", "503"}),
        ("/jobs/{job_id}", "get"): ({"job_id"}, {"200", "404", "503"}),
        ("/jobs/{job_id}", "delete"): ({"job_id"}, {"200", "404", "409", "503"}),
        ("/backfills/{backfill_id}", "get"): ({"backfill_id"}, {"200", "404", "503"}),
        ("/backfills/{backfill_id}", "delete"): (
            {"backfill_id"},
            {"200", "202", "404", "409", "503"},
        ),
        ("/jobs", "get"): (
            {"date", "from", "to", "status", "limit", "cursor"},
            {"200", "400", "503"},
        ),
        ("/country-stats", "get"): (
            {"from", "to", "source", "format", "If-None-Match"},
            {"200", "304", "400", "406", "422", "503"},
        ),
        ("/health", "get"): (set[str](), {"200"}),
        ("/health/ready", "get"): (set[str](), {"200", "503"}),
        ("/metrics", "get"): (set[str](), {"200"}),
    }
    for (path, method), (params, statuses) in expected.items():
        operation = document["paths"][path][method]
        assert {p["name"] for p in operation["parameters"]} == params, path
        assert set(operation["responses"]) == statuses, path
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                error = resolve(document, response["content"]["application/json"]["schema"])
                assert error["required"] == ["error"]
                assert error["properties"]["error"] == {"type": "string"}
    required = {
        p["name"]: p["required"] for p in document["paths"]["/country-stats"]["get"]["parameters"]
    }
    assert required == {
        "from": True,
        "to": True,
        "source": False,
        "format": False,
        "If-None-Match": False,
    }
    content = document["paths"]["/country-stats"]["get"]["responses"]["200"]["content"]
    assert set(content) == {
        "application/json",
        "text/csv",
        "application/vnd.apache.parquet",
        "application/vnd.apache.arrow.stream",
    }


def test_response_fields_follow_the_handlers_types() -> None:
    """Generated, not hand-kept: each body's properties are exactly its struct's fields."""
    document = openapi_document()
    one_of = body_schema(document, "/process-request", "post", 202)["oneOf"]
    accepted, backfill = (resolve(document, schema) for schema in one_of)
    assert set(accepted["properties"]) == field_names(JobAccepted)
    assert set(accepted["properties"]) == {"job_id", "date", "status", "status_url"}
    assert set(backfill["properties"]) == field_names(BackfillAccepted)
    assert {"backfill_id", "from", "to", "status_url", "jobs"} <= set(backfill["properties"])
    record = body_schema(document, "/backfills/{backfill_id}", "get", 200)
    assert set(record["properties"]) == field_names(BackfillRecord)
    assert {"dates_done", "dates_failed", "dates_left", "progress", "reason"} <= set(
        record["properties"]
    )

    job = body_schema(document, "/jobs/{job_id}", "get", 200)
    assert set(job["properties"]) == field_names(JobRecord)
    assert {"status", "created_at", "started_at", "finished_at", "cities"} <= set(job["properties"])
    assert resolve(document, job["properties"]["status"])["enum"] == sorted(
        ["queued", "running", "succeeded", "partial", "failed"]
    )
    city = resolve(document, job["properties"]["cities"]["items"])
    assert set(city["properties"]) == field_names(CityReport)
    assert {"status", "rows", "raw_bytes", "invalid_rows", "invalid_examples", "error"} <= set(
        city["properties"]
    )
    assert "duration_seconds" in city["properties"]

    stats = body_schema(document, "/country-stats", "get", 200)
    assert set(stats["properties"]) == {
        "from",
        "to",
        "stats",
        "dates_without_data",
        "incomplete_dates",
    }
    assert set(stats["properties"]) == field_names(CountryStats)
    day = resolve(document, stats["properties"]["stats"]["items"])
    assert set(day["properties"]) == field_names(CountryDay)
    assert day["properties"]["average_delay_minutes"] == {"type": "number"}
    assert day["properties"]["buses_started"] == {"type": "integer"}
    assert day["properties"]["cities_counted"] == {"type": "integer"}
    gap = resolve(document, stats["properties"]["incomplete_dates"]["items"])
    assert set(gap["properties"]) == {"date", "cities_listed", "cities_counted", "reason"}


def test_a_field_added_to_a_type_appears_in_the_document() -> None:
    class Extended(CountryDay, frozen=True):
        buses_late: int

    @operation(
        "x", summary="x", description="x", query=NoQuery, answers=[Answer(200, "x", list[Extended])]
    )
    async def x(request: Request, _: NoQuery) -> Response:
        raise NotImplementedError

    document = openapi_document([Route("/x", x, methods=["GET"])])
    assert "buses_late" in document["components"]["schemas"]["Extended"]["properties"]


class AssetRefs(HTMLParser):
    """Every URL the page makes the browser load: script src, link href, img src..."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "srcset", "data-url"} and value:
                self.urls.append(value)


async def test_docs_page_and_every_asset_it_loads_come_from_the_service(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "text/html"
    page = response.text
    refs = AssetRefs()
    refs.feed(page)
    scripts = re.findall(r"url:\s*\"([^\"]+)\"", page)
    assert scripts == ["openapi.json"]
    assert "validatorUrl: null" in page  # Swagger UI's badge would call validator.swagger.io
    urls = refs.urls + scripts
    assert len(urls) >= 4
    for url in urls:
        absolute = urljoin(f"{BASE_URL}/docs", url)
        assert urlsplit(absolute).netloc == urlsplit(BASE_URL).netloc, url
        asset = await api.get(absolute)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    for link in re.findall(r"https?://[^\s\"'<>]+", page):
        assert urlsplit(link).netloc == urlsplit(BASE_URL).netloc, link


async def test_an_unknown_docs_asset_is_a_json_404(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs/../../etc/passwd")).status_code == 404
    assert (await api.get("/docs/%2E%2E/%2E%2E/etc/passwd")).status_code == 404
    response = await api.get("/docs/nothing.js")
    assert response.status_code == 404
    assert set(response.json()) == {"error"}
