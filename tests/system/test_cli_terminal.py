"""The client commands where a process of their own is the point: Ctrl-C while following a
backfill (SIGINT), and a terminal (a pty) on which progress is drawn live and tables as
tables. The service is live, on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import signal
import subprocess
import sys

import aiohttp
import pytest

from busstats.reference.sim import SimulatorConfig
from tests.support.clirun import busstats
from tests.support.upstreams import ONE_CITY_MISSING


@pytest.fixture
def api(local_api: str) -> str:
    """The API over a local store and the simulator."""
    return local_api


@pytest.mark.parametrize(
    "simulator_config", [SimulatorConfig(rows=(5, 10), min_latency=30, max_latency=40)]
)
async def test_ctrl_c_while_following_a_range_says_how_to_cancel_it(
    api: str, http: aiohttp.ClientSession
) -> None:
    env = {**os.environ, "NO_COLOR": "1", "BUSSTATS_URL": api}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "busstats.cli", "ingest", "2024-05-01", "--to", "2024-05-04",
        "--wait", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = ""
            while not line.startswith("backfill "):  # once it follows the backfill
                line = (await process.stdout.readline()).decode()
            backfill_id = line.split()[1]
            process.send_signal(signal.SIGINT)
            _, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130, err
    said = err.decode()
    assert f"backfill {backfill_id} goes on running on the service" in said
    assert f"busstats cancel {backfill_id} --url {api}" in said
    assert "Traceback" not in said

    cancelled = await busstats("cancel", backfill_id, url=api)
    assert cancelled.code == 0, cancelled
    answer = cancelled.out
    assert answer.startswith(f"backfill {backfill_id}: cancelled: 0 of 4 dates"), cancelled
    async with http.get(f"{api}/backfills/{backfill_id}") as response:
        assert (await response.json())["status"] == "cancelled"
    again = await busstats("cancel", backfill_id, url=api)
    assert again.code == 3, again
    assert "409" in again.err


async def terminal_run(*args: str, limit_seconds: float = 60) -> tuple[int, str]:
    """`busstats ARGS...` with stdout and stderr a terminal (a pty), as a person runs it."""
    controller, worker = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "LINES": "60", "TERM": "xterm-256color"}
    for name in ("NO_COLOR", "TTY_COMPATIBLE", "FORCE_COLOR", "BUSSTATS_URL"):
        env.pop(name, None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "busstats.cli", *args,
        env=env, stdin=subprocess.DEVNULL, stdout=worker, stderr=worker,
    )  # fmt: skip
    os.close(worker)
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []

    def read_all() -> None:  # until the process closes its end of the terminal
        with contextlib.suppress(OSError):
            while chunk := os.read(controller, 65536):
                chunks.append(chunk)

    try:
        async with asyncio.timeout(limit_seconds):
            await asyncio.gather(loop.run_in_executor(None, read_all), process.wait())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(controller)
    assert process.returncode is not None
    return process.returncode, b"".join(chunks).decode(errors="replace")


def without_controls(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@pytest.mark.parametrize("simulator_config", [ONE_CITY_MISSING])
async def test_on_a_terminal_progress_is_live_and_tables_are_drawn(api: str) -> None:
    code, shown = await terminal_run("ingest", "2024-05-01", "--wait", "--url", api)
    assert code == 1, shown
    assert "\x1b[" in shown  # drawn and redrawn with terminal controls
    text = without_controls(shown)
    assert re.search(r"2024-05-01 +\w{32} +partial +━+ +30/30 cities", text), text
    assert re.search(r"│ 2024-05-01 │ +3 │ .+ │ failed +│", text), text
    assert re.search(r"│ 2024-05-01 │ +0 │ .+ │ succeeded │", text), text
    assert re.search(r"^2024-05-01 job \w{32}: partial, 29/30 cities stored", text, re.M)

    code, shown = await terminal_run(
        "ingest", "2024-05-02", "--to", "2024-05-03", "--wait", "--url", api
    )
    assert code == 1, shown
    text = without_controls(shown)
    assert re.search(r"backfill \w{32} +2024-05-02\.\.2024-05-03 +partial +━+ +2/2 dates", text)
    assert re.search(r"^2024-05-03 job \w{32}: partial, 29/30 cities stored", text, re.M)
    assert re.search(
        r"^backfill \w{32} 2024-05-02\.\.2024-05-03: partial: 2 of 2 dates ingested", text, re.M
    )

    code, shown = await terminal_run("stats", "2024-05-01", "2024-05-01", "--url", api)
    assert code == 0, shown
    text = without_controls(shown)
    assert "┃ date       ┃ country" in text
    assert "2024-05-01 is incomplete: 1 of 30 cities" in text

    # Parquet's bytes would garble a terminal: asked for, it is a usage error
    code, shown = await terminal_run(
        "stats", "2024-05-01", "2024-05-01", "--format", "parquet", "--url", api
    )
    assert code == 2, shown
    assert "parquet is binary" in shown
