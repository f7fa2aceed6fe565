"""Hostile tests of uploads (`PUT /raw/{date}/{city_id}`): gzip bodies as RFC 1952 allows
them (several members) or with bytes after their end, and a cancel that lands after the
upload's commit."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from busstats.commit.dates import read_summary
from busstats.orchestration import uploads
from busstats.reference.sim import SimulatorConfig
from busstats.storage import LocalStore
from harness.servers import (
    MotoEndpoint,
    RunningSimulator,
    api_server,
    open_s3_store,
    s3_settings,
    settings_for,
    simulator,
)
from tests.support.faultproxy import S3_ERROR, PassOn, loopback_proxy
from tests.support.flows import ingest

DAY = "2024-05-01"
DATE = dt.date(2024, 5, 1)
GZIP = {"Content-Encoding": "gzip"}


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with simulator(SimulatorConfig(rows=(20, 40), max_latency=0.0)) as running:
        yield running


async def upstream_rows(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> tuple[int, list[dict[str, Any]]]:
    async with http.get(f"{sim.url}/cities") as response:
        city_id: int = (await response.json())[0]["id"]
    params = {"date": f"{DAY}T00:00:00Z"}
    async with http.get(f"{sim.url}/cities/{city_id}/stats", params=params) as response:
        rows: list[dict[str, Any]] = json.loads(await response.read())
    return city_id, rows


async def put(
    http: aiohttp.ClientSession, api: str, city_id: int, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with http.put(f"{api}/raw/{DAY}/{city_id}", data=body, headers=headers) as response:
        return response.status, await response.json()


async def test_a_gzip_body_of_two_members_counts_every_row(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """`cat a.gz b.gz` is one gzip file (RFC 1952 2.2; gzip -d, Python's gzip module and
    zcat decode both members). receive_body stops at the first member's end
    (`while pending and not decoder.eof`) and drops the rest without a word: here the first
    member alone is not a JSON array, so a valid body is refused as "unusable" (422)."""
    city_id, rows = await upstream_rows(http, sim)
    whole = json.dumps(rows).encode()
    half = len(whole) // 2
    body = gzip.compress(whole[:half]) + gzip.compress(whole[half:])
    assert gzip.decompress(body) == whole
    store = LocalStore(tmp_path / "store")
    async with api_server(settings_for(store, sim), store) as api:
        status, job = await put(http, api, city_id, body, GZIP)
    assert status == 201, job
    assert job["cities"][0]["rows"] == len(rows), job


async def test_bytes_after_the_end_of_the_gzip_stream_are_not_silently_dropped(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """A gzip member holding 5 rows followed by a second one holding 5 more: the decoded
    body `[..5..][..5..]` is not a JSON array (sent without gzip, the same bytes are a 422),
    yet the upload commits 5 rows and answers 201. Either decode every member (and refuse
    the body as 422) or refuse the trailing bytes (400); never count part of what was sent."""
    city_id, rows = await upstream_rows(http, sim)
    first, second = json.dumps(rows[:5]).encode(), json.dumps(rows[5:10]).encode()
    store = LocalStore(tmp_path / "store")
    async with api_server(settings_for(store, sim), store) as api:
        plain_status, _ = await put(http, api, city_id, first + second, {})
        assert plain_status == 422
        status, answer = await put(
            http, api, city_id, gzip.compress(first) + gzip.compress(second), GZIP
        )
        summary, _ = await read_summary(store, DATE)
    assert status in (400, 422), answer
    assert summary.is_empty(), summary


class SlowSweepStore(LocalStore):
    """A local store whose listings of a date's raw files wait for `gate` while `armed`:
    the sweep after a commit then takes as long as the test wants (a slow LIST on S3)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.armed = False
        self.sweeping = asyncio.Event()
        self.gate = asyncio.Event()

    async def list_keys(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        stop_after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        if self.armed and prefix.startswith("raw/date="):
            self.sweeping.set()
            await self.gate.wait()
        return await super().list_keys(
            prefix, start_after=start_after, stop_after=stop_after, limit=limit
        )


async def test_a_cancel_after_the_commit_does_not_report_committed_data_as_cancelled(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """DELETE /jobs/{id} promises "the date keeps its previous commit". Between an upload's
    commit and its end (the sweep: one LIST and DELETE) the job is still cancellable
    (`RunningJob.finishing` is set only in `_finish`): it then ends `failed` "cancelled"
    while its commit counts, the PUT answers 201 with a failed job (the CLI exits 1), and
    the superseded files stay. The same window exists in an ingest (Ingest.run)."""
    city_id, rows = await upstream_rows(http, sim)
    store = SlowSweepStore(tmp_path / "store")
    async with api_server(settings_for(store, sim), store) as api:
        store.armed = True
        upload = asyncio.create_task(put(http, api, city_id, json.dumps(rows).encode(), {}))
        async with asyncio.timeout(20):
            await store.sweeping.wait()  # committed; now sweeping
        summary, _ = await read_summary(store, DATE)
        [job_id] = summary["commit_id"].unique().to_list()
        async with asyncio.timeout(20), http.delete(f"{api}/jobs/{job_id}") as response:
            store.gate.set()
            cancel_status, cancelled = response.status, await response.json()
        async with asyncio.timeout(20):
            put_status, job = await upload
        summary, _ = await read_summary(store, DATE)
    counted = job_id in summary["commit_id"].to_list()
    assert counted  # the commit stands whatever the cancel said
    assert cancel_status == 409, cancelled  # too late to cancel: the job has committed
    assert (put_status, job["status"]) == (201, "succeeded"), job


async def test_an_upload_whose_commit_landed_is_not_reported_as_nothing_committed(
    moto: MotoEndpoint,
    bucket: str,
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 cut the other way: requests reach it, answers do not (a proxy or the network
    dropping them). The upload's first conditional write of the summary lands; every retry
    then fails, and after COMMIT_SECONDS UploadJob.run ends the job `failed` "nothing was
    committed; the date's previous data stands" and the PUT answers 503 "not committed",
    while the date's summary counts the upload (commit_id is the job's id). The job and the
    answer must say what the store holds: recovery (`JobRecovery._end_left_behind`) already
    checks the summary for the job's id; the commit's failure path does not."""
    monkeypatch.setattr(uploads, "COMMIT_SECONDS", 3.0)  # the same with the 30 s default
    cut = False

    async def handle(request: web.Request, body: bytes, pass_on: PassOn) -> web.Response:
        answer = await pass_on()
        if cut and request.method == "PUT" and "/summary/" in request.path:
            return web.Response(status=500, body=S3_ERROR, content_type="application/xml")
        return answer

    async with loopback_proxy(moto.url, handle) as proxy:
        store = await open_s3_store(proxy, bucket, attempts=2)
        settings = s3_settings(bucket, proxy, reference_url=sim.url, s3_attempts=2)
        try:
            async with api_server(settings, store) as api:
                assert (await ingest(http, api, DAY))["status"] == "succeeded"
                city_id, rows = await upstream_rows(http, sim)
                cut = True
                async with http.put(
                    f"{api}/raw/{DAY}/{city_id}", data=json.dumps(rows[:3])
                ) as response:
                    status, answer = response.status, await response.json()
                    location = response.headers["Location"]
                cut = False
                async with http.get(f"{api}{location}") as response:
                    job = await response.json()
            summary, _ = await read_summary(store, DATE)
        finally:
            await store.close()
    assert summary["commit_id"].unique().to_list() == [job["job_id"]]  # the upload counts
    assert job["commit_id"] == job["job_id"], job["error"]
    assert status == 201, answer


async def test_an_upload_during_an_s3_outage_answers_503_after_commit_seconds(
    moto: MotoEndpoint,
    bucket: str,
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 goes down for good at the upload's commit. "COMMIT_SECONDS: how long an upload's
    commit is retried while the store is down; the client waits that long", then a 503
    (docs/api.md "Store failures"). After the commit gives up, UploadJob.run confirms its
    lease outside its `except` (StoreError escapes), and `JobRunner._finish` saves the end
    with `save_end(None)`: retried for ever. The request hangs for the whole outage, and
    with it a SIGTERM (uvicorn waits for it before the lifespan shutdown)."""
    monkeypatch.setattr(uploads, "COMMIT_SECONDS", 3.0)
    armed = down = False

    async def handle(request: web.Request, body: bytes, pass_on: PassOn) -> web.Response:
        nonlocal down
        if (
            armed
            and request.method == "PUT"
            and "/summary/" in request.path
            and "If-Match" in request.headers
        ):
            down = True  # the commit: from here on, nothing answers
        if down:
            return web.Response(status=500, body=S3_ERROR, content_type="application/xml")
        return await pass_on()

    async with loopback_proxy(moto.url, handle) as proxy:
        store = await open_s3_store(proxy, bucket, attempts=2)
        settings = s3_settings(bucket, proxy, reference_url=sim.url, s3_attempts=2)
        try:
            async with api_server(settings, store) as api:
                assert (await ingest(http, api, DAY))["status"] == "succeeded"
                city_id, rows = await upstream_rows(http, sim)
                armed = True
                put_task = asyncio.create_task(
                    put(http, api, city_id, json.dumps(rows).encode(), {})
                )
                answered, _ = await asyncio.wait({put_task}, timeout=20)
                down = False  # heal, so that the request and the server can end
                async with asyncio.timeout(60):
                    status, answer = await put_task
        finally:
            await store.close()
    assert answered, "the upload got no answer within 20 s of an outage (COMMIT_SECONDS 3)"
    assert status == 503, answer


async def test_one_uploaded_city_does_not_make_a_date_without_data_read_complete(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """ "A date with no data yet gets a commit with this one city" (docs/api.md): a summary
    of one row, counted. /country-stats then reports the date complete (neither in
    `dates_without_data` nor in `incomplete_dates`) with one country, while upstream lists
    30 cities for it: the other countries' numbers are missing without a word. Before the
    upload the date was reported without data; after it, it must at least read incomplete
    (identify_city has upstream's city list at hand: the other cities could be listed as not
    counted, "no data")."""
    city_id, rows = await upstream_rows(http, sim)
    store = LocalStore(tmp_path / "store")
    async with api_server(settings_for(store, sim), store) as api:
        status, job = await put(http, api, city_id, json.dumps(rows).encode(), {})
        assert status == 201, job
        async with http.get(f"{api}/country-stats", params={"from": DAY, "to": DAY}) as response:
            answer = await response.json()
    assert [gap["date"] for gap in answer["incomplete_dates"]] == [DAY], answer
