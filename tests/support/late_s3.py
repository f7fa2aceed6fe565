"""An S3 request held in the network: a proxy in front of moto that holds one chosen request
until the test lets it through (to S3, unchanged), and job runners that talk through it, for
the tests of a process whose lease expired while a request was in flight."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from busstats.core.clock import now
from busstats.core.settings import Settings
from busstats.orchestration.service import Service
from busstats.storage import S3Store
from busstats.storage.leases import Leases
from harness.servers import s3_settings
from tests.support.faultproxy import PassOn, loopback_proxy


@dataclass
class LateRequests:
    """A proxy in front of moto that holds the first request matching (method regex, path
    regex, header) until `released` is set, then forwards it unchanged: a request delayed in
    the network."""

    url: str
    method: str = ""
    target: str = "^$"
    header: str = ""
    """Hold only requests carrying this header (e.g. If-Match: a renewal, not a creation)."""
    held: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    answer_status: int | None = None

    def hold(self, method: str, target: str, header: str = "") -> None:
        self.method, self.target, self.header = method, target, header

    def matches(self, request: web.Request) -> bool:
        return (
            not self.held.is_set()
            and re.fullmatch(self.method, request.method) is not None
            and re.search(self.target, request.path) is not None
            and (not self.header or self.header in request.headers)
        )


@contextlib.asynccontextmanager
async def late_requests(upstream: str) -> AsyncIterator[LateRequests]:
    proxy = LateRequests("")

    async def handle(request: web.Request, body: bytes, pass_on: PassOn) -> web.Response:
        late = proxy.matches(request)
        if late:
            proxy.held.set()
            await proxy.released.wait()
        answer = await pass_on()
        if late:
            proxy.answer_status = answer.status
            proxy.answered.set()
        return answer

    async with loopback_proxy(upstream, handle) as url:
        proxy.url = url
        try:
            yield proxy
        finally:
            proxy.released.set()


def settings(bucket: str, endpoint: str, reference_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "reference_url": reference_url,
        "reference_backoff_seconds": 0.01,
        "lease_seconds": 2.0,
        "lease_renew_seconds": 0.5,
        "s3_attempts": 1,
    }
    # Unchecked overrides: `lease_renew_seconds=600` makes a process that stops renewing its
    # leases, which no user may configure (at most half of the lease).
    return s3_settings(bucket, endpoint, **base).model_copy(update=overrides)


async def started(store: S3Store, config: Settings) -> Service:
    service = Service(store, config)
    await service.open()
    return service


async def until_expired(direct: S3Store, key: str, limit: float = 10) -> None:
    """Wait (bounded) until the lease under `key` has expired by the wall clock."""
    leases = Leases(direct, "observer", 2.0)
    async with asyncio.timeout(limit):
        while True:
            lease = await leases.read(key)
            if lease is None or lease.body.expires_at <= now():
                return
            await asyncio.sleep(0.1)
