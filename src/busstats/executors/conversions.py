"""Where a city's JSON is converted to Parquet: in a thread, or in worker processes.

Decoding JSON holds the GIL (msgspec decodes a whole slice at once), so a conversion in a
thread of the API process makes every request wait behind it. `ProcessConversions` runs
`convert.convert_file` in a pool of worker processes instead: both files stay on this
machine's disk, only their paths and the small result cross the process boundary, and the
event loop only waits.

The pool's processes come from a `forkserver` (the API process has threads, which `fork`
must not copy) that imports the converter once, so a new worker starts in milliseconds.
A worker watches its parent and exits when it is gone, also after a `kill -9` of the service.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import functools
import logging
import multiprocessing
import os
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from pathlib import Path

from busstats.core.processes import pid_alive
from busstats.ingest.citywork import ConversionLost
from busstats.ingest.convert import ConversionResult, convert_file
from busstats.model.cities import City

log = logging.getLogger(__name__)

PARENT_CHECK_SECONDS = 0.5
CONVERSION_ATTEMPTS = 2
"""A worker that dies breaks the whole pool, failing every conversion waiting in it: each is
tried once more in a fresh pool. A city that kills its worker twice (out of memory) fails."""


class ThreadConversions:
    """Conversions in a thread of this process: no start-up cost, but each one holds the GIL
    while it decodes. The `threads` executor and Dask workers use it."""

    async def __call__(
        self,
        raw_path: Path,
        parquet_path: Path,
        city: City,
        day: dt.date,
        provenance: dict[str, str] | None = None,
    ) -> ConversionResult:
        return await asyncio.to_thread(
            convert_file, raw_path, parquet_path, city, day, provenance=provenance
        )

    async def close(self) -> None:
        return None


class ProcessConversions:
    """Conversions in up to `processes` worker processes, started on first use.

    Example (not run: it starts worker processes)::

        conversions = ProcessConversions(processes=2)
        result = await conversions(raw, parquet, City(4, "Mostar", "BA"), day)
        await conversions.close()
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(processes)
        """Conversions wait here rather than in the pool's queue: a worker's death fails
        every conversion in the pool, and should fail only those that were running."""
        self._stopped_on_purpose: weakref.WeakSet[concurrent.futures.ProcessPoolExecutor] = (
            weakref.WeakSet()
        )

    async def __call__(
        self,
        raw_path: Path,
        parquet_path: Path,
        city: City,
        day: dt.date,
        provenance: dict[str, str] | None = None,
    ) -> ConversionResult:
        attempt = 1
        while True:
            async with self._slots:
                pool = self._open_pool()
                try:
                    return await asyncio.get_running_loop().run_in_executor(
                        pool, _convert, raw_path, parquet_path, city, day, provenance
                    )
                except asyncio.CancelledError:
                    if not _being_cancelled():  # the pool dropped the call: try again
                        continue
                    # The worker would go on converting a city nobody waits for, outside the
                    # slot and budget just given back: stop the pool's workers now.
                    self._stop(pool, on_purpose=True)
                    raise
                except BrokenProcessPool as exc:
                    on_purpose = pool in self._stopped_on_purpose
                    self._stop(pool, on_purpose=False)
                    if not on_purpose:  # another conversion's cancel costs this one no try
                        if attempt == CONVERSION_ATTEMPTS:
                            raise ConversionLost(
                                f"the process converting the city died, {attempt} times ({exc})"
                            ) from None
                        attempt += 1
            log.warning("a conversion process stopped; converting %s again", raw_path.name)

    def _stop(self, pool: concurrent.futures.ProcessPoolExecutor, *, on_purpose: bool) -> None:
        """Drop a pool (once, whoever sees it first) so the next conversion opens a fresh
        one; `on_purpose`: terminate its workers, and let the conversions this breaks try
        again without counting it."""
        if self._pool is pool:
            self._pool = None
            if on_purpose:
                self._stopped_on_purpose.add(pool)
                _terminate(pool, wait=False)
            else:
                pool.shutdown(wait=False, cancel_futures=True)

    def _open_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["busstats.executors.warm_converter"])
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.processes,
                mp_context=context,
                initializer=_watch_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def close(self) -> None:
        """Stop the workers now, also in the middle of a conversion (a stopping service
        does not wait for a large city)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        await asyncio.to_thread(functools.partial(_terminate, pool, wait=True))


def _convert(
    raw_path: Path,
    parquet_path: Path,
    city: City,
    day: dt.date,
    provenance: dict[str, str] | None,
) -> ConversionResult:
    return convert_file(raw_path, parquet_path, city, day, provenance=provenance)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _terminate(pool: concurrent.futures.ProcessPoolExecutor, *, wait: bool) -> None:
    """Terminate the pool's workers, also mid-conversion, and shut it down; with `wait`,
    also wait for the workers and the pool's own threads to clean up (its queues and their
    semaphores), so that nothing of it is left for the interpreter's exit."""
    workers: list[BaseProcess] = list(pool._processes.values())  # pyright: ignore[reportPrivateUsage]
    for worker in workers:  # Python 3.14 has pool.terminate_workers() for this
        worker.terminate()
    if wait:
        _join(workers)
    pool.shutdown(wait=wait, cancel_futures=True)


def _join(workers: Sequence[BaseProcess]) -> None:
    for worker in workers:
        worker.join(timeout=5)


def _watch_parent(coordinator_pid: int) -> None:
    """Exit this worker once the process that started the pool is gone. The worker's own
    parent is the forkserver, which exits when the coordinator does: either change ends it."""
    forkserver_pid = os.getppid()

    def watch() -> None:
        while os.getppid() == forkserver_pid and pid_alive(coordinator_pid):
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="parent watch", daemon=True).start()
