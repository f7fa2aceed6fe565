"""The client commands are an edge: `import busstats.cli`, `busstats --help`, `busstats stats
--help`, the client commands' own modules and a client command run to its end load none of the
server's libraries nor its layers, nor aiohttp and asyncio (the client is `http.client`,
blocking), so that they start in a fraction of a second (benchmarks/cli_start.py).

A fresh interpreter is the point here (what is in `sys.modules` of this one says nothing), so
this unit test runs one short `python -c`."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_MODULES = [
    "polars",
    "pyarrow",
    "botocore",
    "aiobotocore",
    "starlette",
    "uvicorn",
    "dask",
    "distributed",
    "pydantic",
    "pydantic_settings",
    "busstats.core.settings",
    "busstats.reference.sim",
    "busstats.storage",
    "busstats.ingest",
    "busstats.commit",
    "busstats.stats",
    "busstats.jobs",
    "busstats.executors",
    "busstats.orchestration",
    "busstats.api",
    "aiohttp",  # the service's and the simulator's HTTP; the client's is http.client
    "asyncio",  # the client commands block, one call after another
]
"""Top-level libraries and busstats packages only the service commands may load."""

STEPS = """
import contextlib, io, json, sys

forbidden = json.loads(sys.argv[1])
found = {}

def check(step):
    found[step] = sorted(name for name in forbidden if name in sys.modules)

import busstats.cli
check("import busstats.cli")
from busstats.cli.main import main
check("import busstats.cli.main")
for argv in (["--help"], ["--version"], ["stats", "--help"], ["ingest", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
    check("busstats " + " ".join(argv))
import busstats.cli.commands
check("import busstats.cli.commands")
# client commands to their end, without a service: a port bound but not listening refuses
# the connection (exit 4) once every module of the request's path is loaded
import socket
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
url = "http://127.0.0.1:%d" % closed.getsockname()[1]
for argv in (["jobs"], ["ingest", "2024-05-01", "--to", "2024-05-02", "--wait"]):
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([*argv, "--url", url])
    assert (code, "Cannot connect" in err.getvalue()) == (4, True), (code, err.getvalue())
    check("busstats " + " ".join(argv))
print(json.dumps(found))
"""


def test_the_client_side_of_the_cli_loads_nothing_of_the_server() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STEPS, json.dumps(SERVER_MODULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, list[str]] = json.loads(done.stdout)
    assert len(found) == 9, found
    assert all(not loaded for loaded in found.values()), found
