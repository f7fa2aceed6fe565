"""`GET /`: the dashboard page, and `GET /dashboard/{name}`: its assets.

The page (`dashboard_files/`: index.html, dashboard.js, dashboard.css; shipped in the wheel) reads
the JSON API from the browser: `/country-stats` for the charts and the table, `/jobs` and
`/jobs/{id}` for the grid of dates x cities, `POST /process-request` for its ingest buttons.
The chart library is plotly.js as bundled in the pinned `plotly` Python package, served from
the installed package under a name that carries its version, so the page needs no network
beyond the service (no CDN) and a browser may keep the file for a year. Every URL in the page
is relative, so it also works behind a proxy that mounts the service under a prefix.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

PLOTLY_VERSION = importlib.metadata.version("plotly")
PLOTLY_ASSET = f"plotly-{PLOTLY_VERSION}.min.js"
"""The chart library's name in URLs: a new plotly release gets a new URL."""

PAGE_CACHE = "no-cache"  # the page and its own files change with the service
LIBRARY_CACHE = "public, max-age=31536000, immutable"  # versioned name: never changes


@dataclass(frozen=True)
class Asset:
    media_type: str
    cache: str


ASSETS = {
    "dashboard.js": Asset("text/javascript; charset=utf-8", PAGE_CACHE),
    "dashboard.css": Asset("text/css; charset=utf-8", PAGE_CACHE),
    PLOTLY_ASSET: Asset("text/javascript; charset=utf-8", LIBRARY_CACHE),
}


def _plotly_file() -> Path:
    """plotly.min.js of the installed plotly package, found without importing plotly."""
    located = importlib.metadata.distribution("plotly").locate_file(
        "plotly/package_data/plotly.min.js"
    )
    return Path(str(located))


@functools.cache
def _asset_bytes(name: str) -> bytes:
    if name == PLOTLY_ASSET:
        return _plotly_file().read_bytes()
    return (resources.files("busstats.api") / "dashboard_files" / name).read_bytes()


@functools.cache
def _gzipped(name: str) -> bytes:
    return gzip.compress(_asset_bytes(name), compresslevel=6, mtime=0)


@functools.cache
def _page() -> str:
    template = (resources.files("busstats.api") / "dashboard_files" / "index.html").read_text(
        "utf-8"
    )
    return template.replace("{{plotly}}", PLOTLY_ASSET)


async def dashboard_page(_: Request) -> Response:
    """The dashboard, e.g. http://127.0.0.1:8080/?from=2024-05-01&to=2024-05-07."""
    return HTMLResponse(_page(), headers={"Cache-Control": PAGE_CACHE})


async def dashboard_asset(request: Request) -> Response:
    """A file of the dashboard; gzip-encoded when the client accepts it (plotly.js is
    4.8 MB as is, about 1.4 MB gzipped)."""
    name: str = request.path_params["name"]
    asset = ASSETS.get(name)
    if asset is None:
        raise HTTPException(404)
    headers = {"Cache-Control": asset.cache, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(_gzipped(name), media_type=asset.media_type, headers=headers)
    return Response(_asset_bytes(name), media_type=asset.media_type, headers=headers)
