"""What each operation of the API is, declared next to its handler: `@operation(...)` makes a
handler a Starlette endpoint that decodes its query parameters (`busstats.api.params`) and
carries the operation's metadata, from which `busstats.api.openapi` builds the document.

    @operation(
        "getHealth",
        summary="Liveness",
        description="200 while the process is up.",
        answers=[Answer(200, "The process is up.", Health)],
    )
    async def health(request: Request, query: params.NoQuery) -> Response: ...

The route table (`busstats.api.routes.ROUTES`) gives each endpoint its path and method.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from busstats.api import params, state
from busstats.model.payloads import ErrorBody

Q = TypeVar("Q", bound=params.Query)
Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Q], Awaitable[Response]]

_ATTRIBUTE = "busstats_operation"


@dataclass(frozen=True)
class Answer:
    """One status an operation answers with, and its body."""

    status: int
    description: str
    body: Any = None
    """The msgspec type of a JSON body; None for `media_type` text."""
    media_type: str = "application/json"
    binary_media_types: tuple[str, ...] = ()
    """Other media types the same answer may come in (by Accept or a parameter)."""
    headers: dict[str, str] = field(default_factory=dict[str, str])
    """Response headers worth documenting, with what they say."""
    empty: bool = False
    """No body at all (304)."""
    other_bodies: tuple[Any, ...] = ()
    """Other JSON bodies the same answer may have (the schema is then a `oneOf`)."""


@dataclass(frozen=True)
class RequestBody:
    """The body an operation requires, as a msgspec-known type."""

    body: Any
    description: str
    media_type: str = "application/json"


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    description: str
    answers: tuple[Answer, ...]
    query: tuple[type[params.Query], ...]
    """The forms its query parameters take (one, usually); see `params.decode`."""
    path: type[msgspec.Struct] | None = None
    """The path parameters: a Struct whose fields are the route template's names."""
    headers: type[msgspec.Struct] | None = None
    """Request headers worth documenting: a Struct whose encode names are the headers'."""
    body: RequestBody | None = None


BAD_INPUT = Answer(
    400, "A parameter is missing, repeated or malformed; `error` says which.", ErrorBody
)
STORE_DOWN = Answer(503, "The store did not answer; try again later.", ErrorBody)


def operation(
    operation_id: str,
    *,
    summary: str,
    description: str,
    answers: Sequence[Answer],
    query: type[Q] | tuple[type[Q], ...],
    path: type[msgspec.Struct] | None = None,
    headers: type[msgspec.Struct] | None = None,
    body: RequestBody | None = None,
) -> Callable[[Handler[Q]], Endpoint]:
    """Make `handler(request, query)` an endpoint of the operation: the endpoint decodes the
    query parameters into `query` (one of its forms, when it is a tuple), answers 400 for
    anything wrong with them, and carries the operation for the OpenAPI document."""
    forms = query if isinstance(query, tuple) else (query,)
    spec = Operation(operation_id, summary, description, tuple(answers), forms, path, headers, body)

    def decorate(handler: Handler[Q]) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            # the route's template (/jobs/{job_id}); never request.url, which fails on a
            # query string that is not UTF-8
            route = getattr(request.scope.get("route"), "path", None) or request.scope["path"]
            decoded = params.decode(request.query_params, forms, route, state.settings(request))
            return await handler(request, decoded)

        setattr(endpoint, _ATTRIBUTE, spec)
        return endpoint

    return decorate


def operation_of(endpoint: object) -> Operation | None:
    """The operation an endpoint was declared with; None for a page outside the API."""
    spec = getattr(endpoint, _ATTRIBUTE, None)
    return spec if isinstance(spec, Operation) else None
