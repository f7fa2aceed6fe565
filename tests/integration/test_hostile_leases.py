"""Hostile: leases when one S3 request is slow (held by a proxy, then let through unchanged)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from pathlib import Path

import msgspec
import pytest

from busstats.core.clock import now
from busstats.core.settings import Settings
from busstats.jobs.records import JobStore
from busstats.model.jobs import JobStatus
from busstats.orchestration.leases import LeaseKeeper
from busstats.orchestration.service import Service
from busstats.reference.sim import SimulatorConfig
from busstats.storage import LocalStore
from busstats.storage.keys import date_lease_key, job_lease_key
from busstats.storage.leases import LeaseBody, Leases
from harness.servers import MotoEndpoint, open_s3_store, simulator
from tests.support.late_s3 import late_requests, settings, started, until_expired

DAY = dt.date(2024, 5, 1)
OTHER_DAY = dt.date(2024, 5, 2)


async def test_a_late_release_does_not_delete_the_lease_another_process_took_since(
    moto: MotoEndpoint, bucket: str
) -> None:
    """`Leases.release` reads the lease, then deletes it unconditionally: if the lease expired
    and was taken over between the two, the new holder's lease is deleted, and a third
    process can take the date while the second still writes it."""
    async with late_requests(moto.url) as proxy:
        direct = await open_s3_store(moto.url, bucket)
        slow = await open_s3_store(proxy.url, bucket, attempts=1)
        try:
            key = date_lease_key(DAY)
            a, b = Leases(slow, "A", seconds=1.0), Leases(direct, "B", seconds=60.0)
            lease = await a.take(key, holder="job-a")
            assert lease is not None
            # The release's write, whatever it is: DeleteObjects is a POST on the bucket.
            proxy.hold("PUT|POST|DELETE", rf"^/{bucket}(/{re.escape(key)})?$")
            release = asyncio.create_task(a.release(lease))
            async with asyncio.timeout(10):
                await proxy.held.wait()
            await until_expired(direct, key)
            taken = await b.take(key, holder="job-b")
            assert taken is not None
            proxy.released.set()
            async with asyncio.timeout(10):
                await release
            current = await b.read(key)
            assert current is not None, "A's late release deleted the lease B took"
            assert current.body.holder == "job-b"
        finally:
            await slow.close()
            await direct.close()


async def test_one_slow_renewal_does_not_cost_the_other_jobs_of_the_process_their_leases(
    moto: MotoEndpoint, bucket: str
) -> None:
    """The keeper renews every lease of the process one after the other: while one renewal
    hangs (an S3 call may take up to read_timeout 60 s x attempts, longer than a 30 s lease),
    every other job's lease expires, and any other process ends those healthy jobs."""
    slow_cities = SimulatorConfig(rows=(5, 10), min_latency=60, max_latency=60)
    async with simulator(slow_cities) as sim, late_requests(moto.url) as proxy:
        direct = await open_s3_store(moto.url, bucket)
        store_a = await open_s3_store(proxy.url, bucket, attempts=1)
        # Leases of 6 s: a renewal may take 2 s (a third of it), which a loaded moto needs;
        # with 2 s leases every renewal timed out on a busy machine, not just the held one.
        lease = {"lease_seconds": 6.0, "lease_renew_seconds": 0.5}
        a = await started(store_a, settings(bucket, proxy.url, sim.url, **lease))
        b = Service(direct, settings(bucket, moto.url, sim.url, **lease))
        try:
            first = await a.runner.submit(DAY)
            second = await a.runner.submit(OTHER_DAY)
            # The next renewal of the first job's lease is slow.
            proxy.hold("PUT", rf"/{job_lease_key(first.job_id)}$", header="If-Match")
            async with asyncio.timeout(10):
                await proxy.held.wait()
            # Both leases expire within a lease length and a bit if they are not renewed; a
            # keeper that gives up on the slow request and renews the others never lets them.
            for job in (second, first):
                with contextlib.suppress(TimeoutError):
                    await until_expired(direct, job_lease_key(job.job_id), limit=6.5)
            await b.recover()
            record = await JobStore(direct).load(second.job_id)
            assert record is not None
            assert record.status is JobStatus.RUNNING, (
                f"the second job, whose process is alive and whose requests all answer, was "
                f"ended by another process: {record.status} {record.error!r}"
            )
        finally:
            proxy.released.set()
            await a.close()
            await store_a.close()
            await direct.close()


async def test_the_one_keeper_renews_tells_the_owner_of_a_lost_lease_and_recovers_on_a_timer(
    tmp_path: Path,
) -> None:
    """The process's one `LeaseKeeper`, as jobs and backfills share it: every lease it holds
    is renewed on its timer, an owner whose lease another process took is told (and the
    keeper stops renewing it), and every kind's recovery runs at start and again a lease
    length later."""
    store = LocalStore(tmp_path / "store")
    keeper = LeaseKeeper(store, Settings(lease_seconds=2.0, lease_renew_seconds=0.2))
    recoveries: list[str] = []
    recovered_again = asyncio.Event()

    async def recover() -> None:
        recoveries.append("jobs")
        if len(recoveries) == 2:
            recovered_again.set()

    keeper.add_recovery("jobs", recover)
    lost = asyncio.Event()
    kept = await keeper.take(job_lease_key("kept"), "kept")
    taken = await keeper.take(job_lease_key("taken"), "taken", on_lost=lambda _: lost.set())
    assert kept is not None
    assert taken is not None
    first_expiry = kept.lease.body.expires_at
    await keeper.start()
    try:
        assert recoveries == ["jobs"]
        other = Leases(store, "another process", seconds=60.0)
        current = await other.read(taken.key)
        assert current is not None
        # another process took it over (as it would have after an expiry)
        await store.put_bytes(
            taken.key,
            msgspec.json.encode(LeaseBody("taken", "another process", now() + dt.timedelta(60))),
            if_match=current.etag,
        )
        async with asyncio.timeout(10):
            await lost.wait()
            await recovered_again.wait()  # a lease length after the first, renewals between
        assert kept.lease.body.expires_at > first_expiry
        after = await other.read(taken.key)
        assert after is not None
        assert after.body.owner == "another process", "the keeper renewed a lease it lost"
        stored = await other.read(kept.key)
        assert stored is not None
        assert stored.body.owner == keeper.owner
    finally:
        await keeper.close()


GHOST = "deadbeef" * 4
"""A job id whose record a test damages."""


def leave_unreadable_records(root: Path) -> None:
    """An expired lease of a stopped process, for a job and for a backfill, whose records are
    truncated JSON: what a damaged store, or a tool that wrote it, leaves."""
    for kind in ("jobs", "backfills"):
        (root / kind / "running").mkdir(parents=True, exist_ok=True)
        expired = LeaseBody(
            holder=GHOST, owner="ghost:1:abc", expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        )
        (root / kind / "running" / GHOST).write_bytes(msgspec.json.encode(expired))
        (root / kind / f"{GHOST}.json").write_bytes(
            b'{"job_id": "' + GHOST.encode() + b'", "x": tru'
        )


async def test_an_unreadable_record_left_behind_stops_neither_the_start_nor_the_keeper(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Recovery skips a record it cannot read (and says so, each round); the process starts,
    and its keeper goes on renewing its own leases and looking for work left behind."""
    store = LocalStore(tmp_path / "store")
    leave_unreadable_records(tmp_path / "store")
    service = Service(
        store, Settings(store=str(tmp_path / "store"), lease_seconds=2.0, lease_renew_seconds=0.2)
    )
    await service.open()  # at start: both records are skipped, nothing raised
    try:
        held = await service.keeper.take(job_lease_key("mine"), "mine")
        assert held is not None
        first_expiry = held.lease.body.expires_at

        def skipped(kind: str) -> int:
            return sum(
                f"could not end {kind}/running/{GHOST}" in record.getMessage()
                for record in caplog.records
            )

        # two rounds on the keeper's timer after the one at start: the loop outlived them
        async with asyncio.timeout(60):
            while skipped("jobs") < 3 or skipped("backfills") < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert held.lease.body.expires_at > first_expiry, "the keeper stopped renewing"
    finally:
        await service.close()
