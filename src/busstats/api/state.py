"""What the lifespan puts in `app.state` (see `busstats.api.app`), typed for the handlers."""

from __future__ import annotations

from starlette.requests import Request

from busstats.core import metrics
from busstats.core.settings import Settings
from busstats.orchestration.backfills import Backfills
from busstats.orchestration.runner import JobRunner
from busstats.orchestration.schedule import Scheduler
from busstats.storage import Store


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def store(request: Request) -> Store:
    value: Store = request.app.state.store
    return value


def runner(request: Request) -> JobRunner:
    value: JobRunner = request.app.state.runner
    return value


def backfills(request: Request) -> Backfills:
    value: Backfills = request.app.state.backfills
    return value


def scheduler(request: Request) -> Scheduler:
    value: Scheduler = request.app.state.scheduler
    return value


def app_metrics(request: Request) -> metrics.Metrics:
    value: metrics.Metrics = request.app.state.metrics
    return value


def openapi(request: Request) -> bytes:
    """The encoded OpenAPI document, built once by `create_app`."""
    value: bytes = request.app.state.openapi
    return value
