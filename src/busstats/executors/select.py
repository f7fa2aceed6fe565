"""Executors: where the coordinator's city work runs (`BUSSTATS_EXECUTOR`).

The coordinator (the job runner) holds the date's lease, hands each city to its executor as a
`CityTask`, collects the `CityOutcome`s and commits. An executor only runs `run_city`:

- `threads`: in the API process; conversions in threads (they hold the GIL while decoding).
- `local` (default): downloads and uploads stay on the API's event loop (they only wait), the
  conversion of every city runs in a pool of worker processes on this machine. The process's
  city slots and bytes budget are taken before a city is handed over, so they hold for the
  whole machine.
- `dask`: the whole of `run_city` runs on a Dask cluster's workers (`busstats.dask_worker`);
  a worker lost mid-task is Dask's to retry elsewhere, and a city it gives up on fails with
  the reason. Uploads received by this process still convert in local worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from typing import TYPE_CHECKING, Any, cast

from busstats.core.settings import Settings
from busstats.executors.conversions import ProcessConversions, ThreadConversions
from busstats.executors.dask_worker import for_workers, run_city_on_worker
from busstats.ingest.citywork import (
    CityOutcome,
    CityTask,
    CityTools,
    Conversions,
    Executor,
    run_city,
)
from busstats.ingest.resources import ProcessResources
from busstats.model.jobs import CityStatus
from busstats.reference.client import ReferenceClient
from busstats.storage import Store

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

DASK_CONNECT_SECONDS = 10.0


class SchedulerUnreachable(Exception):
    """The Dask scheduler could not be reached (the message says why)."""


class InProcessExecutor:
    """City work on this process's event loop, converting with `tools.convert` (threads or
    worker processes)."""

    def __init__(self, tools: CityTools) -> None:
        self._tools = tools
        self.conversions = tools.convert

    async def run_city(self, task: CityTask) -> CityOutcome:
        return await run_city(task, self._tools)

    async def close(self) -> None:
        await self.conversions.close()


class DaskExecutor:
    """City work on the Dask cluster at `settings.dask_scheduler`, connected on first use.

    Each task carries the settings the workers need (the store, the reference server, the
    limits) without secrets: workers take credentials and machine limits from their own
    environment (`busstats.dask_worker`).
    """

    def __init__(self, settings: Settings, conversions: Conversions) -> None:
        assert settings.dask_scheduler is not None
        self._address = settings.dask_scheduler
        self._worker_settings = for_workers(settings)
        self.conversions = conversions
        self._client: Client | None = None
        self._connecting = asyncio.Lock()
        self._unreachable: tuple[float, str] | None = None
        """Until when a failed connect is not tried again, and why it failed: the cities
        of a job start together, and each must not wait its own connect timeout in turn."""

    async def run_city(self, task: CityTask) -> CityOutcome:
        from distributed import KilledWorker

        try:
            client = await self._connect()
        except SchedulerUnreachable as exc:
            return _failed(f"the Dask scheduler at {self._address} is unreachable: {exc}")
        future = client.submit(  # pyright: ignore[reportUnknownMemberType]
            run_city_on_worker, task, self._worker_settings, pure=False
        )
        try:
            outcome = cast(CityOutcome, await future)
        except asyncio.CancelledError:
            await _cancel(future)
            raise
        except KilledWorker as exc:
            return _failed(f"the Dask workers running the city died, retries exhausted: {exc}")
        except Exception as exc:  # the cluster's failure must fail one city, not the job
            log.warning("city %s of job %s failed on Dask: %r", task.city.id, task.run_id, exc)
            return _failed(f"the Dask cluster could not run the city: {exc!r}")
        return outcome

    async def _connect(self) -> Client:
        """The client, connected once; SchedulerUnreachable, for every city asking within
        DASK_CONNECT_SECONDS of a failed try, when the scheduler refuses, stays silent, or
        its address cannot be used."""
        from distributed import Client

        async with self._connecting:
            if self._client is not None:
                return self._client
            now = asyncio.get_running_loop().time()
            if self._unreachable is not None and now < self._unreachable[0]:
                raise SchedulerUnreachable(self._unreachable[1])
            client: Client | None = None
            try:
                async with asyncio.timeout(DASK_CONNECT_SECONDS):
                    client = Client(self._address, asynchronous=True, timeout=DASK_CONNECT_SECONDS)
                    await client  # pyright: ignore[reportGeneralTypeIssues]
            except Exception as exc:  # refused, silent, misspelled: the city fails, not the job
                if client is not None:  # a client cut short must not be left half started
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(DASK_CONNECT_SECONDS):
                            await _maybe_await(client.close())  # pyright: ignore[reportUnknownMemberType]
                reason = (
                    f"{exc!r} (no answer within {DASK_CONNECT_SECONDS:g} s)"
                    if isinstance(exc, TimeoutError)
                    else repr(exc)
                )
                retry_at = asyncio.get_running_loop().time() + DASK_CONNECT_SECONDS
                self._unreachable = retry_at, reason
                raise SchedulerUnreachable(reason) from exc
            self._client = client
            return client

    async def close(self) -> None:
        if self._client is not None:
            await _maybe_await(self._client.close())  # pyright: ignore[reportUnknownMemberType]
            self._client = None
        await self.conversions.close()


def local_conversions(settings: Settings) -> Conversions:
    """Process conversions sized by `BUSSTATS_WORKER_PROCESSES` (unset: one per CPU)."""
    return ProcessConversions(settings.worker_processes or os.cpu_count() or 1)


def executor_for(
    settings: Settings, client: ReferenceClient, store: Store, resources: ProcessResources
) -> Executor:
    """The executor `settings.executor` names, for this process's open tools.

    Example (not run: it needs a service's parts)::

        settings = Settings(executor="threads")
        executor = executor_for(settings, client, store, resources)
        outcome = await executor.run_city(task)
    """
    if settings.executor == "threads":
        return InProcessExecutor(CityTools(client, store, resources, ThreadConversions()))
    if settings.executor == "local":
        return InProcessExecutor(CityTools(client, store, resources, local_conversions(settings)))
    return DaskExecutor(settings, local_conversions(settings))


async def _cancel(future: Any) -> None:
    """Cancel a Dask future; with an asynchronous client, `cancel()` returns an awaitable."""
    await _maybe_await(future.cancel())


async def _maybe_await(result: object) -> None:
    """Dask's client methods return an awaitable when the client is asynchronous."""
    if inspect.isawaitable(result):
        await result


def _failed(reason: str) -> CityOutcome:
    return CityOutcome(status=CityStatus.FAILED, error=reason)
