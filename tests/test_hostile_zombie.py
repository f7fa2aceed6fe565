"""Hostile: a process whose lease expired while one of its S3 requests was in flight (a slow
network, a paused VM). Another process ends its job and sweeps the date; then the late
request lands. The zombie must not commit over, nor sweep away, the new owner's work.

Each test runs three job runners on one moto bucket, as three processes would (each its own
store client and lease owner): A, the zombie, talks to S3 through a proxy that holds one
chosen request until the test lets it through (to S3, unchanged); B ends A's job as any
process's recovery does; C (test 2) is a new job for the date, also behind a holding proxy.

A's keeper runs every 600 s, i.e. not during the test: the held request is then the first of
A's to learn that its lease is gone. In production that is what happens whenever the commit's
own lease renewal is the slow request: the keeper waits on the same per-lease lock
(orchestration/leases.py `HeldLease.lock`), so it cannot notice first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from busstats.commit.dates import read_summary
from busstats.core.clock import now
from busstats.core.settings import Settings
from busstats.jobs.records import JobStore
from busstats.model.jobs import JobStatus
from busstats.orchestration.service import Service
from busstats.reference.sim import SimulatorConfig
from busstats.storage import S3Store
from busstats.storage.keys import PARQUET, RAW, date_lease_key, date_prefix, job_lease_key
from busstats.storage.leases import Leases
from harness.servers import MotoEndpoint, open_s3_store, s3_settings, simulator
from tests.faultproxy import PassOn, loopback_proxy

DAY = dt.date(2024, 5, 1)
SIM = SimulatorConfig(rows=(20, 40), max_latency=0.05)


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
    return s3_settings(bucket, endpoint, **{**base, **overrides})


async def started(store: S3Store, config: Settings) -> Service:
    service = Service(store, config)
    await service.open()
    return service


async def job_task(service: Service, job_id: str) -> asyncio.Task[None]:
    task = service.runner._running[job_id].task  # pyright: ignore[reportPrivateUsage]
    assert task is not None
    return task


async def until_expired(direct: S3Store, key: str, limit: float = 10) -> None:
    """Wait (bounded) until the lease under `key` has expired by the wall clock."""
    leases = Leases(direct, "observer", 2.0)
    async with asyncio.timeout(limit):
        while True:
            lease = await leases.read(key)
            if lease is None or lease.body.expires_at <= now():
                return
            await asyncio.sleep(0.1)


async def missing_named_files(direct: S3Store) -> list[str]:
    """Keys the date's committed summary names that are not in the bucket."""
    summary, _ = await read_summary(direct, DAY)
    counted = summary.filter("counted")
    named = {*counted["raw_key"], *counted["parquet_key"]}
    present = set(await direct.list_keys(date_prefix(RAW, DAY))) | set(
        await direct.list_keys(date_prefix(PARQUET, DAY))
    )
    return sorted(named - present)


async def test_a_commit_that_lands_after_recovery_swept_the_date_names_no_deleted_file(
    moto: MotoEndpoint, bucket: str
) -> None:
    async with (
        simulator(SIM) as sim,
        late_requests(moto.url) as proxy_a,
    ):
        direct = await open_s3_store(moto.url, bucket)
        store_a = await open_s3_store(proxy_a.url, bucket, attempts=1)
        a = await started(store_a, settings(bucket, proxy_a.url, sim.url, lease_renew_seconds=600))
        b = Service(direct, settings(bucket, moto.url, sim.url))
        try:
            # A first, ordinary ingest: the date has a commit.
            first = await a.runner.submit(DAY)
            async with asyncio.timeout(30):
                await (await job_task(a, first.job_id))
            # A re-ingests; its commit (the summary PUT) is late.
            proxy_a.hold("PUT", rf"/summary/{DAY}\.parquet$")
            job = await a.runner.submit(DAY)
            zombie = await job_task(a, job.job_id)
            async with asyncio.timeout(30):
                await proxy_a.held.wait()
            await until_expired(direct, job_lease_key(job.job_id))
            await until_expired(direct, date_lease_key(DAY))
            # B's recovery ends A's job and sweeps the date (A's new files are not committed).
            await b.recover()
            ended = await JobStore(direct).load(job.job_id)
            assert ended is not None
            assert ended.status is JobStatus.FAILED
            # The late commit arrives.
            proxy_a.released.set()
            async with asyncio.timeout(30):
                await proxy_a.answered.wait()
                await asyncio.gather(zombie, return_exceptions=True)
            missing = await missing_named_files(direct)
            assert missing == [], (
                f"the late commit got HTTP {proxy_a.answer_status}; the date's summary names "
                f"{len(missing)} files the recovery deleted, e.g. {missing[:2]}"
            )
        finally:
            await a.close()
            await store_a.close()
            await direct.close()


async def test_a_zombie_that_learns_it_lost_its_date_does_not_sweep_the_new_owners_files(
    moto: MotoEndpoint, bucket: str
) -> None:
    async with (
        simulator(SIM) as sim,
        late_requests(moto.url) as proxy_a,
        late_requests(moto.url) as proxy_c,
    ):
        direct = await open_s3_store(moto.url, bucket)
        store_a = await open_s3_store(proxy_a.url, bucket, attempts=1)
        store_c = await open_s3_store(proxy_c.url, bucket, attempts=1)
        a = await started(store_a, settings(bucket, proxy_a.url, sim.url, lease_renew_seconds=600))
        b = Service(direct, settings(bucket, moto.url, sim.url))
        c = await started(store_c, settings(bucket, proxy_c.url, sim.url))
        try:
            first = await a.runner.submit(DAY)
            async with asyncio.timeout(30):
                await (await job_task(a, first.job_id))
            # A re-ingests; the lease renewal just before its commit is late.
            proxy_a.hold("PUT", rf"/leases/date={DAY}$", header="If-Match")
            job = await a.runner.submit(DAY)
            zombie = await job_task(a, job.job_id)
            async with asyncio.timeout(30):
                await proxy_a.held.wait()
            await until_expired(direct, job_lease_key(job.job_id))
            await until_expired(direct, date_lease_key(DAY))
            await b.recover()
            # C, a new job for the date, uploads its files; its commit is held.
            proxy_c.hold("PUT", rf"/summary/{DAY}\.parquet$")
            new = await c.runner.submit(DAY)
            owner = await job_task(c, new.job_id)
            async with asyncio.timeout(30):
                await proxy_c.held.wait()
            uploaded = [
                key
                for key in await direct.list_keys(date_prefix(PARQUET, DAY))
                if new.job_id in key
            ]
            assert uploaded, "C uploaded its files before committing"
            # A's renewal is refused (C holds the date now); A ends its job.
            proxy_a.released.set()
            async with asyncio.timeout(30):
                await asyncio.gather(zombie, return_exceptions=True)
            after_zombie = set(await direct.list_keys(date_prefix(PARQUET, DAY)))
            # C commits.
            proxy_c.released.set()
            async with asyncio.timeout(30):
                await owner
            final = await JobStore(direct).load(new.job_id)
            assert final is not None
            assert set(uploaded) <= after_zombie, (
                f"the zombie A (renewal answered HTTP {proxy_a.answer_status}) deleted the "
                f"uncommitted files of C, the date's new owner: "
                f"{len(set(uploaded) - after_zombie)} of {len(uploaded)}"
            )
            assert await missing_named_files(direct) == []
            assert final.status is JobStatus.SUCCEEDED, msgspec.json.encode(final)
        finally:
            await a.close()
            await c.close()
            await store_a.close()
            await store_c.close()
            await direct.close()
