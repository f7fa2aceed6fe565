"""moto, the simulator and `busstats serve`, each in a process of its own, the service with
its memory measured: what a benchmark runs against."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from harness.servers import MotoEndpoint, free_port
from harness.tree_rss import TreeRss

FINISHED = {"succeeded", "partial", "failed"}


@dataclass
class Service:
    """`busstats serve` in its own process, as deployed."""

    url: str
    process: subprocess.Popen[bytes]
    rss: TreeRss
    """The service and its worker processes together."""
    http: aiohttp.ClientSession

    async def get(self, path: str, **params: str) -> tuple[int, Any, float]:
        started = time.perf_counter()
        async with self.http.get(self.url + path, params=params) as response:
            body = await response.json()
        return response.status, body, time.perf_counter() - started

    async def ingest(self, day: str, poll: float = 0.05) -> dict[str, Any]:
        async with self.http.post(f"{self.url}/process-request", params={"date": day}) as response:
            assert response.status == 202, await response.text()
            job_id = (await response.json())["job_id"]
        async with asyncio.timeout(3600):
            while True:
                status, job, _ = await self.get(f"/jobs/{job_id}")
                assert status == 200
                if job["status"] in FINISHED:
                    return job
                await asyncio.sleep(poll)


@contextlib.asynccontextmanager
async def service(env: dict[str, str], log: Path) -> AsyncIterator[Service]:
    port = free_port()
    with log.open("wb") as log_file:
        # Popen returns at once; psutil needs its pid to follow the service's memory.
        process = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "busstats.cli", "serve", "--port", str(port)],
            env={**os.environ, "BUSSTATS_LOG_LEVEL": "WARNING", **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        rss = TreeRss([process.pid], every=0.01)
        timeout = aiohttp.ClientTimeout(total=3600)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            running = Service(f"http://127.0.0.1:{port}", process, rss, http)
            try:
                await _wait_until_up(running)
                yield running
            finally:
                rss.stop()
                process.terminate()
                process.wait(timeout=30)


async def _wait_until_up(running: Service) -> None:
    async with asyncio.timeout(60):
        while True:
            if running.process.poll() is not None:
                raise RuntimeError("the service exited at start; see its log")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                status, _, _ = await running.get("/health")
                if status == 200:
                    return
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def moto_process() -> Iterator[MotoEndpoint]:
    """moto's S3 server in its own process, so a load generator does not share its GIL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield MotoEndpoint(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Simulator:
    url: str
    args: list[str] = field(default_factory=list[str])


@contextlib.contextmanager
def simulator_process(*args: str) -> Iterator[Simulator]:
    """`busstats refsim` in its own process, so generating rows does not slow the service."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "busstats.cli", "refsim", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield Simulator(f"http://127.0.0.1:{port}", list(args))
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited at start")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within 30 s")
