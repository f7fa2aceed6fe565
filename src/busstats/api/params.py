"""Request parameters as msgspec types, one per operation, and the one decoder of a query
string into them, with messages that say what is expected.

A parameter type is a `Query`: each field is a query parameter (its encode name is the
parameter's name), with its bounds, pattern or enumeration declared on its type
(`msgspec.Meta`), and its description for the OpenAPI document. `decode` reads a query
string into one:

- a parameter the type does not declare is refused first, naming the ones it accepts;
- a parameter given twice is refused;
- an empty value counts as left out for text; a required parameter left out "is required";
  any other empty value is refused;
- a value is converted by its field's type: a date spelled exactly YYYY-MM-DD, a whole
  number in ASCII digits within its bounds, one of an enumeration's values, text matching
  its pattern;
- then the type's `check` applies the rules between its parameters, which `RULES` states
  in words for the operation's description.

An operation may take one of several forms (a date, or a range): `decode` picks the form
whose parameters were given, and refuses a query that mixes two.

>>> from starlette.datastructures import QueryParams
>>> from busstats.core.settings import Settings
>>> decode(QueryParams("from=2024-05-01&to=2024-05-02"), [DateRange], "/x", Settings())
DateRange(first=datetime.date(2024, 5, 1), last=datetime.date(2024, 5, 2))
>>> decode(QueryParams("to=2024-05-01"), [DateRange], "/x", Settings())
Traceback (most recent call last):
...
busstats.api.params.BadRequest: query parameter 'from' is required, as YYYY-MM-DD
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, ClassVar, TypeVar, cast

import msgspec
import msgspec.inspect as mi
from starlette.datastructures import QueryParams

from busstats.core.settings import Settings

_LONGEST_SHOWN = 60
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"

Day = Annotated[
    dt.date,
    msgspec.Meta(extra_json_schema={"pattern": DATE_PATTERN, "examples": ["2024-05-01"]}),
]
"""A calendar date, spelled exactly YYYY-MM-DD."""


class BadRequest(Exception):
    """The caller sent something the API cannot accept; the message says what and why."""


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """The query parameters of an operation (this one takes none)."""

    RULES: ClassVar[str] = ""
    """The rules between the parameters that `check` applies, in words: the OpenAPI document
    states them in the operation's description (OpenAPI cannot express them)."""
    REFUSES_UNKNOWN: ClassVar[bool] = True
    """Whether a parameter the type does not declare is a BadRequest."""

    def check(self, settings: Settings) -> None:
        """Apply the rules between the parameters; a broken one is a BadRequest."""


class NoQuery(Query, frozen=True):
    """Takes no query parameters: any is a BadRequest."""


class Unchecked(Query, frozen=True):
    """Reads no query parameter and refuses none (a scraper may add its own)."""

    REFUSES_UNKNOWN = False


def in_order(first: dt.date, last: dt.date) -> None:
    """Refuse `from` after `to`."""
    if first > last:
        raise BadRequest(f"'from' ({first}) is after 'to' ({last}); give from <= to")


class DateRange(Query, frozen=True):
    """A range of days, both included."""

    RULES = "`from` <= `to`, and the range covers at most BUSSTATS_MAX_RANGE_DAYS days."

    first: Annotated[Day, msgspec.Meta(description="First day, as YYYY-MM-DD.")] = msgspec.field(
        name="from"
    )
    last: Annotated[Day, msgspec.Meta(description="Last day (inclusive), as YYYY-MM-DD.")] = (
        msgspec.field(name="to")
    )

    def check(self, settings: Settings) -> None:
        in_order(self.first, self.last)
        length = (self.last - self.first).days + 1
        if length > settings.max_range_days:
            raise BadRequest(
                f"the range covers {length} days; "
                f"ask for at most {settings.max_range_days} days at once"
            )


Q = TypeVar("Q", bound=Query)


def decode(params: QueryParams, forms: Sequence[type[Q]], route: str, settings: Settings) -> Q:
    """The parameters of `params` as the one of `forms` they are given for (the first when
    none is), checked by its rules; anything wrong is a BadRequest that says what."""
    accepted = list(dict.fromkeys(name for form in forms for name in _fields(form)))
    if all(form.REFUSES_UNKNOWN for form in forms):
        _only(params, accepted, route)
    form = _form(params, forms)
    fields = _fields(form)
    values = {spec.attribute: _value(params, spec) for spec in fields.values()}
    query = form(**{name: value for name, value in values.items() if value is not _DEFAULT})
    query.check(settings)
    return query


def _only(params: QueryParams, accepted: Sequence[str], route: str) -> None:
    """Refuse the first parameter not in `accepted`, naming the accepted ones."""
    unknown = next((name for name in params if name not in accepted), None)
    if unknown is None:
        return
    if len(unknown) > _LONGEST_SHOWN:
        unknown = unknown[:_LONGEST_SHOWN] + "..."
    takes = f"accepts {', '.join(accepted)}" if accepted else "accepts no query parameters"
    raise BadRequest(f"unknown query parameter {unknown!r}; {route} {takes}")


def _form(params: QueryParams, forms: Sequence[type[Q]]) -> type[Q]:
    """The form whose own parameters were given."""
    own = _own_names(forms)
    given = [
        form for form, names in zip(forms, own, strict=True) if any(n in params for n in names)
    ]
    if len(given) > 1:
        raise BadRequest(f"give either {' or '.join(map(_and, own))}, not both")
    return given[0] if given else forms[0]


def forms_rule(forms: Sequence[type[Query]]) -> str:
    """The rule of an operation with several forms, in words for its description."""
    if len(forms) < 2:
        return ""
    own = [" and ".join(f"`{name}`" for name in names) for names in _own_names(forms)]
    return f"Give either {' or '.join(own)}, not both."


def _own_names(forms: Sequence[type[Query]]) -> list[list[str]]:
    """Per form, the names of its parameters that not every form has."""
    names = [list(_fields(form)) for form in forms]
    common = set[str](names[0]).intersection(*names[1:])
    return [[name for name in form if name not in common] for form in names]


def _and(names: Sequence[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


@dataclass(frozen=True)
class _Field:
    """What `decode` needs to know of one field of a Query."""

    name: str
    """The parameter's name (the field's encode name)."""
    attribute: str
    required: bool
    kind: mi.Type
    """The value's type, with Optional and metadata taken off."""
    expected: str | None
    """For text with a pattern: what it must be, in words (`msgspec.Meta(extra=...)`)."""


_DEFAULT = object()
"""Left out: the field keeps its default."""


@functools.cache
def _fields(form: type[Query]) -> dict[str, _Field]:
    """The fields of `form` by parameter name, in declaration order."""
    info = mi.type_info(form)
    assert isinstance(info, mi.StructType)
    fields: dict[str, _Field] = {}
    for field in info.fields:
        kind, extra = _unwrapped(field.type)
        assert isinstance(kind, mi.DateType | mi.IntType | mi.EnumType | mi.StrType), (
            f"{form.__name__}.{field.name}: a query parameter is a date, a whole number, "
            "an enumeration or text"
        )
        expected = extra.get("expected")
        fields[field.encode_name] = _Field(
            field.encode_name,
            field.name,
            field.required,
            kind,
            expected if isinstance(expected, str) else None,
        )
    return fields


def _unwrapped(kind: mi.Type) -> tuple[mi.Type, dict[str, Any]]:
    """The type under metadata and `| None`, and the metadata's `extra` merged."""
    extra: dict[str, Any] = {}
    while True:
        if isinstance(kind, mi.Metadata):
            extra |= cast("dict[str, Any]", kind.extra or {})
            kind = kind.type
        elif isinstance(kind, mi.UnionType):
            others = [t for t in kind.types if not isinstance(t, mi.NoneType)]
            assert len(others) == 1, "a query parameter has one type (or None)"
            kind = others[0]
        else:
            return kind, extra


def _value(params: QueryParams, field: _Field) -> Any:
    """The converted value of one parameter, or _DEFAULT when it was left out."""
    name = field.name
    values = params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"query parameter '{name}' was given {len(values)} times; give it once")
    text = values[0] if values else None
    if text == "" and (isinstance(field.kind, mi.StrType) or field.required):
        text = None  # empty text counts as left out; so does an empty required parameter
    if text is None:
        if field.required:
            hint = ", as YYYY-MM-DD" if isinstance(field.kind, mi.DateType) else ""
            raise BadRequest(f"query parameter '{name}' is required{hint}")
        return _DEFAULT
    return _converted(text, field)


def _converted(text: str, field: _Field) -> Any:
    name, kind = field.name, field.kind
    if isinstance(kind, mi.DateType):
        if text == "":
            raise BadRequest(
                f"query parameter '{name}' is empty; give a YYYY-MM-DD or leave it out"
            )
        try:
            return msgspec.convert(text, dt.date)
        except msgspec.ValidationError:
            raise BadRequest(
                f"query parameter '{name}' must be a real date as YYYY-MM-DD, got {text!r}"
            ) from None
    if isinstance(kind, mi.IntType):
        low, high = _bounds(kind)
        if text.isascii() and text.isdigit() and len(text) <= len(str(high)):
            number = int(text)
            if low <= number <= high:
                return number
        shown = text if len(text) <= _LONGEST_SHOWN else text[:_LONGEST_SHOWN] + "..."
        raise BadRequest(
            f"query parameter '{name}' must be a whole number from {low} to {high}, got {shown!r}"
        )
    if isinstance(kind, mi.EnumType):
        choices: type[Enum] = kind.cls
        try:
            return choices(text)
        except ValueError:
            expected = ", ".join(str(choice.value) for choice in choices)
            raise BadRequest(
                f"query parameter '{name}' must be one of {expected}, got {text!r}"
            ) from None
    assert isinstance(kind, mi.StrType)
    if kind.pattern is not None and not re.fullmatch(kind.pattern, text):
        expected = field.expected or f"text matching {kind.pattern}"
        raise BadRequest(f"query parameter '{name}' must be {expected}, got {text!r}")
    return text


def _bounds(kind: mi.IntType) -> tuple[int, int]:
    assert kind.ge is not None, "a whole-number parameter has bounds"
    assert kind.le is not None, "a whole-number parameter has bounds"
    return kind.ge, kind.le
