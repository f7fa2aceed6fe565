"""Hostile tests of the client commands against a service that answers junk or dies
mid-answer: the exit code must still be one of the documented ones (3 for an answer that is
not what the API sends, 4 for no complete answer), never a traceback with exit 1, which
scripts read as "a job failed"."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from harness.servers import free_socket
from tests.support.clirun import busstats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def fake_service(handler: Handler) -> AsyncIterator[str]:
    """Every route answers with `handler`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    sock = free_socket()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


async def html_page(request: web.Request) -> web.Response:
    """A proxy's error page, or another service on the port: 2xx, not JSON."""
    status = {"POST": 202, "PUT": 201}.get(request.method, 200)
    await request.read()
    return web.Response(status=status, text="<html>hello</html>", content_type="text/html")


async def wrong_shape(request: web.Request) -> web.Response:
    """JSON, but not of the API's shape."""
    status = {"POST": 202, "PUT": 201}.get(request.method, 200)
    await request.read()
    return web.json_response({"jobs": 5, "job_id": None}, status=status)


COMMANDS = [
    ["ingest", "2024-05-01"],
    ["jobs"],
    ["stats", "2024-05-01", "2024-05-01"],
    ["upload", "2024-05-01", "7", "{file}"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("handler", [html_page, wrong_shape], ids=["html", "wrong-json"])
async def test_an_answer_that_is_not_the_apis_exits_3(
    command: list[str], handler: Handler, tmp_path: Path
) -> None:
    """`upload` exits 0 today: it prints a body it cannot read "as sent" and calls it done."""
    file = tmp_path / "city.json"
    file.write_text("[]")
    args = [arg.format(file=file) for arg in command]
    async with fake_service(handler) as url:
        run = await busstats(*args, url=url, limit_seconds=30)
    assert "Traceback" not in run.err, run
    assert run.code == 3, run


@contextlib.asynccontextmanager
async def dies_mid_answer() -> AsyncIterator[str]:
    """A service that sends the headers of a 1,000-byte answer, 1 byte of it, and dies."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 1000\r\n\r\n{")
        await writer.drain()
        writer.close()

    sock = free_socket()
    server = await asyncio.start_server(answer, sock=sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("command", [["jobs"], ["stats", "2024-05-01", "2024-05-01"]], ids=" ".join)
async def test_a_service_dying_mid_answer_exits_4(command: list[str]) -> None:
    async with dies_mid_answer() as url:
        run = await busstats(*command, url=url, limit_seconds=30)
    assert "Traceback" not in run.err, run
    assert run.code == 4, run


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://127.0.0.1:8080"])
async def test_a_url_without_http_is_a_usage_error_not_a_traceback(url: str) -> None:
    """`--url 127.0.0.1:8080` (the scheme forgotten) once reached the aiohttp client, which
    raised an error nothing caught: a traceback and exit 1, "a job failed". It is refused with
    the arguments now (exit 2); a URL the client cannot send to (a port that is not a number)
    exits 4."""
    run = await busstats("jobs", "--url", url, limit_seconds=30)
    assert "Traceback" not in run.err, run
    assert run.code in (2, 4), run


@contextlib.asynccontextmanager
async def one_answer_per_connection() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A service that answers one request per connection, pages of `GET /jobs` with a `next`,
    then closes the connection without having said `Connection: close` (as a keep-alive
    connection is let go while idle); the request lines it received."""
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        seen.append(request.split(b"\r\n")[0])
        body = (
            b'{"jobs": [], "next": "/jobs?cursor=2"}'
            if len(seen) == 1
            else b'{"jobs": [], "next": null}'
        )
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    sock = free_socket()
    server = await asyncio.start_server(answer, sock=sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    finally:
        server.close()
        await server.wait_closed()


async def test_a_kept_connection_the_service_closed_is_replaced_for_the_next_get() -> None:
    async with one_answer_per_connection() as (url, seen):
        run = await busstats("jobs", url=url, limit_seconds=30)
    assert run.code == 0, run
    assert seen[0] == b"GET /jobs?limit=50 HTTP/1.1"
    assert seen[1:] == [b"GET /jobs?cursor=2 HTTP/1.1"]  # on a new connection, once


async def moved(request: web.Request) -> web.Response:
    """A proxy in front of the service that moved it from /old to /."""
    if request.path.startswith("/old/"):
        raise web.HTTPTemporaryRedirect(request.rel_url.path[4:] + f"?{request.query_string}")
    return web.json_response({"jobs": [], "next": None, "query": request.query_string})


async def test_a_redirect_is_followed_with_its_query() -> None:
    async with fake_service(moved) as url:
        run = await busstats("jobs", "--date", "2024-05-01", url=f"{url}/old", limit_seconds=30)
    assert run.code == 0, run
    assert run.out.splitlines() == ["created_at  date  status  job_id"]
