"""The reference server's city list, checked entry by entry.

One bad entry must not cost the other cities their day: each entry is decoded on its own,
and the ones that break the contract are set aside with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from busstats.core.excerpt import excerpt
from busstats.model.cities import City, CityId, RejectedCity


class CityListError(ValueError):
    """The body is not a JSON array at all, so no entry can be trusted."""


@dataclass(frozen=True, slots=True)
class CityList:
    cities: list[City]
    rejected: list[RejectedCity]

    @property
    def listed_ids(self) -> set[int]:
        """Ids upstream still lists, usable entries or not: their stored files must stay."""
        return {city.id for city in self.cities} | {
            entry.city_id for entry in self.rejected if entry.city_id is not None
        }


class _IdOnly(msgspec.Struct):
    id: CityId


def parse_city_list(body: bytes) -> CityList:
    """The usable cities of a `GET /cities` body, and every other entry with its reason.

    An id is an integer from 0 to 2**63-1 (not a bool, float or string); name and country
    are strings; of two entries with one id, the first is kept.

    >>> listed = parse_city_list(
    ...     b'[{"id": 1, "name": "Ica", "country": "Peru"},'
    ...     b' {"id": -2, "name": "X", "country": "Y"},'
    ...     b' {"id": 1, "name": "Ica again", "country": "Peru"}]'
    ... )
    >>> [city.name for city in listed.cities]
    ['Ica']
    >>> [(r.position, r.reason) for r in listed.rejected]  # doctest: +NORMALIZE_WHITESPACE
    [(1, 'Expected `int` >= 0 - at `$.id`'),
     (2, 'city id 1 is listed again; the entry at position 0 is kept')]
    """
    try:
        entries = msgspec.json.decode(body, type=list[msgspec.Raw])
    except msgspec.DecodeError as exc:
        raise CityListError(f"not a JSON array of cities ({exc}): {excerpt(body)}") from exc
    cities: list[City] = []
    rejected: list[RejectedCity] = []
    first_position: dict[int, int] = {}
    for position, raw in enumerate(entries):
        try:
            city = msgspec.json.decode(raw, type=City)
        except msgspec.ValidationError as exc:
            rejected.append(_rejected(position, raw, str(exc)))
            continue
        if city.id in first_position:
            reason = (
                f"city id {city.id} is listed again; "
                f"the entry at position {first_position[city.id]} is kept"
            )
            rejected.append(_rejected(position, raw, reason))
            continue
        first_position[city.id] = position
        cities.append(city)
    return CityList(cities, rejected)


def _rejected(position: int, raw: msgspec.Raw, reason: str) -> RejectedCity:
    try:
        city_id: int | None = msgspec.json.decode(raw, type=_IdOnly).id
    except msgspec.ValidationError:
        city_id = None
    return RejectedCity(
        position=position, city_id=city_id, entry=excerpt(bytes(raw)), reason=excerpt(reason)
    )
