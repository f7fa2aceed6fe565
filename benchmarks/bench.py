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
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import psutil

from benchmarks.baselines import same_numbers
from benchmarks.cli_start import Start, cli_start_phase
from benchmarks.empty_upstream import empty_upstream
from benchmarks.executors import ExecutorsReport, Sizes, executors_phase
from benchmarks.report import write_report
from busstats.commit.summaries import decode_summaries
from busstats.reference.sim import SimulatorConfig
from busstats.reference.sim.server import latency_for
from busstats.storage.keys import summary_key
from harness.processes import Service, service, simulator_process
from harness.servers import KEY_ID, REGION, SECRET, MotoEndpoint, moto_server

RESULTS = Path(__file__).parent / "results"
SEED_START = dt.date(2023, 1, 1)
S_DAY = dt.date(2024, 6, 1)
M_DAY = dt.date(2024, 7, 1)
L_DAYS = [dt.date(2024, 8, 1), dt.date(2024, 8, 2)]
ROWS_PER_MB = 8200  # the simulator writes about 122 bytes a row
EMPTY_DAY = dt.date(2024, 9, 1)
EMPTY_CITIES_TARGET_SECONDS = 30.0  # issue 8 item 8
EMPTY_RANGE_TARGET_SECONDS = 1.0  # issue 8 item 11
FULL_OVER_POLARS_TARGET = 1.2  # issue 7


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


async def empty_cities_phase(run: Run) -> None:
    """Many cities, none with a bus that day, into the local store: the cost of a city
    itself (fetch, an empty Parquet file, two writes, a summary row), without data."""
    count = run.args.empty_cities
    async with empty_upstream(count) as upstream:
        env = {**run.s3_env(upstream), "BUSSTATS_STORE": str(run.work / "empty-local")}
        async with service(env, run.work / "service-empty.log") as svc:
            svc.rss.reset()
            started = asyncio.get_running_loop().time()
            # a 10,000-city job record is about 3 MB: ask for it twice a second, not 20 times
            job = await svc.ingest(EMPTY_DAY.isoformat(), poll=0.5)
            wall = asyncio.get_running_loop().time() - started
            peak = svc.rss.peak_mb
            status, answer, query_seconds = await svc.get(
                "/country-stats", **{"from": EMPTY_DAY.isoformat(), "to": EMPTY_DAY.isoformat()}
            )
    counted = sum(row["cities_counted"] for row in answer.get("stats", []))
    if job["status"] != "succeeded" or len(job["cities"]) != count or status != 200:
        run.failures.append(f"empty cities: job {job['status']}, {len(job['cities'])} cities")
    job_seconds = (
        dt.datetime.fromisoformat(job["finished_at"]) - dt.datetime.fromisoformat(job["started_at"])
    ).total_seconds()
    met = "met" if wall < EMPTY_CITIES_TARGET_SECONDS else "NOT met"
    note = (
        f"job {job_seconds:.1f} s, {count / wall:.0f} cities/s; target"
        f" < {EMPTY_CITIES_TARGET_SECONDS:.0f} s {met}"
    )
    run.record(Figure("ingest-0", "busstats", "local", f"{count} empty cities", wall, peak, note))
    run.facts["ingest-empty"] = {
        "cities": count,
        "wall_seconds": wall,
        "job_seconds": job_seconds,
        "peak_rss_mb": peak,
        "country_stats_seconds": query_seconds,
        "rows_answered": len(answer.get("stats", [])),
        "cities_counted": counted,
        "target_seconds": EMPTY_CITIES_TARGET_SECONDS,
    }


def committed_keys(root: Path, days: list[dt.date]) -> pl.DataFrame:
    """`raw_key` and `parquet_key` of every city the dates' summaries count: exactly the files
    the service's answer comes from (read from the local copy, which has the same summaries)."""
    blobs = [path.read_bytes() for day in days if (path := root / summary_key(day)).exists()]
    return decode_summaries(blobs).filter("counted").select("raw_key", "parquet_key")


def under(prefix: str, keys: pl.DataFrame) -> list[str]:
    return [f"{prefix}/{key}" for key in keys["parquet_key"]]


def baseline(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.baseline_run"],
        input=json.dumps(spec),  # on stdin: a year's list of files is too long for argv
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"baseline {spec['engine']} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def empty_range_query(run: Run, svc: Service, store: str) -> None:
    """The longest range the service accepts, over dates with no data at all (the years
    before the seeded ones): a LIST of `summary/` and one of `raw/` folders, nothing else."""
    end = SEED_START - dt.timedelta(days=1)
    days = [end - dt.timedelta(days=n) for n in reversed(range(run.args.max_range_days))]
    label = f"no data, {len(days)} days"
    stats = await service_query(run, svc, store, label, days, "summary")
    if stats:
        run.failures.append(f"{store} {label}: {len(stats)} rows for dates with no data")


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
        assert len(answer["stats"]) + len(answer["dates_without_data"]) >= len(days), answer
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
            await empty_range_query(run, svc, "moto")
            for label, days in ranges.items():
                ours = await service_query(run, svc, "moto", label, days, "summary")
                if len(days) <= run.args.full_scan_max_days:
                    full = await service_query(run, svc, "moto", label, days, "full")
                    run.check(f"busstats full moto {label}", ours, full)
                keys = committed_keys(local_root, days)
                globs = under(f"s3://{run.bucket}", keys)
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
                        "keys": keys["raw_key"].to_list(),
                    }
                    run_baseline(run, "moto", label, spec, ours)
        local_env = {**run.s3_env(sim.url), "BUSSTATS_STORE": str(local_root)}
        async with service(local_env, run.work / "service-query-local.log") as svc:
            await empty_range_query(run, svc, "local")
            for label, days in ranges.items():
                ours = await service_query(run, svc, "local", label, days, "summary")
                full = await service_query(run, svc, "local", label, days, "full")
                run.check(f"busstats full local {label}", ours, full)
                globs = under(str(local_root), committed_keys(local_root, days))
                run_baseline(run, "local", label, {"engine": "polars", "files": globs}, ours)
                run_baseline(run, "local", label, {"engine": "duckdb", "files": globs}, ours)


def targets(run: Run) -> dict[str, Any]:
    """The issue's targets beside this run's figures."""

    def seconds(engine: str, store: str, what: str) -> float | None:
        found = [
            f.seconds for f in run.figures if (f.engine, f.store, f.what) == (engine, store, what)
        ]
        return found[0] if found else None

    year = f"S {run.args.days} days"
    full, bare = seconds("busstats full", "local", year), seconds("polars", "local", year)
    empty_range = seconds("busstats", "moto", f"no data, {run.args.max_range_days} days")
    found: dict[str, Any] = {
        "empty_cities_seconds": run.facts["ingest-empty"]["wall_seconds"],
        "empty_cities_target": EMPTY_CITIES_TARGET_SECONDS,
        "empty_range_moto_seconds": empty_range,
        "empty_range_target": EMPTY_RANGE_TARGET_SECONDS,
        "full_over_polars_local": full / bare if full and bare else None,
        "full_over_polars_target": FULL_OVER_POLARS_TARGET,
        "year_moto_seconds": seconds("busstats", "moto", year),
    }
    print(
        f"  targets: {run.args.empty_cities} empty cities in {found['empty_cities_seconds']:.1f} s"
        f" (< {EMPTY_CITIES_TARGET_SECONDS:.0f}); no data over {run.args.max_range_days} days"
        f" on moto {empty_range or float('nan'):.3f} s (< {EMPTY_RANGE_TARGET_SECONDS:.0f});"
        f" source=full over {year} local"
        f" {found['full_over_polars_local'] or float('nan'):.2f}x bare Polars"
        f" (< {FULL_OVER_POLARS_TARGET})",
        flush=True,
    )
    return found


def copy_bucket_to_folder(run: Run, root: Path) -> None:
    """The same Parquet and summaries on local disk, for the local-store figures (raw JSON
    is not copied: only pandas reads it, on moto). Checks on the way that every sweep is
    done: `raw/` and `parquet/` hold exactly the files the summaries name."""
    s3 = run.moto.client()

    def listing(prefix: str) -> list[str]:
        return [
            item["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=run.bucket, Prefix=prefix
            )
            for item in page.get("Contents", [])
        ]

    summaries = listing("summary/")
    parquet = listing("parquet/")
    named = decode_summaries(
        [s3.get_object(Bucket=run.bucket, Key=key)["Body"].read() for key in summaries]
    ).filter("counted")
    for kind, stored in (("raw", listing("raw/")), ("parquet", parquet)):
        extra = set(stored) - set(named[f"{kind}_key"])
        missing = set(named[f"{kind}_key"]) - set(stored)
        if extra or missing:
            run.failures.append(
                f"{kind}/ is not what the summaries name: {len(extra)} files more"
                f" ({sorted(extra)[:2]}), {len(missing)} missing ({sorted(missing)[:2]})"
            )
    keys = summaries + parquet

    def fetch(key: str) -> None:
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=run.bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fetch, keys))


def executor_sizes(args: argparse.Namespace) -> Sizes:
    return Sizes(days=args.exec_days, mb=args.exec_mb, cities=args.exec_cities)


def record_executors(run: Run, report: ExecutorsReport) -> None:
    """The executors phase's runs as figures of the whole benchmark's table and JSON."""
    for r in report.results:
        note = (
            f"{r.raw_mib:.0f} MiB raw, {r.mib_per_second:.0f} MiB/s; p99 /health"
            f" {r.health_p99_ms or float('nan'):.0f} ms, 30-day /country-stats"
            f" {r.stats_p99_ms or float('nan'):.0f} ms"
        )
        what = f"backfill {r.days} M day(s)"
        run.record(
            Figure("executors", r.executor, r.store, what, r.wall_seconds, r.peak_rss_mb, note)
        )
    run.facts["executors"] = {"targets": report.targets, "failures": report.failures}
    run.failures.extend(report.failures)


def record_cli_starts(run: Run, starts: list[Start]) -> None:
    """The cli-start phase's medians as figures of the whole benchmark's table and JSON."""
    for s in starts:
        engine = s.what.split()[0]  # busstats, or python alone
        run.record(
            Figure("cli-start", engine, "-", s.what, s.median_seconds, s.peak_rss_mb, s.verdict)
        )
    run.facts["cli-start"] = [asdict(s) for s in starts]


async def only_executors(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="busstats-bench-") as folder:
        load = os.getloadavg()
        print(f"executors phase only; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        report = await executors_phase(executor_sizes(args), Path(folder), RESULTS)
    if report.failures:
        print("FAILED: " + "; ".join(report.failures))
        return 1
    return 0


async def main(args: argparse.Namespace) -> int:
    RESULTS.mkdir(exist_ok=True)
    if args.only == "executors":
        return await only_executors(args)
    if args.only == "cli-start":
        cli_start_phase(args.cli_runs, RESULTS)
        return 0
    with moto_server() as moto, tempfile.TemporaryDirectory(prefix="busstats-bench-") as folder:
        work = Path(folder)
        run = Run(args, moto, moto.new_bucket(), work)
        load_at_start = os.getloadavg()
        print(
            f"busstats benchmark on {platform.node()}: {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load average"
            f" {load_at_start[0]:.2f} {load_at_start[1]:.2f} {load_at_start[2]:.2f}"
            " (the machine is shared: other work running slows every figure)",
            flush=True,
        )
        record_cli_starts(run, cli_start_phase(args.cli_runs, RESULTS))
        await empty_cities_phase(run)
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
        copy_bucket_to_folder(run, work / "local")
        ranges = {
            "S 1 day": seed_days[:1],
            f"S {min(30, args.days)} days": seed_days[:30],
            f"S {args.days} days": seed_days,
            "L 2 days": L_DAYS,
        }
        await query_phase(
            run, dict(sorted(ranges.items(), key=lambda item: len(item[1]))), work / "local"
        )
        executors_work = work / "executors"
        executors_work.mkdir()
        s_day_ratio = run.facts["ingest-S"]["ratio"]
        report = await executors_phase(executor_sizes(args), executors_work, RESULTS, s_day_ratio)
        record_executors(run, report)
        run.facts["targets"] = targets(run)
    load_at_end = os.getloadavg()
    print(
        f"load average at the end: {load_at_end[0]:.2f} {load_at_end[1]:.2f} {load_at_end[2]:.2f}"
    )
    machine = {
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_at_end": [round(x, 2) for x in load_at_end],
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
        "--empty-cities", type=int, default=10_000, help="cities of the empty-day ingest"
    )
    parser.add_argument(
        "--max-range-days",
        type=int,
        default=3660,
        help="days of the query over dates with no data (BUSSTATS_MAX_RANGE_DAYS)",
    )
    parser.add_argument(
        "--pandas-max-days", type=int, default=30, help="longest range the pandas baseline runs"
    )
    parser.add_argument(
        "--full-scan-max-days",
        type=int,
        default=30,
        help="longest range `source=full` runs on moto",
    )
    parser.add_argument(
        "--only",
        choices=["executors", "cli-start"],
        help="run only this phase (it writes results/executors.json or results/cli_start.json,"
        " not latest.json)",
    )
    parser.add_argument(
        "--exec-days", type=int, default=3, help="M days the executors phase backfills"
    )
    parser.add_argument(
        "--exec-mb", type=int, default=20, help="MB per city of the executors phase's days"
    )
    parser.add_argument(
        "--exec-cities", type=int, default=30, help="cities of the executors phase (up to 30)"
    )
    parser.add_argument(
        "--cli-runs", type=int, default=10, help="runs per command of the cli-start phase"
    )
    return asyncio.run(main(parser.parse_args(argv)))
