"""A tiny stand-in server on its own loopback port, for upstream behaviour the simulator
has no knob for (and for "another origin" in redirect tests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from harness.servers import free_socket


@contextlib.asynccontextmanager
async def loopback_app(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[tuple[str, list[str]]]:
    """A small server on another port (another origin) answering every GET with `handler`;
    yields its URL and the paths it was asked for."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        hits.append(request.path_qs)
        return await handler(request)

    app = web.Application()
    app.router.add_get("/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = free_socket()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", hits
    finally:
        await runner.cleanup()
