"""An upstream of many cities that all had no bus on the day asked: `/cities` lists `count`
cities, and each city's stats are `[]`. The simulator has no such knob (its 30 cities are
fixed), and an empty day per city is all this figure needs, so a tiny aiohttp app serves it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec
from aiohttp import web

from harness.servers import free_socket

COUNTRIES = 50


def city_list(count: int) -> bytes:
    """`count` cities spread over 50 countries, in upstream's shape.

    >>> msgspec.json.decode(city_list(2))[1]
    {'id': 1, 'name': 'Empty 1', 'country': 'Country 1'}
    """
    return msgspec.json.encode(
        [
            {"id": n, "name": f"Empty {n}", "country": f"Country {n % COUNTRIES}"}
            for n in range(count)
        ]
    )


@contextlib.asynccontextmanager
async def empty_upstream(count: int) -> AsyncIterator[str]:
    """Serve it on a free loopback port; yields its base URL."""
    cities = city_list(count)

    async def list_cities(_: web.Request) -> web.Response:
        return web.Response(body=cities, content_type="application/json")

    async def no_buses(_: web.Request) -> web.Response:
        return web.Response(body=b"[]", content_type="application/json")

    app = web.Application()
    app.router.add_get("/cities", list_cities)
    app.router.add_get("/cities/{city_id}/stats", no_buses)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = free_socket()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
