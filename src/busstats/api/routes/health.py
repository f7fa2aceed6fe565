"""`GET /health`, `GET /health/ready` and `GET /metrics`: for probes and Prometheus."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from busstats.api import state
from busstats.api.operations import STORE_DOWN, Answer, operation
from busstats.api.params import NoQuery, Unchecked
from busstats.api.responses import json_response
from busstats.core import metrics
from busstats.model.payloads import Health, Readiness


@operation(
    "getHealth",
    summary="Liveness",
    description="200 while the process is up.",
    query=NoQuery,
    answers=[Answer(200, "The process is up.", Health)],
)
async def health(_: Request, __: NoQuery) -> Response:
    return json_response(Health(status="ok"))


@operation(
    "getReadiness",
    summary="Readiness",
    description="200 when the store answers too.",
    query=NoQuery,
    answers=[Answer(200, "The process and its store are up.", Readiness), STORE_DOWN],
)
async def ready(request: Request, _: NoQuery) -> Response:
    await state.store(request).check()
    return json_response(Readiness(status="ok", store="ok"))


@operation(
    "getMetrics",
    summary="Prometheus metrics",
    description="Requests by route, method and status with latencies; ingest bytes, rows,"
    " invalid rows, cities and jobs by outcome; upstream tries and retries; store errors.",
    query=Unchecked,
    answers=[Answer(200, "Prometheus text format 0.0.4.", None, "text/plain")],
)
async def get_metrics(request: Request, _: Unchecked) -> Response:
    registry = state.app_metrics(request)
    return Response(registry.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})
