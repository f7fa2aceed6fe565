"""Bodies the API answers with that belong to no other module; the OpenAPI document is
generated from these same types (with `JobRecord` and `CountryStats`)."""

from __future__ import annotations

import msgspec


class JobAccepted(msgspec.Struct):
    job_id: str
    date: str
    status: str
    status_url: str


class ErrorBody(msgspec.Struct):
    """Every 4xx and 5xx: what is wrong and what is expected."""

    error: str


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    store: str
