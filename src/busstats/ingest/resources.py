"""What all jobs of one process share, so every limit holds for the process, not per job:
city slots, the bytes-in-flight budget (`ByteBudget`), one HTTP connection pool and one
temporary folder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncGenerator, Generator
from pathlib import Path

import aiohttp

from busstats.core.processes import pid_alive
from busstats.core.settings import Settings

log = logging.getLogger(__name__)
_FOLDER_PREFIX = "proc-"


class ByteBudget:
    """Cities reserve bytes before the memory-heavy steps (converting, uploading) and wait
    while the budget is spent, so memory follows the budget rather than the city count.

    A reservation above the whole budget is cut to the budget: one city always fits.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, amount: int) -> AsyncGenerator[None]:
        amount = min(amount, self.capacity)
        async with self._changed:
            await self._changed.wait_for(lambda: self._used + amount <= self.capacity)
            self._used += amount
        try:
            yield
        finally:
            async with self._changed:
                self._used -= amount
                self._changed.notify_all()


class ProcessResources:
    def __init__(self, settings: Settings) -> None:
        self.city_slots = asyncio.Semaphore(settings.city_concurrency)
        """Cities in progress at once, over all jobs of this process."""
        self.budget = ByteBudget(settings.max_bytes_in_flight)
        self._temp_parent = Path(settings.temp_dir or tempfile.gettempdir()) / "busstats"
        # The host name keeps processes of other machines or containers sharing the folder
        # (each with its own pid numbers) apart: only this host's dead processes are cleaned.
        self._folder_prefix = f"{_FOLDER_PREFIX}{socket.gethostname()}-"
        self.temp_root = self._temp_parent / f"{self._folder_prefix}{os.getpid()}"
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.reference_timeout_seconds,
            sock_read=settings.reference_timeout_seconds,
        )
        self._connections = settings.city_concurrency + 4
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Create the temp folder, removing those of processes that died, and the HTTP pool."""
        await asyncio.to_thread(self._prepare_temp)
        connector = aiohttp.TCPConnector(limit=self._connections)
        self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "open() first"
        return self._session

    def _prepare_temp(self) -> None:
        self._temp_parent.mkdir(parents=True, exist_ok=True)
        for folder in self._temp_parent.glob(f"{self._folder_prefix}*"):
            owner = folder.name.removeprefix(self._folder_prefix)
            if owner.isdigit() and (int(owner) == os.getpid() or not pid_alive(int(owner))):
                log.info("removing temporary files a stopped process left: %s", folder)
                shutil.rmtree(folder, ignore_errors=True)
        self.temp_root.mkdir()

    @contextlib.contextmanager
    def temp_files(self) -> Generator[tuple[Path, Path]]:
        """Fresh paths for one city's raw and Parquet file in the process's temp folder,
        removed afterwards. Plain names rather than a folder per city: creating and removing
        folders costs the event loop far more, and a city's work runs on it."""
        stem = self.temp_root / uuid.uuid4().hex
        paths = stem.with_suffix(".json"), stem.with_suffix(".parquet")
        try:
            yield paths
        finally:
            for path in paths:
                path.unlink(missing_ok=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await asyncio.to_thread(shutil.rmtree, self.temp_root, True)
