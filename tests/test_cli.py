"""The `busstats` command as a user runs it: a separate process on loopback ports."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.flows import country_stats, ingest
from tests.servers import free_port


async def wait_until_up(
    http: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process
) -> None:
    async with asyncio.timeout(30):
        while True:
            assert process.returncode is None, "the service exited early"
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def test_dev_brings_up_simulator_and_api_with_local_storage(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    api_port, refsim_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "busstats.cli", "dev",
        "--port", str(api_port), "--refsim-port", str(refsim_port),
        "--data", str(tmp_path / "data"), "--max-latency", "0.1", "--rows", "20-40",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        api = f"http://127.0.0.1:{api_port}"
        await wait_until_up(http, f"{api}/health", process)
        job = await ingest(http, api, "2024-05-01")
        answer = await country_stats(http, api, "2024-05-01", "2024-05-01")
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, stderr = await process.communicate()
    assert job["status"] == "succeeded"
    assert len(answer["stats"]) == 5
    run = job["job_id"]
    assert (tmp_path / "data" / "parquet" / "date=2024-05-01" / f"city=0.{run}.parquet").is_file()
    assert (tmp_path / "data" / "raw" / "date=2024-05-01" / f"city=29.{run}.json").is_file()
    assert (tmp_path / "data" / "summary" / "2024-05-01.parquet").is_file()
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status tells why it ended
    assert process.returncode in (0, -signal.SIGTERM), stderr.decode()
    assert "Application shutdown complete" in stderr.decode()


def test_serve_refuses_a_bad_setting_with_a_clear_message() -> None:
    env = {**os.environ, "BUSSTATS_CITY_CONCURRENCY": "lots"}
    done = subprocess.run(
        [sys.executable, "-m", "busstats.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "BUSSTATS_CITY_CONCURRENCY='lots' is not a number" in done.stdout + done.stderr
