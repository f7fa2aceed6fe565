"""The simulator's cities and its deterministic, streamed row generator."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimCity:
    id: int
    name: str
    country: str


_COUNTRIES = {
    "Peru": ["Lake Amy", "Arequipa", "Cusco", "Nuevo Chimbote", "San José", "Ica"],
    "Côte d'Ivoire": ["Abidjan", "Bouaké", "Grand-Bassam", "Yamoussoukro", "San-Pédro", "Korhogo"],
    "Bosnia & Herzegovina": ["Sarajevo", "Banja Luka", "Mostar", "Tuzla", "Zenica", "Bihać"],
    "Korea (Republic of)": ["Seoul", "Busan", "Daegu", "Incheon", "Gwangju", "Suwon-si"],
    "Costa Rica": [
        "San José",
        "Limón",
        "Alajuela",
        "Heredia",
        "Cartago",
        "Puerto Viejo, Talamanca",
    ],
}

CITIES: list[SimCity] = [
    SimCity(index, name, country)
    for index, (name, country) in enumerate(
        (name, country) for country, names in _COUNTRIES.items() for name in names
    )
]
"""30 cities in 5 countries; `San José` exists twice, in Peru and in Costa Rica."""

BUS_TYPES = [f"BUS-{n}" for n in (101, 111, 121, 202, 212, 303, 404, 505, 606, 707)]
ROWS_PER_BATCH = 10_000


def rng_for(seed: int, day: dt.date, city_id: int, purpose: str) -> random.Random:
    """A generator that depends only on its inputs, so a run can be repeated exactly."""
    return random.Random(f"{seed}:{day.isoformat()}:{city_id}:{purpose}")


def spell_seconds(seconds: int, rng: random.Random | None) -> str:
    """Upstream's spelling (`PT2460S`, `P0D` for zero), or with `rng` a random equivalent."""
    if rng is None or rng.random() < 0.5:
        return f"PT{seconds}S" if seconds else "P0D"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return rng.choice(
        [
            f"P0DT{hours}H{minutes}M{secs}S",
            f"PT{hours}H{minutes}M{secs}.0S",
            f"PT{hours * 60 + minutes}M{secs}S",
        ]
    )


def generate_rows(
    seed: int,
    day: dt.date,
    city_id: int,
    count: int,
    *,
    time_suffix: str = "",
    mixed_durations: bool = False,
    batch_rows: int = ROWS_PER_BATCH,
) -> Iterator[str]:
    """The JSON array for one city and day, as text pieces of up to `batch_rows` rows."""
    rng = rng_for(seed, day, city_id, "rows")
    spelling_rng = rng_for(seed, day, city_id, "spelling") if mixed_durations else None
    day_text = day.isoformat()
    minutes = [f"{day_text}T{m // 60:02d}:{m % 60:02d}:00{time_suffix}" for m in range(1440)]
    delays = [spell_seconds(60 * m, spelling_rng) for m in range(0, 121)]
    yield "["
    written = 0
    while written < count:
        batch = min(batch_rows, count - written)
        times = rng.choices(minutes, k=batch)
        types = rng.choices(BUS_TYPES, k=batch)
        passengers = rng.choices(range(0, 121), k=batch)
        delay_picks = rng.choices(delays, weights=[30] + [1] * 120, k=batch)
        accidents = rng.choices(("false", "true"), weights=(99, 1), k=batch)
        rows = ",\n".join(
            f'{{"departure-time": "{t}", "bus-type": "{b}", "passengers": {p}, '
            f'"delay": "{d}", "accident": {a}}}'
            for t, b, p, d, a in zip(times, types, passengers, delay_picks, accidents, strict=True)
        )
        yield ("," if written else "") + rows
        written += batch
    yield "]"
