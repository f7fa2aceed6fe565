"""Validation of the API's query parameters, with messages that say what is expected."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import TypeVar

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

E = TypeVar("E", bound=StrEnum)
D = TypeVar("D")
Handler = Callable[[Request], Awaitable[Response]]
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_LONGEST_NAME_SHOWN = 60


class BadRequest(Exception):
    """The caller sent something the API cannot accept; the message says what and why."""


def accepts(*names: str) -> Callable[[Handler], Handler]:
    """Let a route take only the query parameters `names`; any other is a BadRequest.

    Example, a route that takes `from` and `to` and answers 400 to `?format=csv`:

    >>> @accepts("from", "to")
    ... async def stats(request: Request) -> Response: ...
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: Request) -> Response:
            # the route's template (/jobs/{job_id}); never request.url, which fails on a
            # query string that is not UTF-8
            route = getattr(request.scope.get("route"), "path", None) or request.scope["path"]
            only(request.query_params, names, route)
            return await handler(request)

        return checked

    return decorate


def only(params: QueryParams, accepted: Sequence[str], route: str) -> None:
    """Raise BadRequest naming the first parameter not in `accepted`, and the accepted ones."""
    unknown = next((name for name in params if name not in accepted), None)
    if unknown is None:
        return
    if len(unknown) > _LONGEST_NAME_SHOWN:
        unknown = unknown[:_LONGEST_NAME_SHOWN] + "..."
    takes = f"accepts {', '.join(accepted)}" if accepted else "accepts no query parameters"
    raise BadRequest(f"unknown query parameter {unknown!r}; {route} {takes}")


def _at_most_one(params: QueryParams, name: str) -> str | None:
    """The value of `name`, None when absent; given twice is an error."""
    values = params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"query parameter '{name}' was given {len(values)} times; give it once")
    return values[0] if values else None


def single(params: QueryParams, name: str) -> str:
    """The one value of `name`; missing, empty or repeated is an error."""
    value = _at_most_one(params, name)
    if not value:
        raise BadRequest(f"query parameter '{name}' is required, as YYYY-MM-DD")
    return value


def day(params: QueryParams, name: str) -> dt.date:
    """The date in parameter `name`, spelled exactly YYYY-MM-DD."""
    text = single(params, name)
    if _DATE.fullmatch(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise BadRequest(f"query parameter '{name}' must be a real date as YYYY-MM-DD, got {text!r}")


def optional_day(params: QueryParams, name: str) -> dt.date | None:
    """The date in parameter `name` if given, spelled exactly YYYY-MM-DD."""
    value = _at_most_one(params, name)
    if value == "":
        raise BadRequest(f"query parameter '{name}' is empty; give a YYYY-MM-DD or leave it out")
    return None if value is None else day(params, name)


def optional_int(params: QueryParams, name: str, default: int, low: int, high: int) -> int:
    """An optional whole number from `low` to `high`, both included."""
    value = _at_most_one(params, name)
    if value is None:
        return default
    if value.isascii() and value.isdigit() and len(value) <= len(str(high)):
        number = int(value)
        if low <= number <= high:
            return number
    shown = value if len(value) <= _LONGEST_NAME_SHOWN else value[:_LONGEST_NAME_SHOWN] + "..."
    raise BadRequest(
        f"query parameter '{name}' must be a whole number from {low} to {high}, got {shown!r}"
    )


def optional_text(params: QueryParams, name: str) -> str | None:
    """An optional parameter given at most once; empty counts as absent."""
    return _at_most_one(params, name) or None


def date_range(params: QueryParams, max_days: int) -> tuple[dt.date, dt.date]:
    """`from` and `to`, both inclusive, in order and at most `max_days` long."""
    start, end = day(params, "from"), day(params, "to")
    if start > end:
        raise BadRequest(f"'from' ({start}) is after 'to' ({end}); give from <= to")
    length = (end - start).days + 1
    if length > max_days:
        raise BadRequest(f"the range covers {length} days; ask for at most {max_days} days at once")
    return start, end


def optional_choice(params: QueryParams, name: str, choices: type[E], default: D) -> E | D:
    """An optional parameter that must be one of an enumeration's values."""
    value = _at_most_one(params, name)
    if value is None:
        return default
    try:
        return choices(value)
    except ValueError:
        expected = ", ".join(choice.value for choice in choices)
        raise BadRequest(
            f"query parameter '{name}' must be one of {expected}, got {value!r}"
        ) from None
