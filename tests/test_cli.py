"""The `busstats` command as a user runs it: a separate process on loopback ports."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from busstats.cli.main import _parser
from busstats.core.settings import settings_table
from harness.servers import free_port
from tests.flows import country_stats, ingest


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


def busstats(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the `busstats` command to its end; `env` is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "busstats.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "name", "value", "reason"),
    [
        ("serve", "BUSSTATS_CITY_CONCURRENCY", "2.7", "Expected `int`, got `str`"),
        ("serve", "BUSSTATS_REFERENCE_TIMEOUT", "inf", "Expected `float` <= 3600.0"),
        ("serve", "BUSSTATS_REFERENCE_TIMEOUT", "nan", "Expected `float` >= 0.1"),
        ("dev", "BUSSTATS_LOG_LEVEL", "info", "Invalid enum value 'info'"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    command: str, name: str, value: str, reason: str
) -> None:
    ports = ["--port", "0", "--refsim-port", "0"] if command == "dev" else ["--port", "0"]
    done = busstats(command, *ports, **{name: value})  # were it to start, it would not clash
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"busstats: {name}={value!r}: {reason}; accepts ")
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback


def test_an_unknown_busstats_variable_is_warned_about() -> None:
    done = busstats(
        "serve",
        BUSSTATS_CITY_CONCURENCY="8",
        BUSSTATS_MAX_RANGE_DAYS="0",
        BUSSTATS_URL="http://127.0.0.1:9",  # the client commands' setting: no warning
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "busstats: warning: BUSSTATS_CITY_CONCURENCY is not a setting; see `busstats settings`",
        "busstats: BUSSTATS_MAX_RANGE_DAYS='0': Expected `int` >= 1; accepts integer from 1 to"
        " 100000",
    ]


def test_settings_prints_the_table() -> None:
    done = busstats("settings", BUSSTATS_CITY_CONCURRENCY="not looked at")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == settings_table()


def options_of(command: str) -> list[argparse.Action]:
    """The options of one subcommand, as the parser declares them (help and version left
    out: they have no default)."""
    parser = _parser()
    if command:
        (subcommands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = subcommands.choices[command]
    shown_without_default = (argparse._HelpAction, argparse._VersionAction)
    return [a for a in parser._actions if not isinstance(a, shown_without_default)]


@pytest.mark.parametrize("command", ["serve", "refsim", "dev", "settings", ""])
def test_help_has_a_line_and_the_default_for_every_option(command: str) -> None:
    done = busstats(*filter(None, [command, "--help"]), COLUMNS="1000")  # one line per option
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for action in options_of(command):
        assert action.help, f"busstats {command} {action.dest} has no help line"
        if action.option_strings:
            assert f"{action.help} (default: {action.default})" in text, action.dest


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
