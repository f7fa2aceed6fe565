"""The API in this process, with its lifespan, reached through `httpx.ASGITransport`: no socket,
no uvicorn. For the tests of the HTTP contract (tests/api/), where a real socket is not the
point."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from busstats.api.app import create_app
from busstats.core.settings import Settings
from busstats.storage import Store

BASE_URL = "http://testserver"


@contextlib.asynccontextmanager
async def app_client(
    settings: Settings, store: Store | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app over `settings` (and `store`, if given): the app's lifespan
    runs on entry and on exit, as uvicorn runs it.

    City work runs in threads unless `settings` say otherwise: tests of the contract start no
    worker process."""
    app = create_app(settings, store)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL, timeout=60
        ) as client,
    ):
        yield client
