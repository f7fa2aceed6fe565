"""Client for the external reference server (its API: docs/reference-server.md).

Upstream is not trusted to behave: every body is capped in size (counted after any
Content-Encoding is undone), every city in wall time (retries included), redirects are followed
only on the reference server's own origin, and what upstream wrote reaches an error message
only as a short, printable excerpt.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import aiohttp
import stamina
from yarl import URL

from busstats.core import metrics
from busstats.core.excerpt import excerpt
from busstats.core.settings import DateParam, Settings
from busstats.model.cities import City, RejectedCity
from busstats.reference.cities import CityList, CityListError, parse_city_list

__all__ = [
    "BodyTooLarge",
    "City",
    "CityList",
    "DateSpelling",
    "Download",
    "DownloadLimits",
    "RedirectRefused",
    "ReferenceClient",
    "RejectedCity",
    "RetryPolicy",
    "TookTooLong",
    "TransientError",
    "UpstreamError",
    "spell_date",
]

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
CITY_LIST_MAX_BYTES = 16 << 20
"""The city list is about 2 KB; a bigger one is not a city list."""
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
T = TypeVar("T")


class UpstreamError(Exception):
    """The reference server failed, timed out or answered something unusable."""


class TransientError(UpstreamError):
    """A failure worth another try: no connection, a timeout, a cut-off body or a 5xx/429."""


class BodyTooLarge(UpstreamError):
    """A body grew past `DownloadLimits.max_bytes` (after decompression); not retried."""


class TookTooLong(UpstreamError):
    """A city's download, retries included, ran past `DownloadLimits.max_seconds`."""


class RedirectRefused(UpstreamError):
    """Upstream redirected to another origin (or in circles); the target is never fetched."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter between attempts, as stamina computes it."""

    attempts: int = 4
    wait_initial: float = 0.5
    wait_max: float = 8.0


@dataclass(frozen=True, slots=True)
class DownloadLimits:
    """Caps on one city's download: wall time over all its attempts, and decoded body size.

    The temp file a download writes never holds more than `max_bytes`.
    """

    max_seconds: float = 3600.0
    max_bytes: int = 8 << 30


@dataclass(frozen=True, slots=True)
class Download:
    size: int
    """Bytes of the decoded body, as written to the file."""
    sha256: str
    """SHA-256 of those bytes."""


class DateSpelling:
    """The `date` spelling the reference server accepts, remembered for the whole process.

    Create one per process and hand it to every `ReferenceClient`: in `auto` mode only the
    first job learns the spelling (a `400` per city it asks at once); later jobs start with
    the one that worked, and still switch if the server changes its mind.

    >>> spelling = DateSpelling(DateParam.AUTO)
    >>> [form.value for form in spelling.candidates()]
    ['date', 'datetime']
    >>> spelling.learn(DateParam.DATETIME)
    >>> [form.value for form in spelling.candidates()]
    ['datetime', 'date']
    >>> [form.value for form in DateSpelling(DateParam.DATE).candidates()]
    ['date']
    """

    def __init__(self, configured: DateParam) -> None:
        self._auto = configured is DateParam.AUTO
        self._current = DateParam.DATE if self._auto else configured

    def candidates(self) -> list[DateParam]:
        """Spellings to try in order: the one believed right, then (in `auto`) the other."""
        if not self._auto:
            return [self._current]
        other = DateParam.DATETIME if self._current is DateParam.DATE else DateParam.DATE
        return [self._current, other]

    def learn(self, form: DateParam) -> None:
        """Remember the spelling the server just accepted."""
        self._current = form


def spell_date(day: dt.date, form: DateParam) -> str:
    """The `date` query value in the spelling a deployment wants.

    >>> spell_date(dt.date(2024, 5, 1), DateParam.DATETIME)
    '2024-05-01T00:00:00'
    """
    if form is DateParam.DATETIME:
        return dt.datetime.combine(day, dt.time()).isoformat()
    return day.isoformat()


class ReferenceClient:
    """Reads the city list and cities' days from the reference server, within limits.

    Example (inside a job; `spelling` is the process's one `DateSpelling`):

        client = ReferenceClient(session, "https://reference.example", spelling)
        listed = await client.cities()
        with open(path, "wb") as file:
            download = await client.download_day(listed.cities[0].id, day, file)
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        date_spelling: DateSpelling,
        retry: RetryPolicy | None = None,
        limits: DownloadLimits | None = None,
    ) -> None:
        self._session = session
        self._retry = retry or RetryPolicy()
        self._limits = limits or DownloadLimits()
        self._base_url = base_url.rstrip("/")
        self._origin = URL(self._base_url).origin()
        self._shown_base = str(URL(self._base_url).with_user(None))
        """For logs: the base URL without credentials."""
        self._spelling = date_spelling

    @classmethod
    def from_settings(
        cls, settings: Settings, session: aiohttp.ClientSession, spelling: DateSpelling
    ) -> ReferenceClient:
        """A client of `settings.reference_url` with the settings' retries and per-city
        limits: what every place running city work (the job runner, a Dask worker) builds.

        `spelling` is shared by every client of one process: the date parameter it learns
        once spares later jobs a wasted `400`.

        Example (not run: it needs the process's session)::

            settings = Settings()
            spelling = DateSpelling(settings.reference_date_param)
            client = ReferenceClient.from_settings(settings, resources.session, spelling)
        """
        retry = RetryPolicy(
            attempts=settings.reference_attempts,
            wait_initial=settings.reference_backoff_seconds,
            wait_max=max(8.0, settings.reference_backoff_seconds),
        )
        limits = DownloadLimits(settings.city_max_seconds, settings.city_max_bytes)
        return cls(session, settings.reference_url, spelling, retry, limits)

    async def cities(self) -> CityList:
        """The cities upstream lists; malformed entries are set aside in `rejected`.

        Raises UpstreamError when the list cannot be had or is no JSON array at all.
        """

        async def fetch() -> bytes:
            buffer = io.BytesIO()
            max_bytes = min(self._limits.max_bytes, CITY_LIST_MAX_BYTES)
            async with self._get("/cities", {}, "GET /cities") as response:
                await _raise_for_status(response, "GET /cities")
                await _stream_into(response, buffer, "GET /cities", max_bytes)
            return buffer.getvalue()

        body = await self._within_time_limit(self._retrying(fetch, "city list"), "the city list")
        try:
            return parse_city_list(body)
        except CityListError as exc:
            raise UpstreamError(f"GET /cities sent {exc}") from exc

    async def download_day(self, city_id: int, day: dt.date, dest: BinaryIO) -> Download:
        """Stream one city's day into `dest` (decoded JSON), retrying transient failures.

        Raises UpstreamError, or the subclass naming a cap (BodyTooLarge, TookTooLong,
        RedirectRefused); `dest` is then left empty.
        """

        async def attempt() -> Download:
            _empty(dest)
            return await self._download_once(city_id, day, dest)

        try:
            return await self._within_time_limit(
                self._retrying(attempt, f"city {city_id}"), f"city {city_id}'s download"
            )
        except BaseException:
            _empty(dest)
            raise

    async def _download_once(self, city_id: int, day: dt.date, dest: BinaryIO) -> Download:
        forms = self._spelling.candidates()
        path = f"/cities/{city_id}/stats"
        for attempt, form in enumerate(forms):
            query = spell_date(day, form)
            what = f"GET {path}?date={query}"
            async with self._get(path, {"date": query}, what) as response:
                if response.status == 400 and attempt + 1 < len(forms):
                    continue  # this deployment may want the other spelling
                await _raise_for_status(response, what)
                self._spelling.learn(form)
                return await _stream_into(response, dest, what, self._limits.max_bytes)
        raise AssertionError("unreachable: the last form always returns or raises")

    async def _within_time_limit(self, work: Awaitable[T], subject: str) -> T:
        limit = self._limits.max_seconds
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await work
        except TimeoutError:
            if not deadline.expired():
                raise
            raise TookTooLong(
                f"{subject} took longer than {limit:g} s, retries included "
                "(BUSSTATS_CITY_MAX_SECONDS); stopped"
            ) from None

    @contextlib.asynccontextmanager
    async def _get(
        self, path: str, params: dict[str, str], what: str
    ) -> AsyncGenerator[aiohttp.ClientResponse]:
        """`session.get` that follows redirects only on the reference server's origin, and
        whose connection failures, timeouts and broken bodies, while connecting or while the
        caller reads, surface as TransientError."""
        url = URL(self._base_url + path).with_query(params)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with self._session.get(url, allow_redirects=False) as response:
                    if response.status not in REDIRECT_STATUSES:
                        yield response
                        return
                    url = self._redirect_target(response, what)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"{what} failed: {excerpt(repr(exc), 200)}") from exc
        raise RedirectRefused(f"{what} was redirected more than {MAX_REDIRECTS} times")

    def _redirect_target(self, response: aiohttp.ClientResponse, what: str) -> URL:
        location = response.headers.get("Location", "")
        try:
            target = response.url.join(URL(location))
        except ValueError:
            target = None
        if target is None or not target.is_absolute() or target.origin() != self._origin:
            log.warning(
                "%s (%s) answered %d with Location %r, another origin: not followed",
                what,
                self._shown_base,
                response.status,
                excerpt(location),
            )
            raise RedirectRefused(
                f"{what} answered {response.status}: redirected to another origin (not followed)"
            )
        return target

    async def _retrying(self, call: Callable[[], Awaitable[T]], subject: str) -> T:
        policy = self._retry
        try:
            async for attempt in stamina.retry_context(
                on=TransientError,
                attempts=policy.attempts,
                timeout=None,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_initial,
            ):
                last = attempt.num >= policy.attempts
                with attempt, metrics.upstream_try(TransientError, last=last):
                    try:
                        return await call()
                    except TransientError as exc:
                        self._log_failed_attempt(subject, attempt.num, exc)
                        raise
        except TransientError as exc:
            raise UpstreamError(f"{exc} (gave up after {policy.attempts} attempts)") from exc
        raise AssertionError("unreachable: stamina returns or raises")

    def _log_failed_attempt(self, subject: str, number: int, exc: TransientError) -> None:
        attempts = self._retry.attempts
        outcome = "retrying" if number < attempts else "giving up"
        log.warning(
            "reference server %s, %s: attempt %d/%d failed, %s: %s",
            self._shown_base,
            subject,
            number,
            attempts,
            outcome,
            exc,
        )


def _empty(dest: BinaryIO) -> None:
    """Make `dest` empty, positioned at its start. A file that is empty already is left
    untruncated: on ext4 a truncate to zero makes closing the file start its write-back
    (`auto_da_alloc`), which made the close and the removal of a fresh temporary file cost
    about 1.5 ms instead of 0.1 ms, on the event loop, for each city."""
    if dest.seek(0, io.SEEK_END):
        dest.seek(0)
        dest.truncate()


async def _raise_for_status(response: aiohttp.ClientResponse, what: str) -> None:
    if response.status == 200:
        return
    detail = await _error_excerpt(response)
    error = TransientError if response.status >= 500 or response.status == 429 else UpstreamError
    raise error(f"{what} answered {response.status}: {detail}")


async def _error_excerpt(response: aiohttp.ClientResponse) -> str:
    """The start of an error body, short and printable, to quote in the job record."""
    try:
        body = await response.content.read(1024)
    except (aiohttp.ClientError, TimeoutError):
        return "(the body could not be read)"
    return excerpt(body)


async def _stream_into(
    response: aiohttp.ClientResponse, dest: BinaryIO, what: str, max_bytes: int
) -> Download:
    """Copy the decoded body into `dest`; `dest` never grows past `max_bytes`."""
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    length = response.content_length
    if not encoded and length is not None and length > max_bytes:
        raise _too_large(what, max_bytes, announced=length)
    size = 0
    digest = hashlib.sha256()
    try:
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            if size + len(chunk) > max_bytes:
                raise _too_large(what, max_bytes)
            dest.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(
            f"{what} broke off after {size} bytes: {excerpt(repr(exc), 200)}"
        ) from exc
    return Download(size, digest.hexdigest())


def _too_large(what: str, max_bytes: int, announced: int | None = None) -> BodyTooLarge:
    cap = f"the cap of {max_bytes:,} bytes ({max_bytes / 2**20:.4g} MiB, BUSSTATS_CITY_MAX_MB)"
    if announced is None:
        return BodyTooLarge(f"{what} sent more than {cap}, counted after decompression; stopped")
    return BodyTooLarge(f"{what} announced {announced:,} bytes, more than {cap}; not read")
