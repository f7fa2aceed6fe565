"""The executors phase of `./run bench` (issue 11 item 5): one backfill of M-size days,
`POST /process-request?from=&to=`, with each executor, into the local store and into moto.

- Upstream serves bytes generated once beforehand (`harness.file_upstream`), so the
  simulator's own cost stays out of the figure.
- Runs: `threads` (conversions in threads of the service, as before issue 11), `local` with
  one and with two worker processes, `dask` on a `LocalCluster` of two worker processes (its
  own process: `harness.dask_cluster`). Each run gets a fresh service, a fresh store (the
  local folder, or a fresh moto process) holding the same earlier committed S days, so that a
  30-day `/country-stats` ending on the backfill's last day has data while the backfill runs.
  Before the timed backfill, each service re-ingests one of those S days (the warm-up: worker
  processes and Dask connections start there, and its time is reported apart).
- Figures: wall time from the POST to the backfill's end, raw MiB/s converted, peak RSS summed
  over the service and all its descendants (and the Dask cluster's processes), and the p99
  latency of `GET /health` and of that 30-day `/country-stats`, each polled every 50 ms
  (bounded count) while the backfill runs.
- Checks: every backfill succeeds; every run's final 30-day answer equals the first run's, and
  the first run's equals a bare Polars scan of the files its summaries name. A disagreement
  fails the run.

Run only this phase: `./run bench --only executors` (sizes: `--exec-days`, `--exec-mb`,
`--exec-cities`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.baselines import polars_parquet, same_numbers
from busstats.commit.summaries import decode_summaries
from busstats.reference.sim import SimulatorConfig
from busstats.reference.sim.server import rows_for
from busstats.storage.keys import PARQUET, SUMMARY, summary_key
from harness.dask_cluster import dask_cluster_process
from harness.file_upstream import file_upstream_process, write_bodies
from harness.processes import Service, moto_process, service
from harness.servers import KEY_ID, REGION, SECRET, MotoEndpoint, s3_environment
from harness.tree_rss import TreeRss

FIRST_DAY = dt.date(2025, 3, 1)
WINDOW_DAYS = 30
"""The `/country-stats` range polled during each backfill, ending on its last day."""
ROWS_PER_MB = 8200  # the simulator writes about 122 bytes a row
POLL_SECONDS = 0.05
MAX_SAMPLES = 20_000
"""Per polled route and run: 20,000 calls 50 ms apart is over 15 minutes of backfill."""
IDLE_SAMPLES = 40
"""Calls per route before the backfill, at rest: the p99 the ingest is compared with."""
DASK_WORKERS = 2
DASK_THREADS = 16
"""Tasks at once per Dask worker: city work awaits its download, so slots are not cores."""
SPEEDUP_TARGET = 1.6
P99_TARGET_MS = 50.0
S_DAY_TARGET = 1.1


@dataclass(frozen=True)
class ExecutorRun:
    name: str
    env: dict[str, str]
    dask: bool = False


RUNS = [
    ExecutorRun("threads", {"BUSSTATS_EXECUTOR": "threads"}),
    ExecutorRun("local x1", {"BUSSTATS_EXECUTOR": "local", "BUSSTATS_WORKER_PROCESSES": "1"}),
    ExecutorRun("local x2", {"BUSSTATS_EXECUTOR": "local", "BUSSTATS_WORKER_PROCESSES": "2"}),
    ExecutorRun("dask x2", {"BUSSTATS_EXECUTOR": "dask"}, dask=True),
]
STORES = ("local", "moto")


@dataclass(frozen=True)
class Sizes:
    days: int
    mb: int
    cities: int


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list[float])
    errors: int = 0

    def p99_ms(self) -> float | None:
        if len(self.seconds) < 2:
            return None
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[98] * 1000

    def median_ms(self) -> float | None:
        return statistics.median(self.seconds) * 1000 if self.seconds else None


@dataclass
class RunResult:
    executor: str
    store: str
    days: int
    cities: int
    status: str
    raw_mib: float
    wall_seconds: float
    mib_per_second: float
    peak_rss_mb: float
    warmup_seconds: float
    """The first job (one S day, re-ingested, untimed): starting worker processes included."""
    idle_health_p99_ms: float | None
    idle_stats_p99_ms: float | None
    """p99 of the same calls at rest, just before the backfill (IDLE_SAMPLES each)."""
    health_p99_ms: float | None
    health_median_ms: float | None
    health_calls: int
    health_errors: int
    stats_p99_ms: float | None
    stats_median_ms: float | None
    stats_calls: int
    stats_errors: int
    final_answer: list[dict[str, Any]] = field(repr=False)
    polars_check: str | None = None
    """Local store: "agree", or how the answer differs from a bare Polars scan."""


@dataclass
class ExecutorsReport:
    sizes: Sizes
    upstream_mib: float
    results: list[RunResult]
    targets: dict[str, Any]
    failures: list[str]


@dataclass
class Plan:
    sizes: Sizes
    backfill: list[dt.date]
    seed: list[dt.date]
    window: list[dt.date]
    work: Path

    @classmethod
    def of(cls, sizes: Sizes, work: Path) -> Plan:
        backfill = [FIRST_DAY + dt.timedelta(days=n) for n in range(sizes.days)]
        window = [backfill[-1] - dt.timedelta(days=n) for n in reversed(range(WINDOW_DAYS))]
        # at least one seed day: each run first re-ingests it, to start its worker processes
        seed_days = max(1, WINDOW_DAYS - sizes.days)
        seed = [FIRST_DAY - dt.timedelta(days=n) for n in reversed(range(1, seed_days + 1))]
        return cls(sizes, backfill, seed, window, work)

    def window_params(self) -> dict[str, str]:
        return {"from": self.window[0].isoformat(), "to": self.window[-1].isoformat()}


def generate_upstream(plan: Plan, folder: Path) -> int:
    """Every body, once: S-size seed days (the simulator's usual 1000-3000 rows) and the
    backfill's M days (`sizes.mb` MB a city)."""
    config = SimulatorConfig()
    m_rows = plan.sizes.mb * ROWS_PER_MB
    written = write_bodies(
        folder, plan.seed, plan.sizes.cities, lambda d, c: rows_for(config, d, c)
    )
    return written + write_bodies(folder, plan.backfill, plan.sizes.cities, lambda d, c: m_rows)


async def backfill(svc: Service, first: dt.date, last: dt.date) -> dict[str, Any]:
    """POST the backfill and wait (bounded) until it ends; returns its record."""
    params = {"from": first.isoformat(), "to": last.isoformat()}
    async with svc.http.post(f"{svc.url}/process-request", params=params) as response:
        assert response.status == 202, await response.text()
        status_url = (await response.json())["status_url"]
    async with asyncio.timeout(3600):
        while True:
            status, record, _ = await svc.get(status_url)
            assert status == 200, record
            if record["status"] != "running":
                return record
            await asyncio.sleep(0.25)


async def poll(
    svc: Service,
    path: str,
    params: dict[str, str],
    stop: asyncio.Event,
    limit: int = MAX_SAMPLES,
) -> Latencies:
    """Call `path` every POLL_SECONDS until `stop`, at most `limit` times."""
    found = Latencies()
    while not stop.is_set() and len(found.seconds) + found.errors < limit:
        status, _, seconds = await svc.get(path, **params)
        if status == 200:
            found.seconds.append(seconds)
        else:
            found.errors += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)
    return found


def copy_committed(source: Path, target: Path) -> None:
    """The seed's commits (summaries and Parquet) into a fresh local store."""
    for kind in (SUMMARY, PARQUET):
        if (source / kind).exists():
            shutil.copytree(source / kind, target / kind)


def upload_committed(source: Path, moto: MotoEndpoint, bucket: str) -> None:
    """The seed's commits (summaries and Parquet) into a fresh bucket."""
    s3 = moto.client()
    files = [p for kind in (SUMMARY, PARQUET) for p in (source / kind).rglob("*") if p.is_file()]

    def put(path: Path) -> None:
        s3.put_object(
            Bucket=bucket, Key=path.relative_to(source).as_posix(), Body=path.read_bytes()
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))


@contextlib.asynccontextmanager
async def store_for(plan: Plan, store: str, label: str) -> AsyncIterator[dict[str, str]]:
    """A fresh store holding the seed's commits; yields the service's store settings."""
    seeded = plan.work / "seed"
    if store == "local":
        root = plan.work / f"store-{label}"
        copy_committed(seeded, root)
        try:
            yield {"BUSSTATS_STORE": str(root)}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    with moto_process() as moto:
        bucket = moto.new_bucket()
        upload_committed(seeded, moto, bucket)
        yield s3_environment(bucket, moto.url)


async def seed_store(plan: Plan, upstream: str) -> None:
    """Ingest the seed's S days once, into a local folder every run copies from."""
    root = plan.work / "seed"
    root.mkdir()
    if not plan.seed:
        return
    env = {"BUSSTATS_STORE": str(root), "BUSSTATS_REFERENCE_URL": upstream}
    async with service({**env, "BUSSTATS_EXECUTOR": "threads"}, plan.work / "seed.log") as svc:
        record = await backfill(svc, plan.seed[0], plan.seed[-1])
    if record["status"] != "succeeded":
        raise RuntimeError(f"the seed backfill ended {record['status']}: {record.get('reason')}")


async def measure(
    plan: Plan, run: ExecutorRun, store: str, env: dict[str, str], roots: list[int]
) -> RunResult:
    log = plan.work / f"service-{run.name.replace(' ', '')}-{store}.log"
    async with service(env, log) as svc:
        started = time.perf_counter()
        warm = await svc.ingest(plan.seed[-1].isoformat())
        warmup = time.perf_counter() - started
        if warm["status"] != "succeeded":
            raise RuntimeError(f"{run.name} {store}: the warm-up job ended {warm['status']}")
        at_rest = asyncio.Event()  # never set: each stops after IDLE_SAMPLES
        idle_health, idle_stats = await asyncio.gather(
            poll(svc, "/health", {}, at_rest, IDLE_SAMPLES),
            poll(svc, "/country-stats", plan.window_params(), at_rest, IDLE_SAMPLES),
        )
        rss = TreeRss([svc.process.pid, *roots])
        try:
            rss.reset()
            started = time.perf_counter()
            stop = asyncio.Event()
            health = asyncio.create_task(poll(svc, "/health", {}, stop))
            stats = asyncio.create_task(poll(svc, "/country-stats", plan.window_params(), stop))
            try:
                record = await backfill(svc, plan.backfill[0], plan.backfill[-1])
                wall = time.perf_counter() - started
            finally:
                stop.set()
                health_calls, stats_calls = await asyncio.gather(health, stats)
            peak = rss.peak_mb
        finally:
            rss.stop()
        jobs = [(await svc.get(f"/jobs/{job['job_id']}"))[1] for job in record["jobs"]]
        status, answer, _ = await svc.get("/country-stats", **plan.window_params())
        assert status == 200, answer
        # the files are still there: recompute the answer independently (cheap: 30 days)
        polars_check = (
            recompute(Path(env["BUSSTATS_STORE"]), plan, answer) if store == "local" else None
        )
    raw = sum(city["raw_bytes"] for job in jobs for city in job["cities"]) / 2**20
    statuses = {job["status"] for job in jobs}
    problem = "" if record["status"] == "succeeded" else f" ({record.get('reason')}; {statuses})"
    if answer["dates_without_data"]:
        problem += f"; no data afterwards for {answer['dates_without_data']}"
    return RunResult(
        executor=run.name,
        store=store,
        days=len(plan.backfill),
        cities=plan.sizes.cities,
        status=record["status"] + problem,
        raw_mib=raw,
        wall_seconds=wall,
        mib_per_second=raw / wall,
        peak_rss_mb=peak,
        warmup_seconds=warmup,
        idle_health_p99_ms=idle_health.p99_ms(),
        idle_stats_p99_ms=idle_stats.p99_ms(),
        health_p99_ms=health_calls.p99_ms(),
        health_median_ms=health_calls.median_ms(),
        health_calls=len(health_calls.seconds),
        health_errors=health_calls.errors,
        stats_p99_ms=stats_calls.p99_ms(),
        stats_median_ms=stats_calls.median_ms(),
        stats_calls=len(stats_calls.seconds),
        stats_errors=stats_calls.errors,
        final_answer=answer["stats"],
        polars_check=polars_check,
    )


def recompute(root: Path, plan: Plan, answer: dict[str, Any]) -> str:
    """A bare Polars scan of exactly the files the window's summaries name, against the
    service's answer: "" when they agree, else what differs."""
    blobs = [path.read_bytes() for day in plan.window if (path := root / summary_key(day)).exists()]
    keys = decode_summaries(blobs).filter("counted")["parquet_key"].to_list()
    problem = same_numbers(answer["stats"], polars_parquet([str(root / key) for key in keys]))
    return problem or "agree"


async def one_run(plan: Plan, run: ExecutorRun, store: str, upstream: str) -> RunResult:
    async with store_for(plan, store, run.name.replace(" ", "")) as store_env:
        env = {**store_env, **run.env, "BUSSTATS_REFERENCE_URL": upstream}
        if not run.dask:
            return await measure(plan, run, store, env, [])
        credentials = {
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": REGION,
        }
        with dask_cluster_process(DASK_WORKERS, DASK_THREADS, credentials, plan.work) as cluster:
            env["BUSSTATS_DASK_SCHEDULER"] = cluster.address
            return await measure(plan, run, store, env, [cluster.pid])


def targets(results: list[RunResult], s_day_ratio: float | None) -> dict[str, Any]:
    def throughput(executor: str) -> float | None:
        found = [r for r in results if (r.executor, r.store) == (executor, "local")]
        return found[0].mib_per_second if found else None

    threads, local2 = throughput("threads"), throughput("local x2")
    speedup = local2 / threads if threads and local2 else None
    p99s = [p for r in results for p in (r.health_p99_ms, r.stats_p99_ms) if p is not None]
    worst = max(p99s) if p99s else None
    return {
        "local_x2_over_threads_local": speedup,
        "local_x2_over_threads_target": SPEEDUP_TARGET,
        "local_x2_over_threads_met": speedup is not None and speedup >= SPEEDUP_TARGET,
        "worst_p99_ms": worst,
        "p99_target_ms": P99_TARGET_MS,
        "p99_met": worst is not None and worst < P99_TARGET_MS,
        "s_day_over_slowest_city": s_day_ratio,
        "s_day_target": S_DAY_TARGET,
        "s_day_met": None if s_day_ratio is None else s_day_ratio <= S_DAY_TARGET,
    }


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def table(report: ExecutorsReport) -> str:
    lines = [
        "| executor | store | warm-up s | raw MiB | wall s | MiB/s | peak RSS MB"
        " | /health p99 ms (calls), at rest | 30-day /country-stats p99 ms (calls), at rest"
        " | backfill |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report.results:
        lines.append(
            f"| {r.executor} | {r.store} | {r.warmup_seconds:.1f} | {r.raw_mib:.0f}"
            f" | {r.wall_seconds:.1f} | {r.mib_per_second:.1f} | {r.peak_rss_mb:.0f}"
            f" | {_ms(r.health_p99_ms)} ({r.health_calls}), {_ms(r.idle_health_p99_ms)}"
            f" | {_ms(r.stats_p99_ms)} ({r.stats_calls}), {_ms(r.idle_stats_p99_ms)}"
            f" | {r.status} |"
        )
    t = report.targets
    met = {True: "met", False: "NOT met", None: "not measured"}
    speedup = t["local_x2_over_threads_local"]
    lines += [
        "",
        "| target | result |",
        "| --- | --- |",
        f"| local x2 at least {SPEEDUP_TARGET}x threads (local store, MiB/s) |"
        f" {met[t['local_x2_over_threads_met'] if speedup else None]}:"
        f" {speedup or float('nan'):.2f}x |",
        f"| API p99 under {P99_TARGET_MS:.0f} ms during every ingest |"
        f" {met[t['p99_met'] if t['worst_p99_ms'] else None]}: worst p99"
        f" {_ms(t['worst_p99_ms'])} ms |",
        f"| 30-city S day within {S_DAY_TARGET}x its slowest city (phase ingest-S) |"
        f" {met[t['s_day_met']]}"
        + (
            f": {t['s_day_over_slowest_city']:.2f}x |"
            if t["s_day_over_slowest_city"] is not None
            else " (run the whole `./run bench`) |"
        ),
    ]
    by_run = {(r.executor, r.store): r.wall_seconds for r in report.results}
    ratios = [
        f"{run.name} {by_run[run.name, 'moto'] / by_run[run.name, 'local']:.1f}x"
        for run in RUNS
        if (run.name, "moto") in by_run and (run.name, "local") in by_run
    ]
    if ratios:
        lines += ["", "wall time on moto over the local store: " + ", ".join(ratios)]
    return "\n".join(lines)


async def executors_phase(
    sizes: Sizes, work: Path, results_folder: Path, s_day_ratio: float | None = None
) -> ExecutorsReport:
    """Run every executor on both stores, print the table, write `executors.json`."""
    plan = Plan.of(sizes, work)
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    upstream_bytes = await asyncio.to_thread(generate_upstream, plan, work / "upstream")
    print(
        f"  executors: {upstream_bytes / 2**20:.0f} MiB of upstream bodies written in"
        f" {time.perf_counter() - started:.0f} s ({len(plan.seed)} S days to seed,"
        f" {sizes.days} M days x {sizes.cities} cities x {sizes.mb} MB to backfill)",
        flush=True,
    )
    results: list[RunResult] = []
    failures: list[str] = []
    with file_upstream_process(work / "upstream") as upstream:
        await seed_store(plan, upstream)
        for store in STORES:
            for run in RUNS:
                result = await one_run(plan, run, store, upstream)
                results.append(result)
                print(
                    f"  executors {run.name:<9} {store:<6} {result.wall_seconds:6.1f} s"
                    f" {result.mib_per_second:6.1f} MiB/s {result.peak_rss_mb:6.0f} MB"
                    f" p99 /health {_ms(result.health_p99_ms)} ms, /country-stats"
                    f" {_ms(result.stats_p99_ms)} ms: {result.status}",
                    flush=True,
                )
    for result in results:
        if not result.status.startswith("succeeded"):
            failures.append(f"executors {result.executor} {result.store}: {result.status}")
        if result.health_errors or result.stats_errors:
            failures.append(
                f"executors {result.executor} {result.store}: {result.health_errors} /health"
                f" and {result.stats_errors} /country-stats calls failed during the backfill"
            )
        if result.polars_check not in (None, "agree"):
            failures.append(
                f"executors {result.executor} {result.store} disagrees with a bare Polars scan"
                f" of its files: {result.polars_check}"
            )
        problem = same_numbers(results[0].final_answer, result.final_answer)
        if problem:
            failures.append(
                f"executors {result.executor} {result.store} disagrees with"
                f" {results[0].executor} {results[0].store}: {problem}"
            )
    report = ExecutorsReport(
        sizes, upstream_bytes / 2**20, results, targets(results, s_day_ratio), failures
    )
    print()
    print(table(report))
    for failure in failures:
        print(f"  DISAGREEMENT {failure}", flush=True)
    write_json(report, load_at_start, results_folder / "executors.json")
    return report


def write_json(
    report: ExecutorsReport, load_at_start: tuple[float, float, float], path: Path
) -> None:
    payload = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            "runs": {run.name: run.env for run in RUNS},
            "dask": {"workers": DASK_WORKERS, "threads_per_worker": DASK_THREADS},
            "poll_seconds": POLL_SECONDS,
            "window_days": WINDOW_DAYS,
        },
        "sizes": asdict(report.sizes),
        "upstream_mib": report.upstream_mib,
        "runs": [
            {k: v for k, v in asdict(r).items() if k != "final_answer"} for r in report.results
        ],
        "targets": report.targets,
        "failures": report.failures,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")
