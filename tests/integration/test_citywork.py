"""A city's work as a plain function: serialisable task and outcome, failures reported."""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from busstats.core.settings import Settings
from busstats.executors.conversions import ThreadConversions
from busstats.ingest.citywork import CityOutcome, CityTask, CityTools, run_city
from busstats.ingest.resources import ProcessResources
from busstats.model.cities import City
from busstats.model.jobs import CityStatus
from busstats.reference.client import DateSpelling, ReferenceClient
from busstats.reference.sim import CITIES, Fault, SimulatorConfig
from busstats.storage import Store
from busstats.storage.keys import parquet_key, raw_key
from harness.servers import simulator

DAY = dt.date(2024, 5, 1)
GOOD, BROKEN = CITIES[0], CITIES[1]


@pytest.fixture
async def resources(tmp_path: Path) -> AsyncIterator[ProcessResources]:
    opened = ProcessResources(Settings(store=str(tmp_path / "unused"), temp_dir=str(tmp_path)))
    await opened.open()
    yield opened
    await opened.close()


def _task(city_id: int, name: str, country: str) -> CityTask:
    return CityTask(DAY, "run-1", City(city_id, name, country))


async def test_a_city_is_stored_under_the_run_keys_and_a_broken_one_is_reported(
    store: Store, resources: ProcessResources
) -> None:
    config = SimulatorConfig(rows=(20, 20), max_latency=0.01, faults={BROKEN.id: Fault.HTML})
    async with simulator(config) as sim:
        settings = Settings(store="unused", reference_url=sim.url, reference_attempts=1)
        client = ReferenceClient.from_settings(
            settings, resources.session, DateSpelling(settings.reference_date_param)
        )
        tools = CityTools(client, store, resources, ThreadConversions())
        good = await run_city(_task(GOOD.id, GOOD.name, GOOD.country), tools)
        broken = await run_city(_task(BROKEN.id, BROKEN.name, BROKEN.country), tools)
    assert good.status == CityStatus.SUCCEEDED
    assert good.error is None
    assert good.rows + good.invalid_rows == 20
    assert good.raw_bytes > 0 < good.parquet_bytes
    assert good.stored is not None
    assert good.stored.buses == good.rows
    assert good.stored.raw_key == raw_key(DAY, GOOD.id, "run-1")
    assert await store.get_bytes(parquet_key(DAY, GOOD.id, "run-1"))
    assert broken.status == CityStatus.FAILED
    assert broken.stored is None
    assert broken.error


def test_task_and_outcome_cross_process_boundaries_unchanged() -> None:
    task = _task(7, "Mostar", "Bosnia & Herzegovina")
    outcome = CityOutcome(status=CityStatus.FAILED, raw_bytes=3, error="upstream said 500")
    for value in (task, outcome):
        assert pickle.loads(pickle.dumps(value)) == value
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(task), type=CityTask) == task
