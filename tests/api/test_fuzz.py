"""Property-based: whatever the query string, no route answers 5xx.

The app is driven over raw ASGI in-process, with its lifespan, so hypothesis can try hundreds
of inputs in seconds and send query strings no HTTP client would; the tests under
tests/integration/ reach the same app through uvicorn.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from busstats.api.app import create_app
from busstats.core.settings import Settings

EXAMPLES = 300

dates = st.dates().map(lambda d: d.isoformat())
date_like = st.from_regex(r"\A-?\d{1,6}-\d{1,3}-\d{1,3}\Z")
junk = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
values = st.one_of(
    dates, date_like, junk, st.just(""), st.sampled_from(["0000-01-01", "9999-12-31"])
)
names = st.sampled_from(["from", "to", "date", "source", "fr om", "", "x"])
pairs = st.lists(st.tuples(names, values), max_size=5)


def query_string(items: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in items).encode()


raw_query = st.one_of(
    pairs.map(query_string),
    st.binary(max_size=40),
    st.text(alphabet=string.printable, max_size=40).map(str.encode),
)


async def call(app: Any, method: str, path: str, query: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "app": app,
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def run_against_app(
    tmp_path: Path, check: Callable[[Callable[..., tuple[int, bytes]]], None]
) -> None:
    options = Settings(
        store=str(tmp_path / "store"),
        reference_url="http://127.0.0.1:9",  # nothing listens: jobs fail fast
        reference_attempts=1,
    )
    app = create_app(options)
    with asyncio.Runner() as runner:
        lifespan = app.router.lifespan_context(app)
        runner.run(lifespan.__aenter__())
        try:
            check(lambda method, path, query: runner.run(call(app, method, path, query)))
        finally:
            runner.run(lifespan.__aexit__(None, None, None))


def assert_client_error_or_success(status: int, body: bytes) -> None:
    assert status < 500, body
    if status >= 400:
        assert set(msgspec.json.decode(body)) == {"error"}


def fuzz_route(
    tmp_path: Path, method: str, target: Callable[[Any], tuple[str, bytes]], inputs: Any
) -> None:
    """Throw every example of `inputs`, mapped to (path, query), at one route."""

    def check(request: Callable[..., tuple[int, bytes]]) -> None:
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        )
        @given(inputs)
        def one(example: Any) -> None:
            assert_client_error_or_success(*request(method, *target(example)))

        one()

    run_against_app(tmp_path, check)


def test_country_stats_never_answers_5xx(tmp_path: Path) -> None:
    fuzz_route(tmp_path, "GET", lambda query: ("/country-stats", query), raw_query)


def test_process_request_never_answers_5xx(tmp_path: Path) -> None:
    fuzz_route(tmp_path, "POST", lambda query: ("/process-request", query), raw_query)


def test_jobs_route_never_answers_5xx(tmp_path: Path) -> None:
    fuzz_route(tmp_path, "GET", lambda job_id: ("/jobs/" + job_id, b""), st.text(max_size=60))
