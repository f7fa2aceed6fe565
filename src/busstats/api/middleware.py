"""The request middleware: metrics and a log line per request."""

from __future__ import annotations

import time

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from busstats.core import logs, metrics


class Observed:
    """ASGI middleware: per request, the metrics by route template, method and status, and
    one log line. It also binds the app's metrics for everything the request starts (jobs
    included); see `busstats.core.metrics`."""

    def __init__(self, app: ASGIApp, registry: metrics.Metrics) -> None:
        self.app = app
        self.metrics = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with metrics.bound(self.metrics):
                await self.app(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            self.metrics.observe_request(route, scope["method"], status, seconds)
            client = scope.get("client")
            logs.log_request(
                scope["method"],
                route,
                scope["path"],
                status,
                seconds,
                f"{client[0]}:{client[1]}" if client else None,
            )


def route_template(scope: Scope) -> str:
    """The path template of the route that handled the request, e.g. `/jobs/{job_id}`."""
    route = scope.get("route")
    if isinstance(route, BaseRoute) and isinstance(path := getattr(route, "path", None), str):
        return path
    return metrics.UNMATCHED_ROUTE
