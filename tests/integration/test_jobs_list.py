"""GET /jobs: newest first, filtered by date, range and status, paged by an opaque cursor,
found through the index alone (never a GET of a job record), and correct as statuses change
across processes and crashes."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from typing import Any

import aiohttp
import pytest

from busstats.core.settings import Settings
from busstats.jobs.index import JobFilter, decode_cursor, encode_cursor, list_jobs
from busstats.jobs.records import JobStore
from busstats.model.jobs import CityReport, JobRecord, JobStatus
from busstats.orchestration.service import Service
from busstats.reference.sim import SimulatorConfig
from busstats.storage import Store
from busstats.storage.keys import JOB_INDEX, job_index_key, job_lease_key
from busstats.storage.leases import Leases
from harness.servers import (
    MotoEndpoint,
    api_server,
    open_s3_store,
    s3_settings,
)
from tests.support.faultproxy import fault_proxy
from tests.support.flows import ingest

START = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
FINAL_STATUSES = [JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED]


def a_job(number: int, day: dt.date) -> JobRecord:
    """The `number`-th job, one second after the one before it."""
    return JobRecord(
        job_id=uuid.uuid4().hex,
        date=day,
        status=JobStatus.QUEUED,
        created_at=START + dt.timedelta(seconds=number, microseconds=number),
    )


async def seed(store: Store, count: int) -> list[JobRecord]:
    """`count` jobs over three dates; every third queued, running and then final in turn."""
    jobs = JobStore(store)
    made: list[JobRecord] = []
    for number in range(count):
        job = a_job(number, dt.date(2024, 5, 1 + number % 3))
        etag = await jobs.create(job)
        if number % 3:
            job.status = JobStatus.RUNNING
            if number % 3 == 2:
                job.status = FINAL_STATUSES[(number // 3) % 3]
            await jobs.replace(job, etag)
            await jobs.index(job)
        made.append(job)
    return made


async def all_pages(store: Store, keep: JobFilter, limit: int) -> list[list[tuple[str, str]]]:
    pages: list[list[tuple[str, str]]] = []
    cursor = None
    for _ in range(100):
        page = await list_jobs(store, keep, limit, cursor)
        pages.append([(job.job_id, job.status.value) for job in page.jobs])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
    raise AssertionError("more than 100 pages")


def expected(jobs: list[JobRecord], keep: JobFilter) -> list[tuple[str, str]]:
    newest_first = sorted(jobs, key=lambda job: job.created_at, reverse=True)
    return [
        (job.job_id, job.status.value)
        for job in newest_first
        if (keep.first is None or job.date >= keep.first)
        and (keep.last is None or job.date <= keep.last)
        and (keep.status is None or job.status is keep.status)
    ]


@pytest.mark.parametrize(
    "keep",
    [
        JobFilter(),
        JobFilter(first=dt.date(2024, 5, 2), last=dt.date(2024, 5, 2)),
        JobFilter(first=dt.date(2024, 5, 2)),
        JobFilter(last=dt.date(2024, 5, 2)),
        JobFilter(status=JobStatus.RUNNING),
        JobFilter(status=JobStatus.FAILED, first=dt.date(2024, 5, 3)),
        JobFilter(status=JobStatus.QUEUED, last=dt.date(2024, 4, 30)),
    ],
)
async def test_pages_cover_every_matching_job_once_newest_first(
    store: Store, keep: JobFilter
) -> None:
    jobs = await seed(store, 23)
    pages = await all_pages(store, keep, limit=4)
    listed = [job for page in pages for job in page]
    assert listed == expected(jobs, keep)
    assert all(len(page) == 4 for page in pages[:-1])
    assert len(pages) == max(1, -(-len(listed) // 4))  # no empty page after a full one


async def test_the_most_advanced_status_wins_over_a_stale_entry(store: Store) -> None:
    """A stalled process writes `running` after another process ended its job."""
    jobs = JobStore(store)
    job = a_job(0, dt.date(2024, 5, 1))
    etag = await jobs.create(job)
    job.status = JobStatus.FAILED
    await jobs.replace(job, etag)
    await jobs.index(job)
    stale = job_index_key(job.created_at, job.job_id, job.date, JobStatus.RUNNING)
    await store.put_bytes(stale, b"")
    assert len(await store.list_keys(JOB_INDEX)) == 2
    page = await list_jobs(store, JobFilter(), limit=10)
    assert [(j.job_id, j.status) for j in page.jobs] == [(job.job_id, JobStatus.FAILED)]
    running = await list_jobs(store, JobFilter(status=JobStatus.RUNNING), limit=10)
    assert running.jobs == []


async def test_a_status_change_replaces_the_entry(store: Store) -> None:
    jobs = JobStore(store)
    job = a_job(0, dt.date(2024, 5, 1))
    etag = await jobs.create(job)
    for status in (JobStatus.RUNNING, JobStatus.SUCCEEDED):
        job.status = status
        etag = await jobs.replace(job, etag)
        await jobs.index(job)
        keys = await store.list_keys(JOB_INDEX)
        assert keys == [job_index_key(job.created_at, job.job_id, job.date, status)]


async def test_entries_of_one_job_split_across_list_chunks_stay_one_job(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from busstats.jobs import index as jobindex

    monkeypatch.setattr(jobindex, "LIST_CHUNK", 3)
    jobs = await seed(store, 6)
    for job in jobs:  # a stale entry beside each job's real one
        await store.put_bytes(
            job_index_key(job.created_at, job.job_id, job.date, JobStatus.QUEUED), b""
        )
    pages = await all_pages(store, JobFilter(), limit=2)
    assert [job for page in pages for job in page] == expected(jobs, JobFilter())


async def test_a_strict_filter_ends_a_page_short_with_a_cursor(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from busstats.jobs import index as jobindex

    monkeypatch.setattr(jobindex, "LIST_CHUNK", 4)
    jobs = await seed(store, 20)
    keep = JobFilter(status=JobStatus.SUCCEEDED)
    first = await list_jobs(store, keep, limit=50, scan_limit=8)
    assert first.next_cursor is not None
    assert len(first.jobs) < len(expected(jobs, keep))
    pages = [[(j.job_id, j.status.value) for j in first.jobs]]
    cursor = first.next_cursor
    while cursor is not None:
        page = await list_jobs(store, keep, limit=50, after=cursor, scan_limit=8)
        pages.append([(j.job_id, j.status.value) for j in page.jobs])
        cursor = page.next_cursor
    assert [job for page in pages for job in page] == expected(jobs, keep)


@pytest.mark.parametrize(
    "cursor",
    ["", "x", "%%%", encode_cursor("0" * 16) + "A", encode_cursor("1" * 16 + "-" + "g" * 32)],
)
def test_a_cursor_the_api_did_not_give_is_refused(cursor: str) -> None:
    from busstats.jobs.index import BadCursor

    with pytest.raises(BadCursor):
        decode_cursor(cursor)


async def test_recovery_indexes_a_job_whose_process_died_before_indexing_it(
    store: Store,
) -> None:
    jobs = JobStore(store)
    job = a_job(0, dt.date(2024, 5, 1))
    etag = await jobs.create(job)
    await Leases(store, "dead process", seconds=0.001).take(job_lease_key(job.job_id), job.job_id)
    job.status = JobStatus.RUNNING
    job.cities = [CityReport(city_id=0, city_name="A", country="B")]
    job.conclude()  # the record says failed; the process died before the index did too
    await jobs.replace(job, etag)
    assert (await list_jobs(store, JobFilter(), 10)).jobs[0].status is JobStatus.QUEUED

    await Service(store, Settings(store="unused")).recover()
    page = await list_jobs(store, JobFilter(), 10)
    assert [(j.job_id, j.status) for j in page.jobs] == [(job.job_id, JobStatus.FAILED)]
    assert len(await store.list_keys(JOB_INDEX)) == 1


# ---- through the API -------------------------------------------------------------------


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.mark.both_stores
@pytest.mark.parametrize("simulator_config", [SimulatorConfig(rows=(1, 5), max_latency=0.0)])
async def test_jobs_run_through_the_api_are_listed_with_their_final_status(
    store: Store, api: str, http: aiohttp.ClientSession
) -> None:
    done = [await ingest(http, api, day) for day in ("2024-05-01", "2024-05-02", "2024-05-01")]
    # The entry follows the record by one PUT: poll (bounded) until the list caught up.
    async with asyncio.timeout(10):
        while True:
            pages: list[dict[str, Any]] = [await get_json(http, f"{api}/jobs?limit=2")]
            while pages[-1]["next"] is not None:
                assert pages[-1]["next"].startswith("/jobs?")
                pages.append(await get_json(http, api + pages[-1]["next"]))
            listed = [job for page in pages for job in page["jobs"]]
            if all(job["status"] == "succeeded" for job in listed):
                break
            await asyncio.sleep(0.02)
    assert [job["job_id"] for job in listed] == [job["job_id"] for job in reversed(done)]
    for job, record in zip(listed, reversed(done), strict=True):
        assert job == {
            "job_id": record["job_id"],
            "date": record["date"],
            "status": "succeeded",
            "created_at": record["created_at"],
            "status_url": f"/jobs/{record['job_id']}",
        }
    assert len(await store.list_keys(JOB_INDEX)) == 3  # queued, running entries removed

    on_day = await get_json(http, f"{api}/jobs?date=2024-05-01&status=succeeded")
    assert [job["job_id"] for job in on_day["jobs"]] == [done[2]["job_id"], done[0]["job_id"]]
    assert on_day["next"] is None
    ranged = await get_json(http, f"{api}/jobs?from=2024-05-02&to=2024-05-09")
    assert [job["job_id"] for job in ranged["jobs"]] == [done[1]["job_id"]]
    none = await get_json(http, f"{api}/jobs?status=failed")
    assert none == {"jobs": [], "next": None}
    filtered = await get_json(http, f"{api}/jobs?date=2024-05-01&limit=1")
    assert filtered["next"] is not None
    assert "date=2024-05-01" in filtered["next"]
    rest = await get_json(http, api + filtered["next"])
    assert [job["job_id"] for job in rest["jobs"]] == [done[0]["job_id"]]


async def test_listing_reads_no_job_record(moto: MotoEndpoint, http: aiohttp.ClientSession) -> None:
    bucket = moto.new_bucket()
    s3 = await open_s3_store(moto.url, bucket)
    try:
        jobs = await seed(s3, 30)
    finally:
        await s3.close()
    async with fault_proxy(moto.url) as proxy:
        settings = s3_settings(bucket, proxy.url, reference_url="http://127.0.0.1:9")
        async with api_server(settings) as api:
            proxy.seen.clear()
            first = await get_json(http, f"{api}/jobs?limit=6&status=running")
            second = await get_json(http, api + first["next"])
        listed = [job["job_id"] for job in first["jobs"] + second["jobs"]]
        assert listed == [
            job_id for job_id, _ in expected(jobs, JobFilter(status=JobStatus.RUNNING))
        ]
        assert len(listed) == 10
        assert second["next"] is None
        reads = [line for line in proxy.seen if re.search(r"/jobs/[0-9a-f]{32}\.json", line)]
        assert reads == []
        lists = [line for line in proxy.seen if "list-type=2" in line]
        assert len(lists) == 2, proxy.seen
        assert len(proxy.seen) == 2, proxy.seen  # one LIST per page and nothing else


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("date=2024-13-01", ["'date' must be a real date"]),
        ("date=", ["'date' is empty"]),
        ("from=2024-05-02&to=2024-05-01", ["after", "from <= to"]),
        ("date=2024-05-01&from=2024-05-01", ["either 'date' or 'from'/'to'"]),
        ("status=done", ["'status' must be one of queued, running, succeeded, partial, failed"]),
        ("limit=0", ["'limit' must be a whole number from 1 to 1000, got '0'"]),
        ("limit=1001", ["from 1 to 1000"]),
        ("limit=-1", ["from 1 to 1000"]),
        ("limit=1e3", ["from 1 to 1000"]),
        ("limit=%D9%A3", ["from 1 to 1000"]),  # an Arabic-Indic digit
        ("limit=5&limit=6", ["given 2 times"]),
        ("cursor=abc", ["'cursor' is not one this API gave"]),
        ("page=2", ["unknown query parameter 'page'; /jobs accepts date, from, to, status"]),
    ],
)
async def test_bad_list_queries_are_400_with_a_reason(
    tmp_path: Any, http: aiohttp.ClientSession, query: str, words: list[str]
) -> None:
    settings = Settings(store=str(tmp_path / "store"), reference_url="http://127.0.0.1:9")
    async with api_server(settings) as api, http.get(f"{api}/jobs?{query}") as response:
        assert response.status == 400
        body = await response.json()
        assert set(body) == {"error"}
        for word in words:
            assert word in body["error"]
