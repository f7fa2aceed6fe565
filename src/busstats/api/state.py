"""What the lifespan puts in `app.state` (see `busstats.api.app`), typed for the handlers:
the settings, and the parts of the open `Service` a handler uses, each on its own."""

from __future__ import annotations

from starlette.requests import Request

from busstats.core import metrics
from busstats.core.settings import Settings
from busstats.orchestration.backfills import Backfills
from busstats.orchestration.runner import JobRunner
from busstats.orchestration.schedule import Scheduler
from busstats.orchestration.service import Service
from busstats.orchestration.uploads import Uploads
from busstats.storage import Store


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def _service(request: Request) -> Service:
    value: Service = request.app.state.service
    return value


def store(request: Request) -> Store:
    return _service(request).store


def runner(request: Request) -> JobRunner:
    return _service(request).runner


def backfills(request: Request) -> Backfills:
    return _service(request).backfills


def scheduler(request: Request) -> Scheduler:
    return _service(request).scheduler


def uploads(request: Request) -> Uploads:
    return _service(request).uploads


def app_metrics(request: Request) -> metrics.Metrics:
    value: metrics.Metrics = request.app.state.metrics
    return value


def openapi(request: Request) -> bytes:
    """The encoded OpenAPI document, built once by `create_app`."""
    value: bytes = request.app.state.openapi
    return value
