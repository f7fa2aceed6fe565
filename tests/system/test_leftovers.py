"""kill -9 leaves nothing behind for good, and limits hold for the whole process."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import resource
import socket
import sys
from pathlib import Path

import aiohttp

from busstats.reference.sim import SimulatorConfig
from harness.servers import serve_process, simulator
from tests.support.flows import wait_for_job


async def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await process.wait()
    return process.pid


async def test_a_restart_removes_what_a_killed_process_left_in_temp_and_store(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    temp, store = tmp_path / "tmp", tmp_path / "store"
    env = {"BUSSTATS_STORE": str(store), "BUSSTATS_TEMP_DIR": str(temp)}
    # an upstream slow to answer: each download's temp file waits in the process's folder
    config = SimulatorConfig(rows=(3000, 3000), min_latency=30, max_latency=30)
    async with simulator(config) as sim:
        env["BUSSTATS_REFERENCE_URL"] = sim.url
        async with serve_process(env, http) as first:
            async with http.post(f"{first.url}/process-request?date=2024-05-01") as response:
                assert response.status == 202
            async with asyncio.timeout(20):
                while not list(temp.glob("busstats/proc-*/*")):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            first.kill()
            await first.process.wait()
        left = temp / "busstats" / f"proc-{socket.gethostname()}-{first.process.pid}"
        elsewhere = temp / "busstats" / f"proc-another-host-{await dead_pid()}"
        elsewhere.mkdir()  # another container's: its pids are not ours to judge
        assert left.is_dir()
        stray = store / "jobs" / f".tmp-{await dead_pid()}-abc.json"
        stray.write_bytes(b"half a record")
        async with serve_process(env, http):
            assert not left.exists()
            assert not stray.exists()
            assert elsewhere.exists()


async def test_forty_dates_at_once_all_succeed_under_1024_open_files(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    # every answer waits, so without a process-wide cap all 1,200 downloads would be open at once
    config = SimulatorConfig(rows=(5, 10), min_latency=0.5, max_latency=0.5)
    async with simulator(config) as sim:
        env = {"BUSSTATS_STORE": str(tmp_path / "store"), "BUSSTATS_REFERENCE_URL": sim.url}
        async with serve_process(env, http) as service:
            pid = service.process.pid
            _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(1024, hard), hard))
            ids = []
            for offset in range(40):
                date = dt.date(2024, 4, 1) + dt.timedelta(days=offset)
                async with http.post(f"{service.url}/process-request?date={date}") as response:
                    assert response.status == 202
                    ids.append((await response.json())["job_id"])
            jobs = [await wait_for_job(http, service.url, job_id, 240) for job_id in ids]
            open_files = len(os.listdir(f"/proc/{pid}/fd"))
    assert [job["status"] for job in jobs] == ["succeeded"] * 40, [
        (job["status"], job["error"]) for job in jobs if job["status"] != "succeeded"
    ]
    assert open_files < 1024
    assert sim.state.max_in_flight <= 32  # BUSSTATS_CITY_CONCURRENCY, for all jobs together
    assert len({job["date"] for job in jobs}) == 40
