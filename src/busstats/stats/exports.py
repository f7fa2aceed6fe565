"""`/country-stats` as JSON, CSV, Parquet or an Arrow IPC stream, with a strong ETag.

The format comes from `format=` when given, else from the `Accept` header (JSON when it
allows anything). Every format holds the same rows and the same numbers; the tabular ones
have one row per country and day (the `stats` of the JSON), and Parquet and Arrow carry the
rest of the answer (`from`, `to`, `dates_without_data`, `incomplete_dates`) as JSON under
the key `busstats`: in the Parquet file's key-value metadata, in the Arrow stream's schema
metadata.

The ETag names the exact bytes of an answer: it is a hash of what the answer was computed
from (the range, the source, each date's commit and the dates stored but not committed), the
format, and the versions of the code that encodes it. A date's data changes only through a
new commit, so an unchanged ETag means unchanged bytes.

>>> fmt = negotiate(None, "text/csv;q=0.9, application/vnd.apache.parquet")
>>> fmt, MEDIA_TYPES[fmt]
(<Format.PARQUET: 'parquet'>, 'application/vnd.apache.parquet')

`encode(answer, fmt)` then gives the bytes of the answer in that format (for Parquet, bytes
that `pl.read_parquet` reads back).
"""

from __future__ import annotations

import hashlib
import io
from enum import StrEnum

import mimeparse  # pyright: ignore[reportMissingTypeStubs]
import msgspec
import polars as pl
import pyarrow as pa

from busstats.model.stats import CountryStats, Source
from busstats.stats.query import StatsAnswer

ENCODING_VERSION = "1"
"""Change it when the bytes of an answer change for the same data (columns, their types)."""
METADATA_KEY = "busstats"


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"
    ARROW = "arrow"


MEDIA_TYPES = {
    Format.JSON: "application/json",
    Format.CSV: "text/csv",
    Format.PARQUET: "application/vnd.apache.parquet",
    Format.ARROW: "application/vnd.apache.arrow.stream",
}
EXTENSIONS = {
    Format.JSON: "json",
    Format.CSV: "csv",
    Format.PARQUET: "parquet",
    Format.ARROW: "arrows",
}
_BY_MEDIA_TYPE = {media_type: fmt for fmt, media_type in MEDIA_TYPES.items()}
_PREFERENCE = [MEDIA_TYPES[f] for f in (Format.ARROW, Format.PARQUET, Format.CSV, Format.JSON)]
"""Least preferred first: on a tie (`*/*`, `application/*`) the last one wins."""

TABLE_SCHEMA = pl.Schema(
    {
        "country": pl.String,
        "date": pl.Date,
        "buses_started": pl.Int64,
        "total_passengers": pl.Int64,
        "accident": pl.Boolean,
        "average_delay_minutes": pl.Float64,
        "cities_counted": pl.Int64,
    }
)
_INT64_MAX = 2**63 - 1


class NotAcceptable(Exception):
    """The Accept header allows none of the formats; the message lists them."""


class TooLargeForFormat(Exception):
    """A sum exceeds what a 64-bit column holds (JSON has no such limit)."""


def negotiate(asked: Format | None, accept: str | None) -> Format:
    """The format to answer in: `format=` when given, else the best match for `accept`.

    >>> negotiate(None, "text/*"), negotiate(None, None), negotiate(Format.CSV, "image/png")
    (<Format.CSV: 'csv'>, <Format.JSON: 'json'>, <Format.CSV: 'csv'>)
    """
    if asked is not None:
        return asked
    if accept is None or not accept.strip():
        return Format.JSON
    try:
        best = str(mimeparse.best_match(_PREFERENCE, accept))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
    except ValueError:  # a media range that is not type/subtype
        best = ""
    if best not in _BY_MEDIA_TYPE:
        offered = ", ".join(MEDIA_TYPES.values())
        raise NotAcceptable(
            f"the Accept header allows none of {offered}; accept one of them, or ask with "
            "format=json, csv, parquet or arrow"
        )
    return _BY_MEDIA_TYPE[best]


def etag(answer: StatsAnswer, source: Source, fmt: Format) -> str:
    """A strong ETag (quoted) for the bytes `encode(answer.stats, fmt)` gives."""
    parts = [
        f"busstats-export {ENCODING_VERSION} polars {pl.__version__} "
        f"pyarrow {pa.__version__} msgspec {msgspec.__version__}",
        f"{answer.stats.start} {answer.stats.end} {source.value} {fmt.value}",
        *(f"{day} {commit}" for day, commit in sorted(answer.commits.items())),
        *(f"{day} uncommitted" for day in sorted(answer.uncommitted)),
    ]
    return '"' + hashlib.sha256("\n".join(parts).encode()).hexdigest() + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match header names `tag` (weak comparison, as RFC 9110 asks)."""
    if if_none_match is None:
        return False
    candidates = [c.strip() for c in if_none_match.split(",")]
    return any(c == "*" or c.removeprefix("W/") == tag for c in candidates)


def filename(stats: CountryStats, fmt: Format) -> str:
    """`country-stats_2024-05-01_2024-05-31.csv`"""
    return f"country-stats_{stats.start}_{stats.end}.{EXTENSIONS[fmt]}"


def encode(stats: CountryStats, fmt: Format) -> bytes:
    """The answer's bytes in `fmt`; TooLargeForFormat if a sum does not fit 64 bits."""
    if fmt is Format.JSON:
        return msgspec.json.encode(stats)
    table = _table(stats)
    sink = io.BytesIO()
    if fmt is Format.CSV:
        table.write_csv(sink)
    elif fmt is Format.PARQUET:
        table.write_parquet(sink, compression="zstd", metadata=_metadata(stats))
    else:
        arrow = table.to_arrow(compat_level=pl.CompatLevel.oldest())
        arrow = arrow.replace_schema_metadata(_metadata(stats))
        with pa.ipc.new_stream(sink, arrow.schema) as writer:
            writer.write_table(arrow)
    return sink.getvalue()


def _table(stats: CountryStats) -> pl.DataFrame:
    for row in stats.stats:
        if max(row.buses_started, row.total_passengers) > _INT64_MAX:
            raise TooLargeForFormat(
                f"a sum on {row.date} for {row.country} exceeds 64 bits; ask for JSON"
            )
    columns: dict[str, list[object]] = {name: [] for name in TABLE_SCHEMA}
    for row in stats.stats:
        for name in TABLE_SCHEMA:
            columns[name].append(getattr(row, name))
    return pl.DataFrame(columns, schema=TABLE_SCHEMA)


def _metadata(stats: CountryStats) -> dict[str, str]:
    """Everything of the answer but its rows, as the JSON body spells it."""
    rest = msgspec.to_builtins(stats)
    del rest["stats"]
    return {METADATA_KEY: msgspec.json.encode(rest).decode()}
