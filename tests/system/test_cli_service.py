"""The `busstats` command as a process, where the process is the point: `python -m busstats.cli`
and the installed script start, `busstats dev` serves and stops on a signal (SIGTERM, Ctrl-C),
and `busstats serve` survives limits lowered on its process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from busstats import __version__
from harness.servers import free_port
from tests.support.flows import country_stats, ingest


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


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "busstats.cli"], id="python -m busstats.cli"),
        pytest.param([str(Path(sys.executable).parent / "busstats")], id="busstats"),
    ],
)
def test_the_command_starts_as_a_module_and_as_the_installed_script(command: list[str]) -> None:
    done = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"busstats {__version__}\n", "")


def dev_command(tmp_path: Path, api_port: int, refsim_port: int) -> list[str]:
    return [
        sys.executable, "-m", "busstats.cli", "dev",
        "--port", str(api_port), "--refsim-port", str(refsim_port),
        "--data", str(tmp_path / "data"), "--max-latency", "0.1", "--rows", "20-40",
    ]  # fmt: skip


async def test_dev_brings_up_simulator_and_api_with_local_storage(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    api_port, refsim_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        *dev_command(tmp_path, api_port, refsim_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
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


async def test_dev_prints_its_urls_and_stops_on_ctrl_c_without_a_traceback(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    api_port, refsim_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        *dev_command(tmp_path, api_port, refsim_port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    base = f"http://127.0.0.1:{api_port}"
    printed: list[str] = []
    try:
        async with asyncio.timeout(60):  # bounded: the line comes once the API answers
            while not printed or "Ctrl-C" not in printed[-1]:
                line = await process.stdout.readline()
                assert line, f"busstats dev ended before printing its URLs: {printed}"
                printed.append(line.decode())
        urls = printed[-1].split()
        assert urls == [
            "dashboard", f"{base}/", "API", "docs", f"{base}/docs", "API", base, "(Ctrl-C", "stops)"
        ]  # fmt: skip
        for url in (f"{base}/", f"{base}/docs", f"{base}/health"):
            async with http.get(url) as response:
                assert response.status == 200, url
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    said = "".join(printed) + out.decode() + err.decode()
    assert "Traceback" not in said, said
    assert process.returncode in (0, 130), said
    assert "Application shutdown complete" in said


def lowest_free_fd(pid: int) -> int:
    """The number the process's next open file would get."""
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return next(n for n in range(len(used) + 1) if n not in used)


@contextlib.contextmanager
def soft_limit(pid: int, kind: int, value: int) -> Iterator[None]:
    """Lower one resource limit of a running process, and give it back afterwards."""
    before = resource.prlimit(pid, kind)
    resource.prlimit(pid, kind, (value, before[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, kind, before)


async def expect_503(response: aiohttp.ClientResponse, cause: str) -> None:
    assert response.status == 503, await response.text()
    body = await response.json()
    assert cause in body["error"], body


async def test_a_full_disk_or_no_file_descriptors_answer_503_and_pass(
    tmp_path: Path,
) -> None:
    """A write the file system refuses (EFBIG stands in for ENOSPC: same path, no tmpfs
    needed) and running out of file descriptors are 503s, and the service recovers after."""
    port = free_port()
    env = {
        **os.environ,
        "BUSSTATS_STORE": str(tmp_path / "store"),
        "BUSSTATS_REFERENCE_URL": "http://127.0.0.1:9",
        "BUSSTATS_REFERENCE_ATTEMPTS": "1",
    }
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "busstats.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    api = f"http://127.0.0.1:{port}"
    # one kept-alive connection, opened before the limits drop, carries every request
    connector = aiohttp.TCPConnector(limit=1)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            await wait_until_up(http, f"{api}/health/ready", process)
            with soft_limit(process.pid, resource.RLIMIT_FSIZE, 0):  # no file may hold a byte
                async with http.post(f"{api}/process-request?date=2024-05-01") as response:
                    await expect_503(response, "File too large")
            with soft_limit(process.pid, resource.RLIMIT_NOFILE, lowest_free_fd(process.pid)):
                async with http.post(f"{api}/process-request?date=2024-05-01") as response:
                    await expect_503(response, "Too many open files")
                async with http.get(f"{api}/jobs/{'0' * 32}") as response:
                    await expect_503(response, "Too many open files")
                async with http.get(f"{api}/country-stats?from=2024-05-01&to=2024-05-01") as r:
                    await expect_503(r, "Too many open files")
            job = await ingest(http, api, "2024-05-01")  # and all is well again
            assert "GET /cities failed" in job["error"]  # nothing listens on the reference URL
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, stderr = await process.communicate()
    assert "Traceback" not in stderr.decode(), stderr.decode()


@pytest.mark.parametrize("taken", ["--refsim-port", "--port"])
def test_dev_on_a_port_taken_says_so_in_one_line_and_exits_3(tmp_path: Path, taken: str) -> None:
    with contextlib.closing(socket.socket()) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        command = dev_command(tmp_path, free_port(), free_port())
        port = holder.getsockname()[1]
        command[command.index(taken) + 1] = str(port)
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done
    assert done.stderr.splitlines()[-1:] == [
        f"busstats: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], done


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "99999"],
        ["refsim", "--port", "-1"],
        ["dev", "--refsim-port", "70000"],
        ["dev", "--port", "http"],
    ],
    ids=" ".join,
)
def test_a_port_out_of_range_is_a_usage_error(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "busstats.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert "expected a port from 0 to 65535" in done.stderr, done
    assert "Traceback" not in done.stderr, done


CTRL_C_WHILE_IMPORTING = """
import runpy, sys

interrupted = sys.argv[1]

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == interrupted:
            raise KeyboardInterrupt  # as if Ctrl-C came while it loads
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["busstats", "jobs", "--url", "http://127.0.0.1:9"]
runpy.run_module("busstats.cli", run_name="__main__")
"""


@pytest.mark.parametrize("module", ["busstats.cli.main", "busstats.cli.commands", "rich.console"])
def test_ctrl_c_while_the_command_loads_exits_130_quietly(module: str) -> None:
    """The modules `python -m busstats.cli` loads first, those `main` loads for a client
    command, and a library of theirs."""
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_WHILE_IMPORTING, module],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (130, "", ""), done
