"""The `busstats` command run as a user runs it, for the CLI tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys


class Run:
    def __init__(self, code: int, raw: bytes, err: str) -> None:
        self.code, self.raw, self.err = code, raw, err
        self.out = raw.decode(errors="replace")

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


async def busstats(*args: str, url: str | None = None, limit_seconds: float = 60) -> Run:
    """`busstats ARGS...` in a process of its own with stdout a pipe (not a terminal)."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("BUSSTATS_URL", None)
    if url is not None:
        env["BUSSTATS_URL"] = url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "busstats.cli", *args,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(limit_seconds):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Run(process.returncode, out, err.decode())
