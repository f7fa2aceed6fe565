"""Real servers on 127.0.0.1 for tests and benchmarks: moto (S3), the simulator, the API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import uvicorn
from aiohttp import web
from moto.server import ThreadedMotoServer

from busstats.api.app import create_app
from busstats.core.settings import Settings
from busstats.reference.sim import SimulatorConfig, SimulatorState, create_simulator
from busstats.reference.sim.server import STATE
from busstats.storage import LocalStore, S3Store, Store

KEY_ID = SECRET = "testing"
REGION = "us-east-1"


def s3_settings(bucket: str, endpoint: str, **overrides: Any) -> Settings:
    """Settings for a bucket behind a loopback endpoint (moto, or a proxy in front of it),
    city work in threads as with `settings_for`; `overrides` are checked as any settings are
    (`_overridden`)."""
    base = Settings(
        store=f"s3://{bucket}",
        executor="threads",
        s3_endpoint_url=endpoint,
        aws_region=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    return _overridden(base, overrides)


def settings_for(store: Store, sim: RunningSimulator, **overrides: Any) -> Settings:
    """Settings naming this store; the store object itself is handed to the app; `overrides`
    are checked as any settings are (`_overridden`).

    City work runs in the API process's threads (`executor="threads"`): no worker processes
    to start per API, so a test that is not about the executor pays for none. A test (or a
    benchmark) that is passes `executor="local"` or `"dask"`."""
    assert isinstance(store, S3Store | LocalStore)
    location = f"s3://{store.bucket}" if isinstance(store, S3Store) else str(store.root)
    base = Settings(
        store=location, reference_url=sim.url, reference_backoff_seconds=0.01, executor="threads"
    )
    return _overridden(base, overrides)


def _overridden(base: Settings, overrides: dict[str, Any]) -> Settings:
    """`base` with some fields changed, checked like any settings: an unknown field or a value
    out of bounds fails here (`model_copy(update=...)` would take either silently)."""
    return Settings.model_validate({**base.model_dump(), **overrides})


async def open_s3_store(endpoint: str, bucket: str, **options: Any) -> S3Store:
    return await S3Store.open(
        bucket,
        region=REGION,
        endpoint_url=endpoint,
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        **options,
    )


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A loopback port free right now, for a server started as its own process."""
    with free_socket() as sock:
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class MotoEndpoint:
    url: str

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def new_bucket(self) -> str:
        name = f"busstats-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def moto_server() -> Iterator[MotoEndpoint]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoEndpoint(f"http://{host}:{port}")
    finally:
        server.stop()


@dataclass(frozen=True)
class RunningSimulator:
    url: str
    config: SimulatorConfig
    state: SimulatorState


@contextlib.asynccontextmanager
async def simulator(config: SimulatorConfig) -> AsyncIterator[RunningSimulator]:
    app = create_simulator(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    sock = free_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    port = sock.getsockname()[1]
    try:
        yield RunningSimulator(f"http://127.0.0.1:{port}", config, app[STATE])
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def api_server(settings: Settings, store: Store | None = None) -> AsyncIterator[str]:
    """The API under a real uvicorn on a free port; yields its base URL."""
    sock = free_socket()
    config = uvicorn.Config(
        create_app(settings, store), log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


@dataclass
class ServeProcess:
    """`busstats serve` in a process of its own, as in production."""

    process: asyncio.subprocess.Process
    url: str

    def kill(self) -> None:
        self.process.kill()

    async def stop(self) -> int:
        """SIGTERM, and wait (bounded) for the process to end."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            return await self.process.wait()


SHORT_LEASES = {"BUSSTATS_LEASE_SECONDS": "2", "BUSSTATS_LEASE_RENEW_SECONDS": "0.5"}
"""So that a killed process's jobs are taken for dead within seconds."""


def s3_environment(bucket: str, endpoint: str) -> dict[str, str]:
    return {
        "BUSSTATS_STORE": f"s3://{bucket}",
        "BUSSTATS_S3_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }


@contextlib.asynccontextmanager
async def serve_process(
    environment: dict[str, str], http: aiohttp.ClientSession, log: Path | None = None
) -> AsyncIterator[ServeProcess]:
    """Start `busstats serve` with these BUSSTATS_* settings on a free port; wait until it
    answers /health; kill it on the way out if the test did not stop it. Its stderr goes to
    `log` (a file: not a terminal, and never a full pipe), else nowhere."""
    with free_socket() as sock:
        port = sock.getsockname()[1]
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log.open("wb")) if log else subprocess.DEVNULL
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "busstats.cli", "serve", "--port", str(port),
            env={**os.environ, **SHORT_LEASES, **environment},
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    running = ServeProcess(process, f"http://127.0.0.1:{port}")
    try:
        async with asyncio.timeout(30):
            while True:
                assert process.returncode is None, "busstats serve exited early"
                try:
                    async with http.get(f"{running.url}/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
