"""The HTTP API's app: the route table (`busstats.api.routes`), the lifespan that opens and
closes what the handlers use (`busstats.api.state`), the middleware and the error handlers.
Routes and payloads: docs/api.md."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from busstats.api import errors
from busstats.api.middleware import Observed
from busstats.api.openapi import openapi_document
from busstats.api.params import BadRequest
from busstats.api.routes import ROUTES
from busstats.core import metrics
from busstats.core.errors import NotFound
from busstats.core.settings import Settings
from busstats.model.payloads import JobAccepted
from busstats.orchestration.service import Service
from busstats.storage import PreconditionFailed, Store, StoreError, open_store

__all__ = ["GRACEFUL_SHUTDOWN_SECONDS", "JobAccepted", "create_app"]

GRACEFUL_SHUTDOWN_SECONDS = 3
"""How long a stopping server (SIGTERM) lets requests in flight finish before it cancels
them and stops the jobs: an upload waiting for a job slot must not hold the stop up. The
job of a cancelled upload request ends interrupted, as the other jobs do."""


def create_app(settings: Settings, store: Store | None = None) -> Starlette:
    """The ASGI app; it opens the store from `settings` unless one is handed in.

    >>> app = create_app(Settings(store="./data"))
    >>> [route.path for route in app.routes][:3]
    ['/process-request', '/jobs', '/jobs/{job_id}']
    """
    app_metrics = metrics.Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None]:
        with metrics.bound(app_metrics):  # for tasks started outside a request
            opened = store or await open_store(settings)
            service = Service(opened, settings)
            await service.open()
            app.state.service = service
            try:
                yield
            finally:
                await service.close()  # no new jobs, then the jobs end interrupted
                if store is None:
                    await opened.close()

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(Observed, registry=app_metrics)],
        exception_handlers={
            BadRequest: errors.on_bad_request,
            HTTPException: errors.on_http_error,
            NotFound: errors.on_not_found,
            StoreError: errors.on_store_error,
            PreconditionFailed: errors.on_lost_race,
            Exception: errors.on_internal_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    app.state.openapi = msgspec.json.encode(openapi_document(app.routes))
    return app
