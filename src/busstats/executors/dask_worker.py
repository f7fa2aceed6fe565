"""The side of the `dask` executor that runs on a Dask worker.

A worker needs busstats installed and, in its environment, only what stays on its machine:
store credentials (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or the usual AWS
chain), and optionally `BUSSTATS_TEMP_DIR`, `BUSSTATS_MAX_MB_IN_FLIGHT` and
`BUSSTATS_CITY_CONCURRENCY`. Where to read and write comes with each task from the
coordinator, so a worker can never write where the coordinator does not commit.

`run_city_on_worker` is a coroutine function: Dask runs it on the worker's event loop, so the
cities of one worker download concurrently (as many as the worker's `--nthreads`), and each
conversion runs in a thread of the worker.
"""

from __future__ import annotations

import asyncio

from busstats.core import metrics
from busstats.core.settings import Settings
from busstats.executors.conversions import ThreadConversions
from busstats.ingest.citywork import CityOutcome, CityTask, CityTools, run_city
from busstats.ingest.resources import ProcessResources
from busstats.reference.client import DateSpelling, ReferenceClient
from busstats.storage import open_store

_tools: dict[Settings, CityTools] = {}
"""One set of tools per coordinator's settings (in practice one) for the worker's life."""
_opening = asyncio.Lock()


async def run_city_on_worker(task: CityTask, settings: Settings) -> CityOutcome:
    """One city's work on this worker, with tools opened once for the worker's life; what
    it counted (upstream calls, store errors) travels back in the outcome."""
    counted = metrics.Metrics()
    with metrics.bound(counted):
        outcome = await run_city(task, await _tools_for(settings))
    outcome.counts = metrics.counts(counted)
    return outcome


async def _tools_for(settings: Settings) -> CityTools:
    async with _opening:
        tools = _tools.get(settings)
        if tools is None:
            tools = await _open_tools(with_own_machine(settings, Settings.from_env()))
            _tools[settings] = tools
        return tools


def with_own_machine(coordinator: Settings, own: Settings) -> Settings:
    """The coordinator's settings, with this machine's credentials and limits.

    >>> own = Settings(aws_access_key_id="worker-key")
    >>> with_own_machine(Settings(store="s3://bus"), own).aws_access_key_id
    'worker-key'
    """
    return coordinator.model_copy(update={field: getattr(own, field) for field in MACHINE_SETTINGS})


async def _open_tools(settings: Settings) -> CityTools:
    resources = ProcessResources(settings)
    await resources.open()
    store = await open_store(settings)
    spelling = DateSpelling(settings.reference_date_param)
    client = ReferenceClient.from_settings(settings, resources.session, spelling)
    return CityTools(client, store, resources, ThreadConversions())


def for_workers(settings: Settings) -> Settings:
    """`settings` without what stays on the coordinator's machine: credentials, its temp
    folder and its memory budget, which each worker reads from its own environment.

    >>> for_workers(Settings(aws_secret_access_key="s3cret")).aws_secret_access_key is None
    True
    """
    return settings.model_copy(
        update={field: getattr(Settings(), field) for field in MACHINE_SETTINGS}
    )


MACHINE_SETTINGS = (
    "aws_access_key_id",
    "aws_secret_access_key",
    "temp_dir",
    "max_mb_in_flight",
    "city_concurrency",
    "executor",
    "worker_processes",
    "dask_scheduler",
)
"""Settings a Dask worker takes from its own environment, not from the coordinator."""
