"""Committing a date: one conditional PUT of its summary, then the clean-up of what it replaced.

A run uploads its cities' raw and Parquet files under keys carrying its run id, so nothing a
reader may be using is overwritten. The commit writes the date's summary, which names, per
city upstream listed, the files that count; readers see the date wholly as before or wholly
as after. The write is conditional on the summary the run read, so two writers of one date
can never both win. Afterwards `sweep_date` deletes every city file of the date that the
summary does not name: superseded runs, crashed runs, and this run's own failed uploads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable

import polars as pl

from busstats.commit.summaries import SUMMARY_SCHEMA, decode_summaries, encode_summary
from busstats.model.cities import City
from busstats.model.summaries import StoredCity
from busstats.storage import ObjectNotFound, PreconditionFailed, Store, Versioned
from busstats.storage.keys import PARQUET, RAW, city_file_of, date_prefix, summary_key

COMMIT_ATTEMPTS = 3


def summary_rows(
    day: dt.date,
    run_id: str,
    listed: Iterable[City],
    stored: dict[int, StoredCity],
    failures: dict[int, str],
    previous: pl.DataFrame,
    unusable: Iterable[int] = (),
) -> pl.DataFrame:
    """The date's new summary: a row per listed city. A city this run stored counts with its
    new files; one that failed keeps its previous committed row if it had one, else it is
    listed as not counted, with the reason. `unusable` are ids upstream still lists in an
    entry that could not be used: their previous rows are kept as they are."""
    earlier = {row["city_id"]: row for row in previous.filter("counted").iter_rows(named=True)}
    rows: list[dict[str, object]] = [earlier[i] for i in unusable if i in earlier]
    for city in listed:
        if (new := stored.get(city.id)) is not None:
            rows.append(
                {
                    "date": day,
                    "city_id": city.id,
                    "city_name": city.name,
                    "country": city.country,
                    "buses": new.buses,
                    "passengers": new.passengers,
                    "delay_microseconds": new.delay_microseconds,
                    "accident": new.accident,
                    "counted": True,
                    "missing_reason": None,
                    "run_id": run_id,
                    "raw_key": new.raw_key,
                    "parquet_key": new.parquet_key,
                }
            )
        elif (old := earlier.get(city.id)) is not None:
            rows.append(old)
        else:
            rows.append(
                {
                    "date": day,
                    "city_id": city.id,
                    "city_name": city.name,
                    "country": city.country,
                    "buses": 0,
                    "passengers": 0,
                    "delay_microseconds": 0,
                    "accident": False,
                    "counted": False,
                    "missing_reason": failures.get(city.id, "no data"),
                }
            )
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA).with_columns(commit_id=pl.lit(run_id))


ONLY_UPLOADED = "no data: only uploaded cities are stored for this date"
"""Why a city upstream lists is not counted on a date that only uploads ever committed."""


def upload_rows(
    day: dt.date,
    previous: pl.DataFrame,
    stored: StoredCity,
    run_id: str,
    others: Iterable[City] = (),
) -> pl.DataFrame:
    """The date's new summary after an upload of one city: every other city's row of
    `previous` exactly as it was (counted or not), and this city's row replaced or added.
    A date without a commit yet (`previous` has no rows) lists `others` (the other cities
    upstream lists) as not counted, ONLY_UPLOADED: the date then reads incomplete, never
    complete with one city.

    >>> city = City(7, "Ghent", "BE")
    >>> new = StoredCity(city, "raw/k", "parquet/k", 3, 40, 60_000_000, False)
    >>> empty = pl.DataFrame(schema=SUMMARY_SCHEMA)
    >>> upload_rows(dt.date(2024, 5, 1), empty, new, "f" * 32)["buses"].to_list()
    [3]
    """
    city = stored.city
    kept = previous.filter(pl.col("city_id") != city.id).drop("commit_id")
    row = pl.DataFrame(
        [
            {
                "date": day,
                "city_id": city.id,
                "city_name": city.name,
                "country": city.country,
                "buses": stored.buses,
                "passengers": stored.passengers,
                "delay_microseconds": stored.delay_microseconds,
                "accident": stored.accident,
                "counted": True,
                "missing_reason": None,
                "run_id": run_id,
                "raw_key": stored.raw_key,
                "parquet_key": stored.parquet_key,
            }
        ],
        schema={k: v for k, v in SUMMARY_SCHEMA.items() if k != "commit_id"},
    )
    missing = pl.DataFrame(
        [
            {
                "date": day,
                "city_id": other.id,
                "city_name": other.name,
                "country": other.country,
                "buses": 0,
                "passengers": 0,
                "delay_microseconds": 0,
                "accident": False,
                "counted": False,
                "missing_reason": ONLY_UPLOADED,
            }
            for other in (others if previous.is_empty() else ())
            if other.id != city.id
        ],
        schema=row.schema,
    )
    return pl.concat([kept, missing, row]).with_columns(commit_id=pl.lit(run_id))


async def read_summary(store: Store, day: dt.date) -> tuple[pl.DataFrame, Versioned | None]:
    """The date's committed summary (empty when none) and the version read."""
    try:
        found = await store.get_versioned(summary_key(day))
    except ObjectNotFound:
        return pl.DataFrame(schema=SUMMARY_SCHEMA), None
    return decode_summaries([found.data]), found


async def write_summary(
    store: Store, day: dt.date, rows: pl.DataFrame, read: Versioned | None, writer: str
) -> None:
    """The commit: replace exactly the version read; PreconditionFailed if it changed."""
    data = encode_summary(rows, writer)
    if read is None:
        await store.put_bytes(summary_key(day), data, if_absent=True)
    else:
        await store.put_bytes(summary_key(day), data, if_match=read.etag)


async def commit_date(
    store: Store,
    day: dt.date,
    run_id: str,
    new_rows: Callable[[pl.DataFrame], pl.DataFrame],
    confirm_lease: Callable[[], Awaitable[None]],
) -> None:
    """Commit `day`: read its summary, make the new rows from it (`new_rows`), confirm the
    run still holds the date, and replace exactly the version read; on a lost race, read
    again. A run commits once: a summary committed by `run_id` already is this run's own
    earlier write whose answer was lost (the store's retry of it is then refused as a lost
    race), and the commit is done. Raises PreconditionFailed after
    COMMIT_ATTEMPTS lost races, and whatever `confirm_lease` raises when the run no longer
    holds the date."""
    previous, read = await read_summary(store, day)
    for _ in range(COMMIT_ATTEMPTS):
        if committed_by(previous, run_id):  # an earlier try landed; its answer was lost
            return
        rows = new_rows(previous)
        await confirm_lease()
        try:
            await write_summary(store, day, rows, read, run_id)
            return
        except PreconditionFailed:
            # the summary changed since we read it: read it again
            previous, read = await read_summary(store, day)
    if committed_by(previous, run_id):
        return
    raise PreconditionFailed(
        f"the summary of {day} changed under run {run_id} {COMMIT_ATTEMPTS} times"
    )


def committed_by(summary: pl.DataFrame, run_id: str) -> bool:
    """Whether `summary` is the commit of run `run_id` (a fence rewrites it unchanged).

    >>> committed_by(pl.DataFrame(schema=SUMMARY_SCHEMA), "f" * 32)
    False
    """
    return run_id in summary["commit_id"].to_list()


async def begin_date(store: Store, day: dt.date, run_id: str) -> None:
    """Mark a date that has no commit yet with a placeholder: a summary without rows. Until
    a commit replaces it, readers know an ingest of the date began and nothing is counted;
    if the run dies, it stays, and the date is reported incomplete until ingested again.
    A date with a summary already (a commit or a placeholder) is left as it is."""
    _, read = await read_summary(store, day)
    if read is None:
        with contextlib.suppress(PreconditionFailed):  # another run's, just now: as good
            await write_summary(store, day, pl.DataFrame(schema=SUMMARY_SCHEMA), None, run_id)


async def drop_placeholder(store: Store, day: dt.date) -> None:
    """Remove the date's placeholder after a run that committed nothing swept its files: the
    date then simply has no data. A real commit is never removed."""
    summary, read = await read_summary(store, day)
    if read is not None and summary.is_empty():
        with contextlib.suppress(PreconditionFailed, ObjectNotFound):
            await store.delete_if_match(summary_key(day), read.etag)


async def fence_date(store: Store, day: dt.date, fencer: str) -> bool:
    """Rewrite the date's summary with the same rows, so that a commit still on its way from
    a process taken for dead (its If-Match names the version before) is refused; call it
    before sweeping a dead job's date. False when the date has no commit."""
    for _ in range(COMMIT_ATTEMPTS):
        summary, read = await read_summary(store, day)
        if read is None:
            return False
        try:
            await write_summary(store, day, summary, read, fencer)
        except PreconditionFailed:
            continue  # a commit landed meanwhile: fence that one
        return True
    raise PreconditionFailed(f"the summary of {day} kept changing while it was fenced")


async def sweep_date(store: Store, day: dt.date) -> list[str]:
    """Delete the date's city files that its committed summary does not name; returns them.

    Call it only while holding the date's lease: then no run is writing files for the date.
    """
    summary, _ = await read_summary(store, day)
    committed = summary.filter("counted")
    keep = set(committed["raw_key"].drop_nulls()) | set(committed["parquet_key"].drop_nulls())
    unreferenced: list[str] = []
    for kind in (RAW, PARQUET):
        for key in await store.list_keys(date_prefix(kind, day)):
            if city_file_of(key) is not None and key not in keep:
                unreferenced.append(key)
    if unreferenced:
        await store.delete(unreferenced)
    return unreferenced
