"""`./run bench`: ingest and query figures for busstats beside pandas, DuckDB and bare Polars.

Everything runs on 127.0.0.1: a moto S3 server, the bundled simulator and `busstats serve`,
each in its own process where memory is measured. Every baseline's answer is checked against
the service's; a disagreement fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.baselines import same_numbers
from benchmarks.report import write_report
from busstats.refsim import SimulatorConfig
from busstats.refsim.server import latency_for
from harness.processes import Service, service, simulator_process
from harness.servers import KEY_ID, REGION, SECRET, MotoEndpoint, moto_server

RESULTS = Path(__file__).parent / "results"
SEED_START = dt.date(2023, 1, 1)
S_DAY = dt.date(2024, 6, 1)
M_DAY = dt.date(2024, 7, 1)
L_DAYS = [dt.date(2024, 8, 1), dt.date(2024, 8, 2)]
ROWS_PER_MB = 8200  # the simulator writes about 122 bytes a row


@dataclass
class Figure:
    phase: str
    engine: str
    store: str
    what: str
    seconds: float
    peak_rss_mb: float
    note: str = ""


class Run:
    def __init__(
        self, args: argparse.Namespace, moto: MotoEndpoint, bucket: str, work: Path
    ) -> None:
        self.args = args
        self.moto = moto
        self.bucket = bucket
        self.work = work
        self.figures: list[Figure] = []
        self.facts: dict[str, Any] = {}
        self.failures: list[str] = []

    def s3_env(self, reference: str) -> dict[str, str]:
        return {
            "BUSSTATS_STORE": f"s3://{self.bucket}",
            "BUSSTATS_S3_ENDPOINT_URL": self.moto.url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "BUSSTATS_REFERENCE_URL": reference,
        }

    def record(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(
            f"  {figure.phase:<8} {figure.engine:<18} {figure.store:<6} {figure.what:<22}"
            f" {figure.seconds:8.3f} s {figure.peak_rss_mb:8.0f} MB  {figure.note}",
            flush=True,
        )

    def check(self, label: str, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
        problem = same_numbers(ours, theirs)
        if problem:
            self.failures.append(f"{label}: {problem}")
            print(f"  DISAGREEMENT {label}: {problem}", flush=True)


async def ingest_phase(
    run: Run, phase: str, days: list[dt.date], simulator_args: list[str], parallel: int = 1
) -> list[dict[str, Any]]:
    with simulator_process(*simulator_args) as sim:
        log = run.work / f"service-{phase}.log"
        async with service(run.s3_env(sim.url), log) as svc:
            svc.rss.reset()
            started = asyncio.get_running_loop().time()
            slots = asyncio.Semaphore(parallel)

            async def one(day: dt.date) -> dict[str, Any]:
                async with slots:
                    return await svc.ingest(day.isoformat())

            jobs = await asyncio.gather(*(one(day) for day in days))
            wall = asyncio.get_running_loop().time() - started
            peak = svc.rss.peak_mb
    bad = [job for job in jobs if job["status"] != "succeeded"]
    if bad:
        run.failures.append(f"{phase}: {len(bad)} jobs did not succeed: {bad[0].get('error')}")
    raw = sum(city["raw_bytes"] for job in jobs for city in job["cities"])
    parquet = sum(city["parquet_bytes"] for job in jobs for city in job["cities"])
    largest = max(city["raw_bytes"] for job in jobs for city in job["cities"])
    note = (
        f"{raw / 2**20:.0f} MB raw, {raw / 2**20 / wall:.0f} MB/s, parquet {parquet / raw:.1%}"
        f" of raw, largest city {largest / 2**20:.0f} MB"
    )
    run.record(Figure(phase, "busstats", "moto", f"ingest {len(days)} day(s)", wall, peak, note))
    run.facts[phase] = {
        "days": len(days),
        "wall_seconds": wall,
        "raw_mb": raw / 2**20,
        "parquet_mb": parquet / 2**20,
        "mb_per_second": raw / 2**20 / wall,
        "largest_city_mb": largest / 2**20,
        "peak_rss_mb": peak,
        "peak_rss_over_largest_file": peak / (largest / 2**20),
    }
    return jobs


async def measured_s_ingest(run: Run) -> None:
    """Upstream-like latency: the day should take about as long as its slowest city."""
    jobs = await ingest_phase(run, "ingest-S", [S_DAY], [])
    job = jobs[0]
    config = SimulatorConfig()
    slowest = max(latency_for(config, S_DAY, city["city_id"]) for city in job["cities"])
    started = dt.datetime.fromisoformat(job["started_at"])
    finished = dt.datetime.fromisoformat(job["finished_at"])
    job_seconds = (finished - started).total_seconds()
    run.facts["ingest-S"].update(
        {
            "job_seconds": job_seconds,
            "slowest_city_latency": slowest,
            "ratio": job_seconds / slowest,
        }
    )
    print(
        f"  ingest-S: job {job_seconds:.2f} s, slowest city waits {slowest:.2f} s upstream:"
        f" {job_seconds / slowest:.2f}x (target 1.1x)",
        flush=True,
    )


def parquet_globs(days: list[dt.date], prefix: str) -> list[str]:
    return [f"{prefix}/parquet/date={day.isoformat()}/*.parquet" for day in days]


def baseline(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.baseline_run", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"baseline {spec['engine']} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def service_query(
    run: Run, svc: Service, store: str, label: str, days: list[dt.date], source: str
) -> list[dict[str, Any]]:
    times: list[float] = []
    svc.rss.reset()
    answer: Any = None
    for _ in range(run.args.repeat):
        status, answer, seconds = await svc.get(
            "/country-stats",
            **{"from": days[0].isoformat(), "to": days[-1].isoformat(), "source": source},
        )
        assert status == 200, answer
        times.append(seconds)
    engine = "busstats" if source == "summary" else "busstats full"
    run.record(
        Figure(
            "query",
            engine,
            store,
            label,
            statistics.median(times),
            svc.rss.peak_mb,
            f"median of {len(times)}",
        )
    )
    stats: list[dict[str, Any]] = answer["stats"]
    return stats


def run_baseline(
    run: Run, store: str, label: str, spec: dict[str, Any], ours: list[dict[str, Any]]
) -> None:
    result = baseline(spec)
    run.record(
        Figure("query", spec["engine"], store, label, result["seconds"], result["peak_rss_mb"])
    )
    run.check(f"{spec['engine']} {store} {label}", ours, result["rows"])


async def query_phase(run: Run, ranges: dict[str, list[dt.date]], local_root: Path) -> None:
    storage_options = {
        "aws_endpoint_url": run.moto.url,
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "aws_region": REGION,
        "aws_allow_http": "true",
    }
    with simulator_process() as sim:
        async with service(run.s3_env(sim.url), run.work / "service-query-s3.log") as svc:
            for label, days in ranges.items():
                ours = await service_query(run, svc, "moto", label, days, "summary")
                if len(days) <= run.args.full_scan_max_days:
                    full = await service_query(run, svc, "moto", label, days, "full")
                    run.check(f"busstats full moto {label}", ours, full)
                globs = parquet_globs(days, f"s3://{run.bucket}")
                run_baseline(
                    run,
                    "moto",
                    label,
                    {"engine": "polars", "files": globs, "storage_options": storage_options},
                    ours,
                )
                run_baseline(
                    run,
                    "moto",
                    label,
                    {"engine": "duckdb", "files": globs, "endpoint": run.moto.url},
                    ours,
                )
                if len(days) <= run.args.pandas_max_days:
                    spec = {
                        "engine": "pandas",
                        "endpoint": run.moto.url,
                        "bucket": run.bucket,
                        "days": [d.isoformat() for d in days],
                    }
                    run_baseline(run, "moto", label, spec, ours)
        local_env = {**run.s3_env(sim.url), "BUSSTATS_STORE": str(local_root)}
        async with service(local_env, run.work / "service-query-local.log") as svc:
            for label, days in ranges.items():
                ours = await service_query(run, svc, "local", label, days, "summary")
                full = await service_query(run, svc, "local", label, days, "full")
                run.check(f"busstats full local {label}", ours, full)
                globs = parquet_globs(days, str(local_root))
                run_baseline(run, "local", label, {"engine": "polars", "files": globs}, ours)
                run_baseline(run, "local", label, {"engine": "duckdb", "files": globs}, ours)


def copy_bucket_to_folder(moto: MotoEndpoint, bucket: str, root: Path) -> None:
    """The same Parquet and summaries on local disk, for the local-store figures."""
    s3 = moto.client()
    keys = [
        item["Key"]
        for prefix in ("parquet/", "summary/")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]

    def fetch(key: str) -> None:
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fetch, keys))


async def main(args: argparse.Namespace) -> int:
    RESULTS.mkdir(exist_ok=True)
    with moto_server() as moto, tempfile.TemporaryDirectory(prefix="busstats-bench-") as folder:
        work = Path(folder)
        run = Run(args, moto, moto.new_bucket(), work)
        print(
            f"busstats benchmark on {platform.node()}: {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
            flush=True,
        )
        seed_days = [SEED_START + dt.timedelta(days=n) for n in range(args.days)]
        await ingest_phase(run, "seed-S", seed_days, ["--max-latency", "0"], parallel=4)
        await measured_s_ingest(run)
        m_rows = str(args.m_mb * ROWS_PER_MB)
        await ingest_phase(run, "ingest-M", [M_DAY], ["--max-latency", "0", "--rows", m_rows])
        big = [
            arg
            for city in range(args.l_cities)
            for arg in ("--city-rows", f"{city}={args.l_mb * ROWS_PER_MB}")
        ]
        for day in L_DAYS:
            await ingest_phase(run, f"ingest-L {day.day}", [day], ["--max-latency", "0", *big])
        copy_bucket_to_folder(moto, run.bucket, work / "local")
        ranges = {
            "S 1 day": seed_days[:1],
            f"S {min(30, args.days)} days": seed_days[:30],
            f"S {args.days} days": seed_days,
            "L 2 days": L_DAYS,
        }
        await query_phase(
            run, dict(sorted(ranges.items(), key=lambda item: len(item[1]))), work / "local"
        )
    machine = {
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_report(RESULTS, machine, [asdict(f) for f in run.figures], run.facts, run.failures)
    if run.failures:
        print("FAILED: " + "; ".join(run.failures))
        return 1
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./run bench",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--days", type=int, default=365, help="days of size-S data to seed and query"
    )
    parser.add_argument("--m-mb", type=int, default=20, help="MB per city at size M")
    parser.add_argument("--l-mb", type=int, default=155, help="MB per large city at size L")
    parser.add_argument("--l-cities", type=int, default=3, help="large cities at size L")
    parser.add_argument("--repeat", type=int, default=3, help="runs per service query")
    parser.add_argument(
        "--pandas-max-days", type=int, default=30, help="longest range the pandas baseline runs"
    )
    parser.add_argument(
        "--full-scan-max-days",
        type=int,
        default=30,
        help="longest range `source=full` runs on moto",
    )
    return asyncio.run(main(parser.parse_args(argv)))
