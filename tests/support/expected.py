"""An independent recomputation of the stats from raw upstream JSON, with the stdlib only.

It shares no code with the service, so a bug in the service's parsing or arithmetic
cannot hide in both.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from typing import Any

_DURATION = re.compile(
    r"^(-)?P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def duration_seconds(text: str) -> float | None:
    match = _DURATION.match(text)
    if not match or text.endswith(("P", "T")):
        return None
    sign, days, hours, minutes, seconds = match.groups()
    total = sum(
        float(value or 0) * unit
        for value, unit in ((days, 86400), (hours, 3600), (minutes, 60), (seconds, 1))
    )
    return -total if sign else total


def valid_row(row: Any, day: dt.date) -> tuple[int, float, bool] | None:
    """(passengers, delay seconds, accident) of a row that fits the schema, else None."""
    if not isinstance(row, dict):
        return None
    passengers, delay, accident = row.get("passengers"), row.get("delay"), row.get("accident")
    departure, bus_type = row.get("departure-time"), row.get("bus-type")
    if type(passengers) is not int or passengers < 0 or type(accident) is not bool:
        return None
    if (
        not isinstance(bus_type, str)
        or not isinstance(delay, str)
        or not isinstance(departure, str)
    ):
        return None
    try:
        moment = dt.datetime.fromisoformat(departure.replace("Z", "+00:00"))
    except ValueError:
        return None
    seconds = duration_seconds(delay)
    if seconds is None or moment.date() != day:
        return None
    return passengers, seconds, accident


def country_stats(
    raw_by_city: dict[tuple[dt.date, int], bytes], country_of: dict[int, str]
) -> list[dict[str, Any]]:
    """The `stats` list the API should answer for these raw files."""
    groups: dict[tuple[dt.date, str], list[tuple[int, float, bool]]] = defaultdict(list)
    for (day, city_id), raw in raw_by_city.items():
        for row in json.loads(raw):
            fields = valid_row(row, day)
            if fields is not None:
                groups[(day, country_of[city_id])].append(fields)
    return [
        {
            "country": country,
            "date": day.isoformat(),
            "buses_started": len(rows),
            "total_passengers": sum(r[0] for r in rows),
            "accident": any(r[2] for r in rows),
            "average_delay_minutes": sum(r[1] for r in rows) / len(rows) / 60,
        }
        for (day, country), rows in sorted(groups.items())
        if rows
    ]


def assert_same_stats(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Exact for counts and flags; the mean may differ only by float summation order."""
    assert [(s["date"], s["country"]) for s in actual] == [
        (s["date"], s["country"]) for s in expected
    ]
    for got, want in zip(actual, expected, strict=True):
        for key in ("buses_started", "total_passengers", "accident"):
            assert got[key] == want[key], (got, want)
        assert abs(got["average_delay_minutes"] - want["average_delay_minutes"]) <= 1e-9 * max(
            1.0, abs(want["average_delay_minutes"])
        ), (got, want)
