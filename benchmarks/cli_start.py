"""The `cli-start` phase of `./run bench` (issue 16 item 4): how long the `busstats` command takes
to start cold, each run a fresh interpreter as a user's shell starts it.

- Commands: `busstats --help`, `busstats stats --help` and `busstats --version` (target: a
  median under 0.3 s, as they load nothing of the service), `busstats jobs` against a port
  nothing listens on (a client command run to its end, exit 4: its HTTP client, `http.client`,
  and its tables, rich, loaded; target: a median under 0.3 s with bytecode cached, see below),
  and, for comparison, `python -c pass` (the interpreter alone).
- Figures: the median wall time of `--runs` runs (10 by default) after one unmeasured run
  (so the file cache is warm, as for a command run twice), the fastest, and the peak RSS of
  the median run's process (see `TIMER`), all of them writing no bytecode (this machine's
  environment sets PYTHONDONTWRITEBYTECODE, so busstats and its dependencies, which have no
  `.pyc` here, are compiled at each start; the standard library's `.pyc` are read); and the
  median again with every module's bytecode cached (written by the unmeasured run into a
  folder of its own, PYTHONPYCACHEPREFIX), as on a usual install. The help and version
  targets are judged on the first, the slower; the client command's on the second, as
  compiling rich's modules at each start (most of the gap between its two figures) is
  this machine's setting, not the command's cost.

Run only this phase: `./run bench --only cli-start`, or `./run python -m benchmarks.cli_start`;
both write `results/cli_start.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TARGET_SECONDS = 0.3
"""Issue 16 item 4: a client command's cold start (its help, its version, a call) under 0.3 s."""


@dataclass
class Start:
    what: str
    median_seconds: float
    """No bytecode written: modules without a `.pyc` compiled at each start."""
    fastest_seconds: float
    peak_rss_mb: float
    cached_median_seconds: float
    """Bytecode cached."""
    runs: int
    target_seconds: float | None
    target_cached: bool = False
    """The target is judged on `cached_median_seconds`, else on `median_seconds`."""

    @property
    def judged_seconds(self) -> float:
        return self.cached_median_seconds if self.target_cached else self.median_seconds

    @property
    def verdict(self) -> str:
        if self.target_seconds is None:
            return ""
        met = "met" if self.judged_seconds < self.target_seconds else "NOT met"
        cached = ", .pyc cached" if self.target_cached else ""
        return f"target < {self.target_seconds} s{cached} {met}"


def busstats_command() -> list[str]:
    """The `busstats` script installed beside this interpreter, as a user runs it; else the
    module, which starts the same way."""
    script = Path(sys.executable).parent / "busstats"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "busstats.cli"]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


TIMER = """
import json, os, sys, time
argv, runs, env = json.loads(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2)]
samples = []
for _ in range(runs):
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=quiet)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    samples.append([seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)])
print(json.dumps(samples))
"""
"""Runs `argv` to its end `runs` times, its output thrown away, and prints each run's wall
seconds, peak RSS (MB; ru_maxrss is in KiB on Linux) and exit code. It runs in an interpreter
of its own, with nothing imported: a child's peak RSS counts the memory of the process it was
started from, before its exec, and this one is small (about as small as `python -c pass`)."""


Sample = tuple[float, float, int]


def timed_runs(what: str, argv: list[str], runs: int, code: int, cached: bool) -> list[Sample]:
    """`runs` runs of `argv` after an unmeasured one (from which on the files it reads are in
    the page cache, and with `cached` their bytecode too), sorted by time; each must exit with
    `code`."""
    with tempfile.TemporaryDirectory(prefix="busstats-pycache-") as pycache:
        env = {**os.environ, "NO_COLOR": "1"}
        if cached:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = pycache
        else:
            env.pop("PYTHONPYCACHEPREFIX", None)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        timer = [sys.executable, "-c", TIMER, json.dumps(argv), str(runs + 1), json.dumps(env)]
        done = subprocess.run(timer, capture_output=True, text=True, check=True, timeout=600)
    samples: list[Sample] = [(s[0], s[1], s[2]) for s in json.loads(done.stdout)[1:]]
    codes = {exit_code for _, _, exit_code in samples}
    if codes != {code}:
        raise RuntimeError(f"{what}: exit codes {sorted(codes)}, expected {code}")
    return sorted(samples)


def measure(
    what: str, argv: list[str], runs: int, code: int, target: float | None, cached: bool
) -> Start:
    """`argv`'s starts; `target` judged on the median with bytecode `cached`, or without."""
    compiled = timed_runs(what, argv, runs, code, cached=False)
    median = statistics.median(seconds for seconds, _, _ in compiled)
    _, rss, _ = min(compiled, key=lambda sample: abs(sample[0] - median))
    cached_median = statistics.median(
        seconds for seconds, _, _ in timed_runs(what, argv, runs, code, True)
    )
    return Start(what, median, compiled[0][0], rss, cached_median, runs, target, cached)


def cli_starts(runs: int) -> list[Start]:
    busstats = busstats_command()
    unreachable = f"http://127.0.0.1:{closed_port()}"
    jobs = [*busstats, "jobs", "--url", unreachable]
    plan: list[tuple[str, list[str], int, float | None, bool]] = [
        ("python -c pass", [sys.executable, "-c", "pass"], 0, None, False),
        ("busstats --help", [*busstats, "--help"], 0, TARGET_SECONDS, False),
        ("busstats stats --help", [*busstats, "stats", "--help"], 0, TARGET_SECONDS, False),
        ("busstats --version", [*busstats, "--version"], 0, TARGET_SECONDS, False),
        ("busstats jobs (exit 4)", jobs, 4, TARGET_SECONDS, True),
    ]
    return [
        measure(what, argv, runs, code, target, cached) for what, argv, code, target, cached in plan
    ]


def table(starts: list[Start]) -> str:
    lines = [
        "| command | median s | fastest s | peak RSS MB | median s, .pyc cached | runs | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += [
        f"| {s.what} | {s.median_seconds:.3f} | {s.fastest_seconds:.3f} | {s.peak_rss_mb:.0f}"
        f" | {s.cached_median_seconds:.3f} | {s.runs} | {s.verdict} |"
        for s in starts
    ]
    return "\n".join(lines)


def missed(starts: list[Start]) -> list[str]:
    """The targets this run did not meet, in words."""
    return [
        f"cli-start: {s.what} took {s.judged_seconds:.3f} s (target < {s.target_seconds} s)"
        for s in starts
        if s.target_seconds is not None and s.judged_seconds >= s.target_seconds
    ]


def cli_start_phase(runs: int, results: Path) -> list[Start]:
    """Measure, print the table, write `cli_start.json`."""
    load_at_start = os.getloadavg()
    starts = cli_starts(runs)
    load_at_end = os.getloadavg()
    print(table(starts), flush=True)
    payload = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "load_average_at_end": [round(x, 2) for x in load_at_end],
        },
        "target_seconds": TARGET_SECONDS,
        "starts": [{**asdict(s), "note": s.verdict} for s in starts],
        "missed": missed(starts),
    }
    results.mkdir(exist_ok=True)
    path = results / "cli_start.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return starts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cli_start",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=10, help="measured runs per command")
    args = parser.parse_args(argv)
    cli_start_phase(args.runs, RESULTS)
    return 0  # a target missed is reported, as `./run bench` does, not a failure


if __name__ == "__main__":
    sys.exit(main())
