"""The `busstats` command for the CLI tests, run in this process: `busstats.cli.main.main` in
a thread of its own (its HTTP calls block; the test's event loop goes on), with stdout and stderr
captured (not a terminal, as when piped). Tests where a real process is the point (Ctrl-C, a
terminal, `python -m busstats.cli`) start one themselves."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
from collections.abc import Iterator

from busstats.cli.main import main


class Run:
    def __init__(self, code: int, raw: bytes, err: str) -> None:
        self.code, self.raw, self.err = code, raw, err
        self.out = raw.decode(errors="replace")

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


_ONE_AT_A_TIME = threading.Lock()
"""stdout, stderr and the environment are the process's: one command runs at a time."""


@contextlib.contextmanager
def _environment(url: str | None) -> Iterator[None]:
    """NO_COLOR set, and BUSSTATS_URL set to `url` (unset when None), for the command only."""
    changes = {"NO_COLOR": "1", "BUSSTATS_URL": url}
    before = {name: os.environ.get(name) for name in changes}

    def apply(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(changes)
    try:
        yield
    finally:
        apply(before)


def run_main(*args: str, url: str | None = None) -> Run:
    """`busstats ARGS...` to its end in this thread: its exit code and what it wrote."""
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    with (
        _ONE_AT_A_TIME,
        _environment(url),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse: --help, usage errors
            code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
        stdout.flush()
        stderr.flush()
    return Run(code, out.getvalue(), err.getvalue().decode(errors="replace"))


async def busstats(*args: str, url: str | None = None, limit_seconds: float = 60) -> Run:
    """`busstats ARGS...` (with BUSSTATS_URL set to `url`, else unset) while the test's event
    loop goes on serving whatever the command talks to."""
    async with asyncio.timeout(limit_seconds):
        return await asyncio.to_thread(run_main, *args, url=url)
