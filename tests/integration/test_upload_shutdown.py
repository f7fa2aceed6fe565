"""An upload cut by the service stopping: its job, not its request, owns its temporary files."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp

from busstats.jobs.records import JobStore
from busstats.model.jobs import JobSource, JobStatus
from busstats.orchestration.runner import INTERRUPTED
from busstats.reference.sim import SimulatorConfig
from busstats.storage import LocalStore
from harness.servers import api_server, settings_for, simulator

DAY = "2024-05-01"


class GatedRawStore(LocalStore):
    """A local store whose uploads of raw files wait for `gate` (a slow PUT on S3); when one
    is cancelled meanwhile, `seen` notes whether the file it was to read still existed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.seen: list[bool] = []

    async def put_file(self, key: str, path: Path) -> None:
        if key.startswith("raw/"):
            self.entered.set()
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                # at the instant of the cancel, without yielding: a stat of a local file
                self.seen.append(path.exists())  # noqa: ASYNC240
                raise
        await super().put_file(key, path)


async def test_a_stop_cutting_an_upload_request_leaves_its_job_its_files(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The server stops while an upload's job stores its files: the request is cut after
    the graceful shutdown's few seconds, and only then are the jobs stopped. The request
    going away must not remove the files its job still reads; the job ends interrupted and
    removes them itself."""
    store = GatedRawStore(tmp_path / "store")
    temp = tmp_path / "temp"
    temp.mkdir()
    async with simulator(SimulatorConfig(rows=(5, 10), max_latency=0.0)) as sim:
        async with http.get(f"{sim.url}/cities") as response:
            city_id: int = (await response.json())[0]["id"]
        rows = [{"departure-time": f"{DAY}T08:00:00Z", "bus-type": "X", "passengers": 3}]
        server = api_server(settings_for(store, sim, temp_dir=str(temp)), store)
        url = await server.__aenter__()
        upload = asyncio.create_task(http.put(f"{url}/raw/{DAY}/{city_id}", data=json.dumps(rows)))
        try:
            async with asyncio.timeout(20):
                await store.entered.wait()  # the job is storing the upload's raw file
        finally:
            async with asyncio.timeout(30):
                await server.__aexit__(None, None, None)
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                (await upload).close()
    assert store.seen == [True]  # the job still had its file when it was stopped
    jobs = JobStore(store)
    [key] = [k for k in await store.list_keys("jobs/") if k.count("/") == 1]
    job = await jobs.load(key.removeprefix("jobs/").removesuffix(".json"))
    assert job is not None
    assert (job.source, job.status, job.error) == (JobSource.UPLOAD, JobStatus.FAILED, INTERRUPTED)
    assert not [path for path in temp.rglob("*") if path.is_file()]  # and then removed them
