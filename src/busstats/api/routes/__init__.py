"""The route table: every path and method of the app, and the endpoint that answers it.

The endpoints of the JSON API are declared with `busstats.api.operations.operation`, one
module per resource; `busstats.api.openapi` builds the document from this table. The pages
(`/docs`, the dashboard) and `/openapi.json` itself are not operations of the API.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from busstats.api.dashboard import dashboard_asset, dashboard_page
from busstats.api.docs_ui import docs_asset, docs_page, get_openapi
from busstats.api.routes import backfills, health, jobs, process, schedule, stats, uploads

ROUTES: list[BaseRoute] = [
    Route("/process-request", process.process_request, methods=["POST"]),
    Route("/jobs", jobs.list_jobs, methods=["GET"]),
    Route("/jobs/{job_id}", jobs.get_job, methods=["GET"]),
    Route("/jobs/{job_id}", jobs.cancel_job, methods=["DELETE"]),
    Route("/backfills/{backfill_id}", backfills.get_backfill, methods=["GET"]),
    Route("/backfills/{backfill_id}", backfills.cancel_backfill, methods=["DELETE"]),
    Route("/country-stats", stats.get_country_stats, methods=["GET"]),
    Route("/raw/{date}/{city_id}", uploads.put_raw, methods=["PUT"]),
    Route("/schedule", schedule.get_schedule, methods=["GET"]),
    Route("/schedule/start", schedule.start_schedule, methods=["POST"]),
    Route("/schedule/stop", schedule.stop_schedule, methods=["POST"]),
    Route("/health", health.health, methods=["GET"]),
    Route("/health/ready", health.ready, methods=["GET"]),
    Route("/metrics", health.get_metrics, methods=["GET"]),
    Route("/openapi.json", get_openapi, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
    Route("/docs/{name}", docs_asset, methods=["GET"]),
    Route("/", dashboard_page, methods=["GET"]),
    Route("/dashboard/{name}", dashboard_asset, methods=["GET"]),
]
