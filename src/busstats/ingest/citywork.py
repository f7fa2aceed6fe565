"""One unit of city work with plain inputs and outputs: download a city's day, validate and
convert it, upload both files under the run's own keys, and report.

`run_city` knows nothing of jobs, records or the web app: it takes a `CityTask` (date, run id,
city; serialisable) and the tools of the process it runs in, and returns a `CityOutcome`
(the report's fields and, when the city was stored, its summary sums and keys). This is the
seam an executor hands city work across; the coordinator (`Ingest`) applies outcomes to the
job's record and commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from busstats.core import metrics
from busstats.ingest.convert import SLICE_BYTES, ConversionResult, UnusableResponse
from busstats.ingest.resources import ProcessResources
from busstats.model.cities import City
from busstats.model.jobs import CityStatus, InvalidRow
from busstats.model.summaries import StoredCity
from busstats.reference.client import ReferenceClient, UpstreamError
from busstats.storage import Store, StoreError
from busstats.storage.keys import parquet_key, raw_key

log = logging.getLogger(__name__)


def memory_needed(raw_size: int, part_size: int) -> int:
    """Memory a city's conversion and upload hold at most: decoding a slice takes about 14
    times its JSON (measured; 20 leaves room for the writer), and an upload holds one part
    (`part_size`, as the store says: `Store.part_size`).

    >>> memory_needed(250_000, 16 * 2**20)
    5250000
    """
    return 20 * min(raw_size, SLICE_BYTES) + min(raw_size, part_size)


class CityTask(msgspec.Struct, frozen=True):
    """What a city's work needs besides the process's own tools; no credentials."""

    date: dt.date
    run_id: str
    city: City


class CityOutcome(msgspec.Struct, kw_only=True):
    """A city's work as it ended: `stored` is set exactly when `status` is `succeeded`."""

    status: CityStatus
    rows: int = 0
    invalid_rows: int = 0
    invalid_examples: list[InvalidRow] = msgspec.field(default_factory=list[InvalidRow])
    raw_bytes: int = 0
    parquet_bytes: int = 0
    error: str | None = None
    duration_seconds: float = 0.0
    stored: StoredCity | None = None
    counts: metrics.Counts = msgspec.field(default_factory=dict[str, dict[str, int]])
    """Upstream calls and store errors counted where the work ran, when that is not the
    coordinator's process (a Dask worker): the coordinator adds them to its metrics."""


@dataclass(frozen=True, slots=True)
class CityTools:
    """What the process running city work opened once for all its cities."""

    client: ReferenceClient
    store: Store
    resources: ProcessResources
    convert: Conversions

    def with_conversions(self, convert: Conversions) -> CityTools:
        """The same tools, converting elsewhere."""
        return dataclasses.replace(self, convert=convert)


async def run_city(task: CityTask, tools: CityTools) -> CityOutcome:
    """Do one city's work; a failure of the city is reported, never raised.

    Example (not run: it needs an upstream and a store)::

        task = CityTask(dt.date(2026, 5, 1), "run-1", City(4, "Mostar", "Bosnia"))
        outcome = await run_city(task, tools)
        outcome.status, outcome.stored is not None
        # -> (<CityStatus.SUCCEEDED: 'succeeded'>, True)
    """
    started = time.monotonic()
    outcome = CityOutcome(status=CityStatus.FAILED)
    try:
        outcome.stored = await _store_city(task, tools, outcome)
        outcome.status = CityStatus.SUCCEEDED
    except (UpstreamError, UnusableResponse, StoreError) as exc:
        outcome.error = str(exc)
    except Exception as exc:  # a bug must fail one city, not the job
        log.exception("city %s of job %s failed unexpectedly", task.city.id, task.run_id)
        outcome.error = f"internal error: {exc!r}"
    outcome.duration_seconds = round(time.monotonic() - started, 3)
    return outcome


async def _store_city(task: CityTask, tools: CityTools, outcome: CityOutcome) -> StoredCity:
    day, run_id, city = task.date, task.run_id, task.city
    store, resources = tools.store, tools.resources
    with resources.temp_files() as (raw_path, parquet_path):
        with raw_path.open("wb") as raw_file:
            download = await tools.client.download_day(city.id, day, raw_file)
        outcome.raw_bytes = download.size
        provenance = {"job_id": run_id, "raw_sha256": download.sha256}
        async with resources.budget.reserve(memory_needed(download.size, store.part_size)):
            result = await tools.convert(raw_path, parquet_path, city, day, provenance)
            stored = await store_run_files(store, task, raw_path, parquet_path, result)
        outcome.parquet_bytes = parquet_path.stat().st_size
    outcome.rows = result.rows
    outcome.invalid_rows = result.invalid_rows
    outcome.invalid_examples = result.invalid_examples
    return stored


async def store_run_files(
    store: Store, task: CityTask, raw_path: Path, parquet_path: Path, result: ConversionResult
) -> StoredCity:
    """Upload a converted city's raw and Parquet file under the run's own keys (nothing a
    reader uses is overwritten: the commit decides), and return the summary row they make.
    Fetched and uploaded cities alike."""
    day, run_id, city = task.date, task.run_id, task.city
    await store.put_file(raw_key(day, city.id, run_id), raw_path)
    await store.put_file(parquet_key(day, city.id, run_id), parquet_path)
    return StoredCity(
        city=city,
        raw_key=raw_key(day, city.id, run_id),
        parquet_key=parquet_key(day, city.id, run_id),
        buses=result.rows,
        passengers=result.passengers,
        delay_microseconds=result.delay_microseconds,
        accident=result.accident,
    )


class Executor(Protocol):
    conversions: Conversions
    """Where this process converts files it holds itself (uploads)."""

    async def run_city(self, task: CityTask) -> CityOutcome:
        """Do one city's work; its failure is in the outcome, never raised."""
        ...

    async def close(self) -> None: ...


class ConversionLost(UnusableResponse):
    """The worker process converting the city died on every try (killed, out of memory);
    the city fails with this reason."""


class Conversions(Protocol):
    """Runs `convert_file` somewhere; the call returns when the Parquet file is written."""

    async def __call__(
        self,
        raw_path: Path,
        parquet_path: Path,
        city: City,
        day: dt.date,
        provenance: dict[str, str] | None = None,
    ) -> ConversionResult: ...

    async def close(self) -> None: ...
