"""A Dask `LocalCluster` in a process of its own, so a benchmark can count its memory (the
cluster's process and its worker processes) apart from the process that measures.

    python -m harness.dask_cluster --workers 2 --threads 16 --address-file F

writes the scheduler's address into F once the cluster is up and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

WORKER_ENVIRONMENT = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
"""What a busstats worker takes from its own environment (store credentials), passed on."""


@dataclass(frozen=True)
class DaskCluster:
    address: str
    pid: int


@contextlib.contextmanager
def dask_cluster_process(
    workers: int, threads: int, env: dict[str, str], folder: Path
) -> Iterator[DaskCluster]:
    """A `LocalCluster` of `workers` processes on 127.0.0.1 (no dashboard), each running
    `threads` tasks at once, with `env` in the workers' environment; its log in `folder`."""
    address_file = folder / "dask-address"
    address_file.unlink(missing_ok=True)
    with (folder / "dask.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "harness.dask_cluster", "--workers", str(workers),
                "--threads", str(threads), "--address-file", str(address_file),
            ],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not address_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Dask cluster did not start; see {folder / 'dask.log'}")
            time.sleep(0.1)
        yield DaskCluster(address_file.read_text().strip(), process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def main() -> None:
    from distributed import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--address-file", type=Path, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=args.threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,  # pyright: ignore[reportArgumentType] - None: no dashboard
        env={name: os.environ[name] for name in WORKER_ENVIRONMENT if name in os.environ},
    )
    try:
        written = args.address_file.with_suffix(".tmp")
        written.write_text(cluster.scheduler_address)
        written.rename(args.address_file)  # whole, never half-written
        while not stop.wait(0.5):
            pass
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
