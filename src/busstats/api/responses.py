"""The API's JSON answers: a msgspec-encoded body, or `{"error": "..."}`."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from busstats.model.payloads import ErrorBody


def json_response(
    payload: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        msgspec.json.encode(payload), status_code, headers, media_type="application/json"
    )


def error_response(message: str, status_code: int) -> Response:
    return json_response(ErrorBody(message), status_code)
