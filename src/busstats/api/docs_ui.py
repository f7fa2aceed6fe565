"""`GET /openapi.json`, and `GET /docs`: Swagger UI over it, every asset served by the service
itself.

The Swagger UI files come from the pinned `offapi` package (which bundles them at its build),
so the page works with no network beyond the service: no CDN, and Swagger UI's online
validator badge is switched off. Asset URLs are relative (`docs/...`), so the page also
works behind a proxy that mounts the service under a prefix.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from busstats.api import state

ASSET_CACHE = "public, max-age=86400"


@dataclass(frozen=True)
class Asset:
    package_file: str
    media_type: str


ASSETS = {
    "swagger-ui.css": Asset("swagger_style.css", "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": Asset("swagger_bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui-standalone-preset.js": Asset("swagger_preset.js", "text/javascript; charset=utf-8"),
}

PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>busstats API</title>
    <link rel="stylesheet" href="docs/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="docs/swagger-ui-bundle.js"></script>
    <script src="docs/swagger-ui-standalone-preset.js"></script>
    <script>
      window.onload = () => {
        window.ui = SwaggerUIBundle({
          url: "openapi.json",
          dom_id: "#swagger-ui",
          presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
          layout: "StandaloneLayout",
          validatorUrl: null,
        });
      };
    </script>
  </body>
</html>
"""


@functools.cache
def _asset_bytes(package_file: str) -> bytes:
    return (resources.files("offapi") / package_file).read_bytes()


async def get_openapi(request: Request) -> Response:
    """The OpenAPI document (`busstats.api.openapi`), encoded once when the app is made."""
    return Response(state.openapi(request), media_type="application/json")


async def docs_page(_: Request) -> Response:
    return HTMLResponse(PAGE)


async def docs_asset(request: Request) -> Response:
    name: str = request.path_params["name"]
    asset = ASSETS.get(name)
    if asset is None:
        raise HTTPException(404)
    return Response(
        _asset_bytes(asset.package_file),
        media_type=asset.media_type,
        headers={"Cache-Control": ASSET_CACHE},
    )
