"""The exception handlers: every error the app raises becomes a JSON `{"error": "..."}`."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from busstats.api.responses import error_response

log = logging.getLogger(__name__)


async def on_bad_request(_: Request, exc: Exception) -> Response:
    return error_response(str(exc), 400)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(message, exc.status_code)


async def on_not_found(_: Request, exc: Exception) -> Response:
    """Every "no such job / backfill" of the handlers and the orchestration: one 404."""
    return error_response(str(exc), 404)


async def on_lost_race(request: Request, exc: Exception) -> Response:
    """A conditional write that kept losing to other writers reached the request (not a
    store failure, but answered the same way: try again)."""
    log.warning(
        "lost a race with another writer during %s %s: %s", request.method, request.url.path, exc
    )
    return error_response(f"another process changed the same data meanwhile, try again: {exc}", 503)


async def on_store_error(request: Request, exc: Exception) -> Response:
    log.error("store failed during %s %s: %s", request.method, request.url.path, exc)
    return error_response(f"the store is unavailable, try again later: {exc}", 503)


async def on_internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response("internal error; the service log has the details", 500)
