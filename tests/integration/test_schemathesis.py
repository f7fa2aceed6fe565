"""schemathesis against a live uvicorn: generated requests from /openapi.json, a fixed and
deterministic example budget per operation; no 5xx, and every answer fits the document
(status code, content type and body schema). Operations come from the served document; the
parametrization names the ones the API declares so a missing one fails rather than vanishes.

schemathesis calls the API synchronously (requests), so the API and the simulator run in
an event loop of their own, on a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from busstats.api.openapi import openapi_document
from busstats.core.settings import Settings
from busstats.reference.sim import SimulatorConfig
from harness.servers import api_server, simulator

EXAMPLES = 25
"""Per operation: POST /process-request thus starts at most this many (tiny) jobs."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class ApiThread:
    """The API (local store) and a fast simulator, served from a thread's own event loop."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._main, name="api", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = SimulatorConfig(rows=(1, 5), max_latency=0.0)
        async with simulator(config) as refsim:
            settings = Settings(
                store=str(self._folder / "store"), reference_url=refsim.url, executor="threads"
            )
            async with api_server(settings) as url:
                self.url = url
                self._ready.set()
                await self._stop.wait()

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(timeout=30), "the API did not start within 30 s"
        if self._error is not None:
            raise self._error
        return self.url

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the API did not stop within 30 s"


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ApiThread(tmp_path_factory.mktemp("schemathesis")) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(live_api: str) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json")


OPERATIONS = [
    f"{method.upper()} {path}"
    for path, item in openapi_document()["paths"].items()
    for method in item
]
"""Every operation of the route table, as schemathesis labels them."""


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_operation_answers_within_its_documented_schema(
    api_schema: BaseSchema, live_api: str, label: str
) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is missing from the served document"

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def answers_within_schema(case: Case) -> None:
        case.call_and_validate(base_url=live_api, checks=CHECKS, timeout=90)

    answers_within_schema()
