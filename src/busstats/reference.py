"""Client for the external reference server (API in DESIGN.md)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, BinaryIO, TypeVar

import aiohttp
import msgspec
import stamina

from busstats import metrics
from busstats.config import DateParam

CHUNK_SIZE = 1 << 20
T = TypeVar("T")


class ReferenceError(Exception):
    """The reference server failed, timed out or answered something unusable."""


class TransientError(ReferenceError):
    """A failure worth another try: no connection, a timeout, a cut-off body or a 5xx/429."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter between attempts, as stamina computes it."""

    attempts: int = 4
    wait_initial: float = 0.5
    wait_max: float = 8.0


@dataclass(frozen=True, slots=True)
class Download:
    size: int
    sha256: str


class City(msgspec.Struct, frozen=True):
    id: Annotated[int, msgspec.Meta(ge=0)]
    name: str
    country: str


def spell_date(day: dt.date, form: DateParam) -> str:
    """The `date` query value in the spelling a deployment wants."""
    if form is DateParam.DATETIME:
        return dt.datetime.combine(day, dt.time()).isoformat()
    return day.isoformat()


async def _snippet(response: aiohttp.ClientResponse) -> str:
    """The start of an error body, to quote in the job record."""
    try:
        body = await response.content.read(300)
    except (aiohttp.ClientError, TimeoutError):
        return "(the body could not be read)"
    return body.decode("utf-8", "replace").strip()


class ReferenceClient:
    """One instance per ingest job; it learns which `date` spelling the server wants."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        date_param: DateParam,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._session = session
        self._retry = retry or RetryPolicy()
        self._base_url = base_url.rstrip("/")
        self._auto = date_param is DateParam.AUTO
        self._form = DateParam.DATE if self._auto else date_param

    async def cities(self) -> list[City]:
        body = await self._retrying(self._cities_body)
        try:
            cities = msgspec.json.decode(body, type=list[City])
        except msgspec.DecodeError as exc:
            raise ReferenceError(f"GET /cities sent no valid list of cities: {exc}") from exc
        ids = [city.id for city in cities]
        if len(set(ids)) != len(ids):
            raise ReferenceError("GET /cities listed the same city id twice")
        return cities

    async def _cities_body(self) -> bytes:
        async with self._get("/cities", {}) as response:
            await _raise_for_status(response, "GET /cities")
            return await response.read()

    async def download_day(self, city_id: int, day: dt.date, dest: BinaryIO) -> Download:
        """Stream one city's day into `dest` exactly as sent, retrying transient failures."""

        async def attempt() -> Download:
            dest.seek(0)
            dest.truncate()
            return await self._download_once(city_id, day, dest)

        return await self._retrying(attempt)

    async def _download_once(self, city_id: int, day: dt.date, dest: BinaryIO) -> Download:
        forms = [self._form]
        if self._auto:
            forms.append(DateParam.DATETIME if self._form is DateParam.DATE else DateParam.DATE)
        path = f"/cities/{city_id}/stats"
        for attempt, form in enumerate(forms):
            query = spell_date(day, form)
            what = f"GET {path}?date={query}"
            async with self._get(path, {"date": query}, what) as response:
                if response.status == 400 and attempt + 1 < len(forms):
                    continue  # this deployment may want the other spelling
                await _raise_for_status(response, what)
                self._form = form
                return await _stream_into(response, dest, what)
        raise AssertionError("unreachable: the last form always returns or raises")

    @contextlib.asynccontextmanager
    async def _get(
        self, path: str, params: dict[str, str], what: str | None = None
    ) -> AsyncGenerator[aiohttp.ClientResponse]:
        """`session.get` whose connection failures, timeouts and broken bodies, while
        connecting or while the caller reads, surface as TransientError."""
        try:
            async with self._session.get(self._base_url + path, params=params) as response:
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"{what or f'GET {path}'} failed: {exc!r}") from exc

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
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
                    return await call()
        except TransientError as exc:
            raise ReferenceError(f"{exc} (gave up after {policy.attempts} attempts)") from exc
        raise AssertionError("unreachable: stamina returns or raises")


async def _raise_for_status(response: aiohttp.ClientResponse, what: str) -> None:
    if response.status == 200:
        return
    detail = await _snippet(response)
    error = TransientError if response.status >= 500 or response.status == 429 else ReferenceError
    raise error(f"{what} answered {response.status}: {detail}")


async def _stream_into(response: aiohttp.ClientResponse, dest: BinaryIO, what: str) -> Download:
    size = 0
    digest = hashlib.sha256()
    try:
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            dest.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"{what} broke off after {size} bytes: {exc!r}") from exc
    return Download(size, digest.hexdigest())
