"""Real servers on 127.0.0.1 for tests and benchmarks: moto (S3), the simulator, the API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import msgspec
import uvicorn
from aiohttp import web
from moto.server import ThreadedMotoServer

from busstats.app import create_app
from busstats.config import Settings
from busstats.refsim import SimulatorConfig, SimulatorState, create_simulator
from busstats.refsim.server import STATE
from busstats.store import S3Store, Store

KEY_ID = SECRET = "testing"
REGION = "us-east-1"


def s3_settings(bucket: str, endpoint: str, **overrides: Any) -> Settings:
    """Settings for a bucket behind a loopback endpoint (moto, or a proxy in front of it)."""
    base = Settings(
        store=f"s3://{bucket}",
        s3_endpoint_url=endpoint,
        aws_region=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    return msgspec.structs.replace(base, **overrides)


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
