"""The OpenAPI 3.1 document of the API, generated from the route table and the msgspec types
the handlers decode and send.

It walks the routes (`busstats.api.routes.ROUTES`): each endpoint declared with
`@operation` (`busstats.api.operations`) gives its summary, description and answers; its
path and method come from the route. The parameters are the fields of the operation's
parameter types, and every body is a msgspec type the handlers also encode: their JSON
Schemas come from `msgspec.json.schema_components`, so a field added to `JobRecord` or a
parameter added to `JobsQuery` appears in the document without anyone editing it. The rules
between parameters, which OpenAPI cannot express, are stated in each operation's
description. Routes without an operation (the docs and dashboard pages, `/openapi.json`
itself) are not in it.

>>> document = openapi_document()
>>> document["openapi"], sorted(document["paths"])[:2]
('3.1.0', ['/backfills/{backfill_id}', '/country-stats'])
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import msgspec
from starlette.routing import BaseRoute, Route

from busstats.api import params
from busstats.api.operations import Answer, Operation, operation_of
from busstats.api.routes import ROUTES

REF_TEMPLATE = "#/components/schemas/{name}"
Where = Literal["query", "path", "header"]


def openapi_document(routes: Sequence[BaseRoute] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the operations among `routes` (by default the app's)."""
    documented = list(_operations(routes))
    types: list[Any] = []
    for _, _, op in documented:
        types += [*op.query, *(t for t in (op.path, op.headers) if t is not None)]
        types += [a.body for a in op.answers if a.body is not None]
        types += [other for a in op.answers for other in a.other_bodies]
        types += [op.body.body] if op.body is not None else []
    types = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    schema_of = dict(zip(map(id, types), schemas, strict=True))
    parameter_types = {t for _, _, op in documented for t in (*op.query, op.path, op.headers)}
    parameters = {id(t): _component(schema_of[id(t)], components) for t in parameter_types if t}

    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in documented:
        forms = [parameters[id(form)] for form in op.query]
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "description": _description(op),
            "parameters": [
                *(_parameters([parameters[id(op.path)]], "path") if op.path else []),
                *_parameters(forms, "query"),
                *(_parameters([parameters[id(op.headers)]], "header") if op.headers else []),
            ],
            "responses": {str(a.status): _response(a, schema_of) for a in op.answers},
        }
        if op.body is not None:
            item["requestBody"] = {
                "description": op.body.description,
                "required": True,
                "content": {op.body.media_type: {"schema": schema_of[id(op.body.body)]}},
            }
        paths.setdefault(path, {})[method] = item
    for name in {_name(schema_of[id(t)]) for t in parameter_types if t}:
        del components[name]  # parameters are described in place, not as schemas
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "busstats",
            "version": "1",
            "description": "Collects daily bus data per city and answers per-country,"
            " per-day statistics. Every bad input is a 4xx with a JSON body"
            ' `{"error": "..."}` that says what is wrong.',
        },
        "paths": paths,
        "components": {"schemas": components},
    }


def _operations(routes: Sequence[BaseRoute]) -> Iterator[tuple[str, str, Operation]]:
    """(path, method, operation) of every route whose endpoint is an operation."""
    for route in routes:
        if not isinstance(route, Route) or (op := operation_of(route.endpoint)) is None:
            continue
        declared = (
            [] if op.path is None else [f.encode_name for f in msgspec.structs.fields(op.path)]
        )
        if sorted(declared) != sorted(route.param_convertors):
            raise ValueError(
                f"{route.path}: the path type of {op.operation_id} declares {declared}"
            )
        for method in sorted((route.methods or set[str]()) - {"HEAD"}):
            yield route.path, method.lower(), op


def _name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[1]


def _component(ref: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    component: dict[str, Any] = components[_name(ref)]
    return component


def _description(op: Operation) -> str:
    """The operation's description, and the rules between its parameters."""
    rules = [params.forms_rule(op.query), *(form.RULES for form in op.query)]
    rules = [rule for rule in dict.fromkeys(rules) if rule]
    if not rules:
        return op.description
    return f"{op.description}\n\nParameter rules: {' '.join(rules)}"


def _parameters(forms: Sequence[dict[str, Any]], where: Where) -> list[dict[str, Any]]:
    """The parameters of a Struct's schema (of several, for the forms of a query): required
    when every form requires them."""
    described: dict[str, dict[str, Any]] = {}
    for form in forms:
        for name, property_schema in form["properties"].items():
            schema = _not_null(property_schema)
            described.setdefault(
                name,
                {
                    "name": name,
                    "in": where,
                    "required": where == "path"
                    or all(name in f.get("required", ()) for f in forms),
                    "description": schema.pop("description", ""),
                    "schema": schema,
                },
            )
    return list(described.values())


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without `null`: a parameter left out is absent, never null."""
    schema = copy.deepcopy(schema)
    if schema.get("default", ...) is None:
        del schema["default"]
    branches: list[dict[str, Any]] = schema.pop("anyOf", [])
    others = [branch for branch in branches if branch != {"type": "null"}]
    if len(branches) > len(others) == 1:
        return schema | others[0]
    if branches:
        schema["anyOf"] = branches
    return schema


def _response(answer: Answer, schema_of: dict[int, Any]) -> dict[str, Any]:
    described: dict[str, Any] = {"description": answer.description}
    if answer.headers:
        described["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in answer.headers.items()
        }
    if answer.empty:
        return described
    schema = {"type": "string"} if answer.body is None else schema_of[id(answer.body)]
    if answer.other_bodies:
        schema = {"oneOf": [schema, *(schema_of[id(other)] for other in answer.other_bodies)]}
    content = {answer.media_type: {"schema": schema}}
    for media_type in answer.binary_media_types:
        content[media_type] = {"schema": {"type": "string", "contentMediaType": media_type}}
    return described | {"content": content}
