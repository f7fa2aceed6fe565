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
import datetime as dt

import msgspec

from busstats.commit.dates import read_summary
from busstats.jobs.records import JobStore
from busstats.model.jobs import JobStatus
from busstats.orchestration.service import Service
from busstats.reference.sim import SimulatorConfig
from busstats.storage import S3Store
from busstats.storage.keys import PARQUET, RAW, date_lease_key, date_prefix, job_lease_key
from harness.servers import MotoEndpoint, open_s3_store, simulator
from tests.support.late_s3 import late_requests, settings, started, until_expired

DAY = dt.date(2024, 5, 1)
SIM = SimulatorConfig(rows=(20, 40), max_latency=0.05)


async def job_task(service: Service, job_id: str) -> asyncio.Task[None]:
    task = service.runner._running[job_id].task  # pyright: ignore[reportPrivateUsage]
    assert task is not None
    return task


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
        c: Service | None = None
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
            # C starts only now: its own recovery (at start, then on its keeper's timer) has
            # nothing left to do, so the summary PUT held below is its job's commit, never a
            # fence of its recovery racing B's on a loaded machine.
            c = await started(store_c, settings(bucket, proxy_c.url, sim.url))
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
            if c is not None:
                await c.close()
            await store_a.close()
            await store_c.close()
            await direct.close()
