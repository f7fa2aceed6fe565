"""Runs one baseline, its spec read as JSON from stdin, in a fresh process and prints
{"rows", "seconds", "peak_rss_mb"} as JSON, so each engine's time and memory are its own,
not the benchmark driver's."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import boto3

from benchmarks import baselines
from busstats.reference.sim import CITIES


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.stdin.read())
    engine = spec["engine"]
    started = time.perf_counter()
    if engine == "pandas":
        s3 = boto3.client(
            "s3",
            endpoint_url=spec["endpoint"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        rows = baselines.pandas_from_raw(
            s3, spec["bucket"], spec["keys"], {city.id: city.country for city in CITIES}
        )
    elif engine == "duckdb":
        rows = baselines.duckdb_parquet(spec["files"], spec.get("endpoint"))
    elif engine == "polars":
        rows = baselines.polars_parquet(spec["files"], spec.get("storage_options"))
    else:
        raise SystemExit(f"unknown engine {engine}")
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's own peak (VmHWM): ru_maxrss would carry the parent's across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
