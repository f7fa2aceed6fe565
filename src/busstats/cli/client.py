"""The busstats HTTP API seen from a client: the calls the `busstats` client commands make.

Every call raises `ServiceError` when the service answers an error (its `{"error": ...}`
sentence), `UnexpectedAnswer` when what answers is not the API (an HTML page, JSON of another
shape, another format than asked for) and `Unreachable` when no complete answer comes at all,
so a command maps each to its own exit code. Answers are decoded with the very types the
service encodes them with (`busstats.model`), which need only msgspec and the standard library.

The HTTP client is the standard library's `http.client`, blocking, one call at a time: a
client command makes a handful of requests one after the other, and aiohttp (with asyncio)
took most of a command's start, about 0.3 s of 0.45 (benchmarks/README.md, "CLI cold start").
Ctrl-C is a plain `KeyboardInterrupt` wherever a call waits.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Self, TypeVar
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit

import msgspec

from busstats import __version__
from busstats.cli.conventions import DEADLINE, JOBS_PAGE_LIMIT, service_url
from busstats.model.backfills import BackfillAccepted, BackfillRecord
from busstats.model.jobs import JobList, JobRecord, JobSummary
from busstats.model.payloads import ErrorBody, JobAccepted

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

STATS_MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
"""The media type the service answers `GET /country-stats` with, by `format`."""

MAX_REDIRECTS = 10
"""Redirects followed for one call (a proxy in front of the service may send some)."""
REDIRECTS = (301, 302, 303, 307, 308)
UPLOAD_CHUNK = 64 * 1024
"""Bytes of the uploaded file read and sent at a time: memory does not follow its size."""
MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The largest answer body read into memory; an answer streamed to a file has no cap."""
PATH_SAFE = "/%:@!$&'()*+,;=~"
"""What stays as it is in a request's path: `/`, escapes already made, RFC 3986's other
path characters; anything else (a space, a non-ASCII letter) is percent-encoded."""


class ServiceError(Exception):
    """The service answered with an error status; `message` is its `error` sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Unreachable(Exception):
    """No complete answer from the service: refused, reset, cut short, unknown host or timed
    out."""


T = TypeVar("T")


class UnexpectedAnswer(Exception):
    """An answer that is not the API's: not HTTP, not JSON, JSON of another shape, or another
    format than asked for (a proxy's page, another service on the port)."""


def decode_answer(body: bytes, kind: type[T], what: str) -> T:
    """`body` decoded as `kind`; UnexpectedAnswer, naming `what` was asked, if it is not one.

    >>> decode_answer(b'{"error": "no"}', ErrorBody, "GET /jobs").error
    'no'
    """
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        start = body[:60].decode("utf-8", "replace")
        raise UnexpectedAnswer(f"{what}: not the API's answer ({exc}): {start!r}") from None


class StatsAnswer(msgspec.Struct, kw_only=True):
    """The bytes of a `GET /country-stats` answer as sent, with what its headers say."""

    body: bytes
    content_type: str
    incomplete_dates: int


Origin = tuple[str, str, int]
"""Scheme, host and port: what one connection is kept open to."""


class Client:
    """A session with one busstats service: a connection kept open from one call to the next
    (and one per other origin a redirect leads to), closed at the end.

    `connect_timeout` bounds connecting (and the TLS handshake of https); `read_timeout` every
    wait for the service after that, each read and each write of the socket, as aiohttp's
    `sock_connect` and `sock_read` did. `deadline` bounds a call as a whole (its redirects,
    connecting, sending and the whole answer), however slowly the bytes come; `max_answer`
    the bytes of an answer read into memory.

    Example (not run: it needs a running service)::

        def first_job(url: str) -> str:
            with Client(url) as client:
                accepted = client.submit("2024-05-01")
                return client.job(accepted.job_id).status
    """

    def __init__(
        self,
        url: str,
        connect_timeout: float = 10,
        read_timeout: float = 300,
        deadline: float = DEADLINE,
        max_answer: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.url = url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self.max_answer = max_answer
        self._clock = _Clock(read_timeout, deadline)
        self._response_class = _timed_response(self._clock)
        self._connections: dict[Origin, http.client.HTTPConnection] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        data: BinaryIO | None = None,
        expect: tuple[int, ...] = (200,),
        check: Callable[[dict[str, str]], None] | None = None,
        into: BinaryIO | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers (names in lower case) of a successful answer; raises for
        anything else. `path` may carry a query (a page's `next`); `params` are added to it;
        `data`, an open file, is sent in chunks. `check` sees a successful answer's headers
        before its body is read (and may refuse it); with `into`, that body is written there
        as it comes (no size cap) and the body returned is empty."""
        url = f"{self.url}{path}"
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        what = f"{method} {path}"
        self._clock.start()
        for _ in range(MAX_REDIRECTS + 1):
            response = self._exchange(method, url, what, data)
            headers = {name.lower(): value for name, value in response.getheaders()}
            location = headers.get("location")
            if response.status not in REDIRECTS or location is None:
                break
            self._read(response, what)  # what is left of it, so the connection can serve again
            # as aiohttp did: 303 (and 301/302 after a POST) becomes a GET without a body
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, data = "GET", None
            try:
                url = service_url(urljoin(url, location))
            except ValueError:
                raise UnexpectedAnswer(
                    f"{what}: redirected to {location!r}, not an http(s) URL"
                ) from None
        else:
            raise UnexpectedAnswer(f"{what}: more than {MAX_REDIRECTS} redirects")
        try:
            if response.status not in expect:
                body = self._read(response, what)
                if 200 <= response.status < 300:  # a success, not the one the API answers
                    start = body[:60].decode("utf-8", "replace")
                    raise UnexpectedAnswer(f"{what}: answered {response.status}: {start!r}")
                raise ServiceError(response.status, _error_message(body, response.reason))
            if check is not None:
                check(headers)
            return self._read(response, what, into), headers
        except BaseException:
            self._close()  # an answer left half read: its connection cannot serve again
            raise

    def _exchange(
        self, method: str, url: str, what: str, data: BinaryIO | None
    ) -> http.client.HTTPResponse:
        """One request and its answer's status line and headers. Only a GET is sent again,
        once, when a connection kept from an earlier call turns out closed by the service (as
        an idle one may be); other methods always go on a connection of their own, so none is
        sent twice."""
        parts = urlsplit(url)
        default_port = 443 if parts.scheme == "https" else 80
        origin: Origin = (parts.scheme, parts.hostname or "", parts.port or default_port)
        target = quote(parts.path or "/", safe=PATH_SAFE)
        if parts.query:
            target += f"?{parts.query}"
        headers = {"Accept": "*/*", "User-Agent": f"busstats/{__version__}"}
        if parts.username is not None:  # http://user:password@host, as aiohttp sent it
            headers["Authorization"] = _basic_auth(parts.username, parts.password or "")
        if data is not None:
            headers["Content-Type"] = _media_type(data)
        for _ in range(2):
            connection, reused = self._connection(origin, url)
            if reused and method != "GET":
                connection.close()  # a connection of its own for what must not be sent twice
                connection, reused = self._connection(origin, url)
            try:
                return self._send(connection, what, target, headers, data)
            except _Stale as stale:
                connection.close()
                if not reused:
                    raise Unreachable(f"{self.url}: {stale}") from None
        raise AssertionError("the second attempt is on a new connection: never _Stale")

    def _connection(self, origin: Origin, url: str) -> tuple[http.client.HTTPConnection, bool]:
        """The connection to `origin`, connected, and whether an earlier call used it."""
        connection = self._connections.get(origin)
        if connection is not None and connection.sock is not None:
            return connection, True
        scheme, host, port = origin
        failed = f"{self.url}: Cannot connect to host {host}:{port}"
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        try:  # for https, the TLS context is made only now
            timeout = self._clock.timeout(self.connect_timeout)
            connection = kind(host, port, timeout=timeout, blocksize=UPLOAD_CHUNK)
            connection.connect()  # DNS, TCP and TLS, each step within connect_timeout
        except (http.client.InvalidURL, UnicodeError):  # a host http.client cannot send
            raise Unreachable(f"not an http(s) URL: {url.split('?')[0]}") from None
        except TimeoutError:
            if self._clock.passed():
                raise self._late() from None
            raise Unreachable(f"{failed} [timed out after {self.connect_timeout:g} s]") from None
        except OSError as exc:  # refused, unknown host, no route, TLS refused
            raise Unreachable(f"{failed} [{_reason(exc)}]") from None
        assert connection.sock is not None
        connection.response_class = self._response_class  # each read within the deadline
        self._connections[origin] = connection
        return connection, False

    def _send(
        self,
        connection: http.client.HTTPConnection,
        what: str,
        target: str,
        headers: dict[str, str],
        data: BinaryIO | None,
    ) -> http.client.HTTPResponse:
        """The answer to `what` (`METHOD /path`), its body not read yet; `_Stale` when the
        service closed the connection before a byte of answer."""
        method = what.split()[0]
        sent: OSError | None = None  # sending failed: the service may have answered already
        sock = connection.sock
        assert sock is not None
        try:
            sock.settimeout(self._clock.timeout())
            if data is None:
                connection.request(method, target, headers=headers)
            else:
                data.seek(0)  # a redirect sends the file again, from its start
                size = os.fstat(data.fileno()).st_size
                connection.request(
                    method,
                    target,
                    body=_TimedFile(data, sock, self._clock),
                    headers={**headers, "Content-Length": str(size)},
                )
        except http.client.InvalidURL as exc:  # a `next` or `Location` with control characters
            raise UnexpectedAnswer(f"{what}: cannot ask for {target!r}: {exc}") from None
        except TimeoutError:
            raise self._timed_out() from None
        except OSError as exc:
            sent = exc
        try:
            return connection.getresponse()
        except http.client.RemoteDisconnected:  # closed with no answer at all
            raise _Stale(_reason(sent) if sent else "Server disconnected") from None
        except http.client.HTTPException as exc:  # not HTTP as http.client reads it
            raise UnexpectedAnswer(f"{what}: not an HTTP answer: {exc!r}") from None
        except TimeoutError:
            raise self._timed_out() from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise _Stale(_reason(sent or exc)) from None
        except OSError as exc:
            raise Unreachable(f"{self.url}: {_reason(sent or exc)}") from None

    def _read(
        self, response: http.client.HTTPResponse, what: str, into: BinaryIO | None = None
    ) -> bytes:
        """The answer's body, read in chunks, each read within the call's deadline: in memory
        up to `max_answer` bytes (UnexpectedAnswer beyond), or written to `into`."""
        length = response.getheader("content-length", "")
        if into is None and length.strip().isdigit() and int(length) > self.max_answer:
            response.close()
            raise self._too_large(what)
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := response.read(UPLOAD_CHUNK):
                size += len(chunk)
                if into is not None:
                    _write(into, chunk)
                    continue
                if size > self.max_answer:
                    response.close()
                    raise self._too_large(what)
                chunks.append(chunk)
            if response.length:  # the connection closed before Content-Length bytes came
                raise Unreachable(
                    f"{self.url}: the answer was cut short"
                    f" ({size} bytes, {response.length} more expected)"
                )
        except http.client.IncompleteRead as exc:
            raise Unreachable(
                f"{self.url}: the answer was cut short ({_incomplete(exc)})"
            ) from None
        except http.client.HTTPException as exc:  # a chunked body that is not one
            raise UnexpectedAnswer(f"{what}: not an HTTP answer: {exc!r}") from None
        except TimeoutError:
            raise self._timed_out() from None
        except OSError as exc:
            raise Unreachable(f"{self.url}: {_reason(exc)}") from None
        return b"".join(chunks)

    def _too_large(self, what: str) -> UnexpectedAnswer:
        return UnexpectedAnswer(f"{what}: an answer larger than {self.max_answer:,} bytes")

    def _timed_out(self) -> Unreachable:
        if self._clock.passed():
            return self._late()
        return Unreachable(f"{self.url}: no answer for {self.read_timeout:g} s (timed out)")

    def _late(self) -> Unreachable:
        return Unreachable(f"{self.url}: no complete answer within {self.deadline:g} s")

    def submit(self, day: str) -> JobAccepted:
        """Queue the ingest of one date (`POST /process-request`)."""
        body, _ = self._call("POST", "/process-request", {"date": day}, expect=(202,))
        return decode_answer(body, JobAccepted, "POST /process-request")

    def start_backfill(self, first: str, last: str) -> BackfillAccepted:
        """Queue the ingest of every date from `first` to `last` as one backfill
        (`POST /process-request?from=&to=`); the service creates the jobs a few at a time."""
        params = {"from": first, "to": last}
        body, _ = self._call("POST", "/process-request", params, expect=(202,))
        return decode_answer(body, BackfillAccepted, "POST /process-request")

    def backfill(self, backfill_id: str) -> BackfillRecord:
        """The backfill's record now (`GET /backfills/{id}`)."""
        path = f"/backfills/{_segment(backfill_id)}"
        body, _ = self._call("GET", path)
        return decode_answer(body, BackfillRecord, f"GET {path}")

    def cancel(self, some_id: str) -> BackfillRecord | JobRecord:
        """Cancel the backfill with this id (`DELETE /backfills/{id}`), else the job with this
        id (`DELETE /jobs/{id}`), as both ids look alike; the record the service answered."""
        path = f"/backfills/{_segment(some_id)}"
        try:
            body, _ = self._call("DELETE", path, expect=(200, 202))
        except ServiceError as exc:
            if exc.status != 404:
                raise
        else:
            return decode_answer(body, BackfillRecord, f"DELETE {path}")
        path = f"/jobs/{_segment(some_id)}"
        body, _ = self._call("DELETE", path, expect=(200, 202))
        return decode_answer(body, JobRecord, f"DELETE {path}")

    def job(self, job_id: str) -> JobRecord:
        """The job's record now (`GET /jobs/{id}`)."""
        path = f"/jobs/{_segment(job_id)}"
        body, _ = self._call("GET", path)
        return decode_answer(body, JobRecord, f"GET {path}")

    def jobs(
        self, filters: dict[str, str], limit: int, page_size: int = JOBS_PAGE_LIMIT
    ) -> Iterator[JobSummary]:
        """Up to `limit` jobs, newest first, following `next` across pages of `page_size`."""
        params: dict[str, str] | None = {**filters, "limit": str(min(limit, page_size))}
        path = "/jobs"
        left = limit
        while left > 0:
            body, _ = self._call("GET", path, params)
            page = decode_answer(body, JobList, "GET /jobs")
            yield from page.jobs[:left]
            left -= len(page.jobs)
            if page.next is None:
                return
            path, params = page.next, None  # `next` carries the filters and the cursor

    def country_stats(
        self, start: str, end: str, fmt: str, into: BinaryIO | None = None
    ) -> StatsAnswer:
        """`GET /country-stats` in `fmt` (json, csv, parquet or arrow), bytes as sent: in
        `body` (at most `max_answer` of them), or written to `into` as they come (`body`
        empty), once the headers say they are of `fmt`."""
        params = {"from": start, "to": end, "format": fmt}

        def check(headers: dict[str, str]) -> None:
            content_type = headers.get("content-type", "")
            if content_type.split(";")[0].strip() != STATS_MEDIA_TYPES.get(fmt):
                raise UnexpectedAnswer(
                    f"GET /country-stats: asked for {fmt},"
                    f" the answer is {content_type or 'untyped'}"
                )

        body, headers = self._call("GET", "/country-stats", params, check=check, into=into)
        try:
            incomplete = int(headers.get("busstats-incomplete-dates", "0"))
        except ValueError:
            incomplete = 0
        content_type = headers.get("content-type", "")
        return StatsAnswer(body=body, content_type=content_type, incomplete_dates=incomplete)

    def upload(self, day: str, city_id: str, file: Path, params: dict[str, str]) -> bytes:
        """`PUT /raw/{date}/{city_id}` with the file's bytes streamed as the body (its size as
        `Content-Length`, `UPLOAD_CHUNK` bytes read at a time); the job record the service
        answers (JSON, as sent, checked to be a job record)."""
        path = f"/raw/{_segment(day)}/{_segment(city_id)}"
        with file.open("rb") as stream:
            body, _ = self._call("PUT", path, params or None, data=stream, expect=(201,))
        decode_answer(body, JobRecord, f"PUT {path}")
        return body


class _Clock:
    """The deadline of the call under way, which every wait on the socket keeps to."""

    def __init__(self, read_timeout: float, deadline: float) -> None:
        self.read_timeout = read_timeout
        self.deadline = deadline
        self._end = time.monotonic() + deadline

    def start(self) -> None:
        """A call begins: its deadline is `deadline` seconds from now."""
        self._end = time.monotonic() + self.deadline

    def passed(self) -> bool:
        return time.monotonic() >= self._end

    def timeout(self, wait: float | None = None) -> float:
        """The socket timeout of the next wait: `wait` (the read timeout by default), or
        the time left if less; TimeoutError if none is left."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return min(self.read_timeout if wait is None else wait, left)


class _TimedReader(io.RawIOBase):
    """The socket read as a file (as `socket.makefile` does), each read within the time the
    clock leaves."""

    def __init__(self, sock: socket.socket, clock: _Clock) -> None:
        super().__init__()
        self._sock = sock
        self._clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._sock.settimeout(self._clock.timeout())
        return self._sock.recv_into(buffer)


def _timed_response(clock: _Clock) -> type[http.client.HTTPResponse]:
    """An `HTTPResponse` that reads its status line, headers and body through a
    `_TimedReader` on `clock`: a service drip-feeding any part of it meets the deadline."""

    class TimedResponse(http.client.HTTPResponse):
        def __init__(
            self,
            sock: socket.socket,
            debuglevel: int = 0,
            method: str | None = None,
            url: str | None = None,
        ) -> None:
            super().__init__(sock, debuglevel, method, url)
            self.fp.close()  # the plain socket file http.client made, unread
            self.fp = io.BufferedReader(_TimedReader(sock, clock))

    return TimedResponse


class _TimedFile:
    """The uploaded file as http.client reads it, chunk by chunk: before each chunk is sent,
    the socket's timeout is what the clock leaves."""

    def __init__(self, data: BinaryIO, sock: socket.socket, clock: _Clock) -> None:
        self._data = data
        self._sock = sock
        self._clock = clock

    def read(self, size: int = -1) -> bytes:
        self._sock.settimeout(self._clock.timeout())
        return self._data.read(size)


class CannotWrite(Exception):
    """Writing an answer to the file it streams to failed (a full disk, a closed pipe);
    `error` says why."""

    def __init__(self, error: OSError) -> None:
        super().__init__(_reason(error))
        self.error = error


def _write(into: BinaryIO, chunk: bytes) -> None:
    try:
        into.write(chunk)
    except OSError as exc:
        raise CannotWrite(exc) from None


class _Stale(Exception):
    """The service closed the connection without a byte of answer (an idle keep-alive
    connection it let go, if the connection served an earlier call)."""


def _segment(text: str) -> str:
    """`text` as one path segment: a `/`, `?` or space in an id stays part of it.

    >>> _segment("2024-05-01"), _segment("a/b c")
    ('2024-05-01', 'a%2Fb%20c')
    """
    return quote(text, safe="")


def _basic_auth(user: str, password: str) -> str:
    import base64  # only for a URL with credentials

    pair = f"{unquote(user)}:{unquote(password)}".encode("latin-1", "replace")
    return f"Basic {base64.b64encode(pair).decode()}"


def _media_type(data: BinaryIO) -> str:
    """The uploaded file's type from its name, as aiohttp sent it (the service ignores it)."""
    import mimetypes  # only for an upload

    return mimetypes.guess_type(data.name)[0] or "application/octet-stream"


def _reason(exc: BaseException) -> str:
    """What went wrong in words: an OSError's text without its number.

    >>> _reason(ConnectionRefusedError(111, "Connection refused"))
    'Connection refused'
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _incomplete(exc: http.client.IncompleteRead) -> str:
    got = f"{len(exc.partial)} bytes"
    return f"{got}, {exc.expected} more expected" if exc.expected is not None else got


def _error_message(body: bytes, reason: str | None) -> str:
    try:
        return msgspec.json.decode(body, type=ErrorBody).error
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:300] or (reason or "no reason given")


def _poll(client: Client, job_ids: list[str], views: dict[str, JobRecord]) -> None:
    """Ask again for every job of `job_ids` not yet seen finished, one after the other."""
    for job_id in job_ids:
        if not (job_id in views and views[job_id].finished):
            view = client.job(job_id)
            views[view.job_id] = view


def wait_for(
    client: Client, job_ids: list[str], interval: float = 0.5
) -> Iterator[list[JobRecord]]:
    """Every job's record, polled each `interval` seconds until all have finished; yields the
    list after each round (the last one has every job finished)."""
    views: dict[str, JobRecord] = {}
    while True:
        _poll(client, job_ids, views)
        yield [views[job_id] for job_id in job_ids]
        if all(view.finished for view in views.values()):
            return
        time.sleep(interval)


def follow_backfill(
    client: Client, backfill_id: str, interval: float = 0.5
) -> Iterator[tuple[BackfillRecord, list[JobRecord]]]:
    """The backfill's record and the records of the jobs it has created, polled each
    `interval` seconds until the backfill and every one of its jobs have ended. A job that has
    ended is not asked for again.

    Example (not run: it needs a running service)::

        def statuses(client: Client, backfill_id: str) -> list[str]:
            for backfill, jobs in follow_backfill(client, backfill_id):
                pass
            return [job.status for job in jobs]
    """
    views: dict[str, JobRecord] = {}
    while True:
        backfill = client.backfill(backfill_id)
        job_ids = [job.job_id for job in backfill.jobs]
        _poll(client, job_ids, views)
        jobs = [views[job_id] for job_id in job_ids]
        yield backfill, jobs
        if backfill.finished and all(job.finished for job in jobs):
            return
        time.sleep(interval)
