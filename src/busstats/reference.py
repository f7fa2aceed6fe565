"""Client for the external reference server (API in DESIGN.md)."""

from __future__ import annotations

import datetime as dt
from typing import BinaryIO

import aiohttp
import msgspec

from busstats.config import DateParam

CHUNK_SIZE = 1 << 20


class ReferenceError(Exception):
    """The reference server failed, timed out or answered something unusable."""


class City(msgspec.Struct, frozen=True):
    id: int
    name: str
    country: str


def spell_date(day: dt.date, form: DateParam) -> str:
    """The `date` query value in the spelling a deployment wants."""
    if form is DateParam.DATETIME:
        return dt.datetime.combine(day, dt.time()).isoformat()
    return day.isoformat()


async def _snippet(response: aiohttp.ClientResponse) -> str:
    body = await response.content.read(300)
    return body.decode("utf-8", "replace").strip()


class ReferenceClient:
    """One instance per ingest job; it learns which `date` spelling the server wants."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, date_param: DateParam
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._auto = date_param is DateParam.AUTO
        self._form = DateParam.DATE if self._auto else date_param

    async def cities(self) -> list[City]:
        url = f"{self._base_url}/cities"
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    detail = await _snippet(response)
                    raise ReferenceError(f"GET /cities answered {response.status}: {detail}")
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ReferenceError(f"GET /cities failed: {exc!r}") from exc
        try:
            cities = msgspec.json.decode(body, type=list[City])
        except msgspec.DecodeError as exc:
            raise ReferenceError(f"GET /cities sent no valid list of cities: {exc}") from exc
        ids = [city.id for city in cities]
        if len(set(ids)) != len(ids):
            raise ReferenceError("GET /cities listed the same city id twice")
        return cities

    async def download_day(self, city_id: int, day: dt.date, dest: BinaryIO) -> int:
        """Stream one city's day into `dest` as sent; returns the byte count."""
        forms = [self._form]
        if self._auto:
            forms.append(DateParam.DATETIME if self._form is DateParam.DATE else DateParam.DATE)
        path = f"/cities/{city_id}/stats"
        for attempt, form in enumerate(forms):
            query = spell_date(day, form)
            try:
                async with self._session.get(
                    self._base_url + path, params={"date": query}
                ) as response:
                    if response.status == 400 and attempt + 1 < len(forms):
                        continue  # this deployment may want the other spelling
                    if response.status != 200:
                        detail = await _snippet(response)
                        raise ReferenceError(
                            f"GET {path}?date={query} answered {response.status}: {detail}"
                        )
                    self._form = form
                    return await _stream_into(response, dest)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ReferenceError(f"GET {path}?date={query} failed: {exc!r}") from exc
        raise AssertionError("unreachable: the last form always returns or raises")


async def _stream_into(response: aiohttp.ClientResponse, dest: BinaryIO) -> int:
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_SIZE):
        dest.write(chunk)
        size += len(chunk)
    return size
