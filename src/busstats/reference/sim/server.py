"""The simulator's HTTP API: the reference server's routes, encoding and quirks, plus faults."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec
from aiohttp import web

from busstats.reference.sim.data import CITIES, ROWS_PER_BATCH, generate_rows, rng_for
from busstats.reference.sim.hostile import BAD_CITY_ENTRIES, gzip_bomb


class Fault(StrEnum):
    """What a chosen city's stats call does instead of answering normally."""

    ERROR = "error"  # 500 with a JSON error body, every time
    FLAKY = "flaky"  # 503 on the first call for a city and day, then normal answers
    NOT_FOUND = "not-found"  # 404, as for a city upstream does not know
    HTML = "html"  # 200 with an HTML page, as a misconfigured proxy would send
    NOT_JSON = "not-json"  # 200 with text that is not JSON at all
    TRUNCATED = "truncated"  # 200 with the JSON array cut off half-way
    JUNK_ROWS = "junk-rows"  # 200 with a valid array in which some rows break the schema
    HANG = "hang"  # accepts the request and never answers
    ENDLESS = "endless"  # 200, valid rows trickling in (100 every 0.05 s) that never end
    HUGE = "huge"  # 200, a valid array of HUGE_ROWS rows (about 120 MB), as fast as it goes
    GZIP_BOMB = "gzip-bomb"  # 200, about 1 MB of gzip that expands to 1 GiB
    REDIRECT = "redirect"  # 302 to SimulatorConfig.redirect_url, another origin
    MOVED = "moved"  # 301 to the same path under /moved on this server, which answers there


HUGE_ROWS = 1_000_000
ENDLESS_BATCH_ROWS = 100
ENDLESS_PAUSE_SECONDS = 0.05


JUNK_ROWS = [
    '{"departure-time": "2024-13-99T00:00:00", "bus-type": "X", "passengers": 1, '
    '"delay": "P0D", "accident": false}',
    '{"departure-time": "{day}T01:00:00", "bus-type": "X", "passengers": -4, '
    '"delay": "P0D", "accident": false}',
    '{"departure-time": "{day}T02:00:00", "bus-type": "X", "passengers": "many", '
    '"delay": "P0D", "accident": false}',
    '{"departure-time": "{day}T03:00:00", "bus-type": "X", "passengers": 3, '
    '"delay": "soon", "accident": false}',
    '{"departure-time": "{day}T04:00:00", "bus-type": "X", "passengers": 3, "accident": false}',
    '{"departure-time": "{day}T05:00:00", "bus-type": "X", "passengers": 3, '
    '"delay": "P0D", "accident": "no"}',
]
"""Rows a JUNK_ROWS city appends to its normal rows; `{day}` is the date asked for."""


@dataclass(slots=True)
class SimulatorConfig:
    seed: int = 0
    rows: tuple[int, int] = (1000, 3000)
    """Rows per city and day: drawn evenly from this inclusive range, per city and day."""
    max_latency: float = 4.2
    """Each stats call waits a deterministic min_latency..max_latency seconds before answering."""
    min_latency: float = 0.0
    date_param: str = "datetime"
    """`datetime` answers 400 to a plain date, like the original; `date` the reverse."""
    mixed_durations: bool = False
    """Spell delays in varied ISO 8601 forms rather than only upstream's `PT…S`/`P0D`."""
    faults: dict[int, Fault] = field(default_factory=dict[int, Fault])
    rows_by_city: dict[int, int] = field(default_factory=dict[int, int])
    """Fixed row counts for chosen cities, e.g. a few huge ones among upstream-sized ones."""
    redirect_url: str = "http://127.0.0.1:9/private"
    """Where a `redirect` city sends the client: another origin, never the simulator."""
    gzip: bool = False
    """Send stats answers gzip-encoded (Content-Encoding), as a proxy in front may."""
    bad_city_entries: bool = False
    """Append BAD_CITY_ENTRIES (negative, string, float, bool, > int64 ids, ...) to /cities."""


@dataclass(slots=True)
class SimulatorState:
    """What the simulator saw, for tests and benchmarks to check."""

    in_flight: int = 0
    max_in_flight: int = 0
    stats_calls: int = 0
    date_rejections: int = 0
    """Stats calls answered 400 because `date` was in the other spelling."""
    calls_by_city: Counter[int] = field(default_factory=Counter[int])


STATE = web.AppKey("state", SimulatorState)
_PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def latency_for(config: SimulatorConfig, day: dt.date, city_id: int) -> float:
    low = min(config.min_latency, config.max_latency)
    return rng_for(config.seed, day, city_id, "latency").uniform(low, config.max_latency)


def rows_for(config: SimulatorConfig, day: dt.date, city_id: int) -> int:
    if city_id in config.rows_by_city:
        return config.rows_by_city[city_id]
    low, high = config.rows
    return rng_for(config.seed, day, city_id, "count").randint(low, high)


def _validation_error(request: web.Request, message: str) -> web.Response:
    body = {
        "status_code": 400,
        "detail": f"Validation failed for GET {request.path_qs}",
        "extra": [{"message": message, "key": "date", "source": "query"}],
    }
    return web.json_response(body, status=400)


def _parse_date(value: str, date_param: str) -> tuple[dt.date, str] | str:
    """The day and the time-zone suffix to echo, or the validation message."""
    if date_param == "date":
        if not _PLAIN_DATE.match(value):
            return "Invalid date format"
        try:
            return dt.date.fromisoformat(value), ""
        except ValueError:
            return "Invalid date format"
    try:
        moment = msgspec.convert(value, dt.datetime)
    except msgspec.ValidationError:
        return "Invalid RFC3339 encoded datetime"
    suffix = ""
    if moment.tzinfo is not None:
        suffix = "Z" if value.endswith(("Z", "z")) else value[-6:]
    return moment.date(), suffix


def create_simulator(config: SimulatorConfig | None = None) -> web.Application:
    config = config or SimulatorConfig()
    state = SimulatorState()
    by_id = {city.id: city for city in CITIES}
    app = web.Application()
    app[STATE] = state

    async def cities(_: web.Request) -> web.Response:
        body = msgspec.json.encode(
            [{"id": c.id, "name": c.name, "country": c.country} for c in CITIES]
        )
        if config.bad_city_entries:
            body = body[:-1] + ("," + ",".join(BAD_CITY_ENTRIES) + "]").encode()
        return web.Response(body=body, content_type="application/json")

    async def stats(request: web.Request) -> web.StreamResponse:
        try:
            city_id = int(request.match_info["city_id"])
        except ValueError:
            return web.json_response({"status_code": 400, "detail": "bad city id"}, status=400)
        if city_id not in by_id:
            return web.json_response({"status_code": 404, "detail": "Not Found"}, status=404)
        parsed = _parse_date(request.query.get("date", ""), config.date_param)
        if isinstance(parsed, str):
            state.date_rejections += 1
            return _validation_error(request, parsed)
        day, suffix = parsed
        state.stats_calls += 1
        state.calls_by_city[city_id] += 1
        first_call = state.calls_by_city[city_id] == 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            await asyncio.sleep(latency_for(config, day, city_id))
            return await _answer(request, config, city_id, day, suffix, first_call)
        except ConnectionResetError:  # the client went away mid-answer
            return web.Response(status=499)
        finally:
            state.in_flight -= 1

    app.router.add_get("/cities", cities)
    app.router.add_get("/cities/{city_id}/stats", stats)
    app.router.add_get("/moved/cities/{city_id}/stats", stats)
    return app


async def _answer(
    request: web.Request,
    config: SimulatorConfig,
    city_id: int,
    day: dt.date,
    suffix: str,
    first_call: bool,
) -> web.StreamResponse:
    fault = config.faults.get(city_id)
    if fault is Fault.ERROR:
        return web.json_response(
            {"status_code": 500, "detail": "Internal Server Error"}, status=500
        )
    if fault is Fault.FLAKY and first_call:
        return web.json_response({"status_code": 503, "detail": "Service Unavailable"}, status=503)
    if fault is Fault.NOT_FOUND:
        return web.json_response({"status_code": 404, "detail": "Not Found"}, status=404)
    if fault is Fault.HTML:
        return web.Response(text="<html><body>Bad gateway</body></html>", content_type="text/html")
    if fault is Fault.NOT_JSON:
        return web.Response(text="rows: none today", content_type="application/json")
    if fault is Fault.HANG:
        await asyncio.Event().wait()
    if fault is Fault.REDIRECT:
        return web.Response(status=302, headers={"Location": config.redirect_url})
    if fault is Fault.MOVED and not request.path.startswith("/moved/"):
        return web.Response(status=301, headers={"Location": "/moved" + request.path_qs})
    if fault is Fault.GZIP_BOMB:
        body = await asyncio.to_thread(gzip_bomb)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return web.Response(body=body, headers=headers)
    rows = rows_for(config, day, city_id)
    if fault is Fault.HUGE:
        rows = HUGE_ROWS
    endless = fault is Fault.ENDLESS
    pieces = generate_rows(
        config.seed,
        day,
        city_id,
        10**15 if endless else rows,
        time_suffix=suffix,
        mixed_durations=config.mixed_durations,
        batch_rows=ENDLESS_BATCH_ROWS if endless else ROWS_PER_BATCH,
    )
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    if config.gzip:
        response.enable_compression(web.ContentCoding.gzip)
    await response.prepare(request)
    for piece in pieces:
        if endless:
            await asyncio.sleep(ENDLESS_PAUSE_SECONDS)
        if fault is Fault.TRUNCATED and piece != "[":
            await response.write(piece[: len(piece) // 2].encode())
            break
        if fault is Fault.JUNK_ROWS and piece == "]":
            junk = ",".join(row.replace("{day}", day.isoformat()) for row in JUNK_ROWS)
            await response.write(("," + junk).encode())
        await response.write(piece.encode())
    await response.write_eof()
    return response
