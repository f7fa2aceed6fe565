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

from busstats.cli.client import Client, UnexpectedAnswer
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

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 1000\r\n\r\n{")
        await writer.drain()

    async with raw_service(respond) as url:
        yield url


@pytest.mark.parametrize("command", [["jobs"], ["stats", "2024-05-01", "2024-05-01"]], ids=" ".join)
async def test_a_service_dying_mid_answer_exits_4(command: list[str]) -> None:
    async with dies_mid_answer() as url:
        run = await busstats(*command, url=url, limit_seconds=30)
    assert "Traceback" not in run.err, run
    assert run.code == 4, run


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:8080",
        "ftp://127.0.0.1:8080",
        "http://127.0.0.1:abc",
        "http://127.0.0.1:70000",
        "http://127.0.0.1:0",
        "http://[::1",
    ],
)
async def test_a_url_without_http_is_a_usage_error_not_a_traceback(url: str) -> None:
    """`--url 127.0.0.1:8080` (the scheme forgotten) once reached the aiohttp client, which
    raised an error nothing caught: a traceback and exit 1, "a job failed". It is refused with
    the arguments (exit 2), as is a port that is not a number from 1 to 65535 (once exit 4)."""
    run = await busstats("jobs", "--url", url, limit_seconds=30)
    assert "Traceback" not in run.err, run
    assert run.code == 2, run
    assert "is not an http:// or https:// URL" in run.err, run


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


Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_service(respond: Respond) -> AsyncIterator[str]:
    """A service that answers each connection with `respond`, bytes as it writes them."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            await respond(reader, writer)
        writer.close()

    sock = free_socket()
    server = await asyncio.start_server(answer, sock=sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def drip(writer: asyncio.StreamWriter, data: bytes) -> None:
    """`data` a byte every 20 ms, for at most 20 s (the client is meant to give up long
    before)."""
    for byte in data[:1000]:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.02)


async def drip_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await drip(writer, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 2000)


async def drip_chunked_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
    await drip(writer, b"1\r\n \r\n" * 200)


@pytest.mark.parametrize("respond", [drip_headers, drip_chunked_body], ids=["headers", "body"])
async def test_an_answer_drip_fed_meets_the_calls_deadline_and_exits_4(respond: Respond) -> None:
    """Each read of the socket gets a byte well within the read timeout: only a deadline on
    the call as a whole ends it (`--deadline`, hidden, 300 s by default)."""
    async with raw_service(respond) as url:
        run = await busstats("jobs", "--deadline", "1", url=url, limit_seconds=15)
    assert run.code == 4, run
    assert run.err == f"busstats: cannot reach the service: {url}: no complete answer within 1 s\n"


async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    writer.write(b"Content-Length: 4000000000\r\n\r\n[")
    await writer.drain()


@pytest.mark.parametrize("command", [["jobs"], ["stats", "2024-05-01", "2024-05-01"]], ids=" ".join)
async def test_an_answer_larger_than_the_cap_exits_3_before_reading_it(command: list[str]) -> None:
    async with raw_service(huge) as url:
        run = await busstats(*command, url=url, limit_seconds=15)
    assert run.code == 3, run
    assert run.err.endswith("an answer larger than 67,108,864 bytes\n"), run
    assert len(run.err.splitlines()) == 1, run


async def test_a_chunked_answer_past_the_cap_is_refused_as_it_comes() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):  # 100 kB, 10 times the cap below
            writer.write(b"400\r\n" + b" " * 1024 + b"\r\n")
            await writer.drain()

    def jobs(url: str) -> list[str]:
        with Client(url, max_answer=10_000) as client:
            return [job.job_id for job in client.jobs({}, 10)]

    async with raw_service(endless) as url:
        with pytest.raises(UnexpectedAnswer, match="larger than 10,000 bytes"):
            await asyncio.wait_for(asyncio.to_thread(jobs, url), 15)


async def test_stats_to_a_file_is_streamed_and_a_cut_answer_leaves_no_file(
    tmp_path: Path,
) -> None:
    csv = b"country,date\n" + b"Peru,2024-05-01\n" * 10_000

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(csv), csv))
        await writer.drain()

    output = tmp_path / "stats.csv"
    args = ["stats", "2024-05-01", "2024-05-01", "--format", "csv", "--output", str(output)]
    async with raw_service(answer) as url:
        run = await busstats(*args, url=url, limit_seconds=15)
    assert run.code == 0, run
    assert output.read_bytes() == csv
    async with dies_mid_answer() as url:  # application/json, cut short
        run = await busstats(*args[:4], "json", *args[5:], url=url, limit_seconds=15)
    assert run.code == 4, run
    assert not output.exists()


@pytest.mark.parametrize(
    "location",
    ["http://[::1/x", "ftp://127.0.0.1/jobs", "http://127.0.0.1:abc/jobs", "http://127.0.0.1:0/"],
)
async def test_a_redirect_to_what_is_not_an_http_url_exits_3(location: str) -> None:
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: %s\r\n" % location.encode())
        writer.write(b"Content-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_service(redirect) as url:
        run = await busstats("jobs", url=url, limit_seconds=15)
    assert run.code == 3, run
    assert run.err == (
        f"busstats: {url} is not answering as busstats does: GET /jobs: redirected to"
        f" {location!r}, not an http(s) URL\n"
    )


async def escapes(request: web.Request) -> web.Response:
    """A 500 whose body would recolour the terminal and forge a line of its own."""
    body = "\x1b[31mboom\nbusstats: all good\r\n" + "x" * 5000
    return web.Response(status=500, text=body)


async def test_an_error_body_is_printed_as_one_escaped_line_cut_short() -> None:
    async with fake_service(escapes) as url:
        run = await busstats("jobs", url=url, limit_seconds=15)
    assert run.code == 3, run
    assert run.err.startswith("busstats: the service answered 500: \\x1b[31mboom\\nbusstats"), run
    assert len(run.err.splitlines()) == 1, run
    assert "\x1b" not in run.err
    assert "\r" not in run.err
    assert len(run.err) == len("busstats: ") + 300 + 1, run  # 300 characters of message
    assert run.err.endswith("…\n"), run


async def test_a_2xx_the_api_does_not_answer_is_not_called_the_services_answer() -> None:
    """`ingest` expects 202: a 200 HTML page is not the API's, not a service error."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>\n<body>hello</body>\n</html>", content_type="text/html")

    async with fake_service(page) as url:
        run = await busstats("ingest", "2024-05-01", url=url, limit_seconds=15)
    assert run.code == 3, run
    assert run.err == (
        f"busstats: {url} is not answering as busstats does: POST /process-request:"
        " answered 200: '<html>\\n<body>hello</body>\\n</html>'\n"
    )


@pytest.mark.parametrize("output", ["/proc/nope/x", "{tmp}"])
async def test_an_output_that_cannot_be_written_is_a_usage_error(
    output: str, tmp_path: Path
) -> None:
    """Refused before any request: nothing listens at the URL."""
    output = output.format(tmp=tmp_path)  # a directory
    args = ["stats", "2024-05-01", "2024-05-01", "--output", output]
    run = await busstats(*args, url="http://127.0.0.1:9", limit_seconds=15)
    assert run.code == 2, run
    assert run.err.startswith(f"busstats: error: cannot write {output}: "), run
    assert len(run.err.splitlines()) == 1, run


@pytest.mark.parametrize("fmt", ["csv", "table"])
async def test_an_output_that_fails_while_written_is_one_line_not_a_traceback(fmt: str) -> None:
    """/dev/full opens, then every write fails (no space left on the device)."""
    empty = b'{"from": "2024-05-01", "to": "2024-05-01", "stats": [], "dates_without_data": []'
    body = {"csv": b"country,date\n", "table": empty + b', "incomplete_dates": []}'}[fmt]
    media = {"csv": b"text/csv", "table": b"application/json"}[fmt]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n" % media)
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    args = ["stats", "2024-05-01", "2024-05-01", "--format", fmt, "--output", "/dev/full"]
    async with raw_service(answer) as url:
        run = await busstats(*args, url=url, limit_seconds=15)
    assert run.code == 2, run
    assert run.err.startswith("busstats: error: cannot write /dev/full: "), run
    assert len(run.err.splitlines()) == 1, run
