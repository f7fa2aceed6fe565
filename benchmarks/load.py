"""`./run bench-load`: 50 clients make 1,000 `country-stats` calls while 3 ingests run.

uvicorn + moto + the simulator on 127.0.0.1, each in its own process, bounded in count and
time. Reports errors (must
be 0), latency percentiles and the service's peak RSS; writes results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.processes import moto_process, service, simulator_process
from harness.servers import KEY_ID, REGION, SECRET

RESULTS = Path(__file__).parent / "results"
FIRST_DAY = dt.date(2024, 3, 1)


async def load(args: argparse.Namespace) -> dict[str, Any]:
    with (
        moto_process() as moto,
        simulator_process("--max-latency", str(args.latency)) as sim,
        tempfile.TemporaryDirectory(prefix="busstats-load-") as folder,
    ):
        env = {
            "BUSSTATS_STORE": f"s3://{moto.new_bucket()}" if args.store == "moto" else folder,
            "BUSSTATS_S3_ENDPOINT_URL": moto.url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "BUSSTATS_REFERENCE_URL": sim.url,
        }
        days = [FIRST_DAY + dt.timedelta(days=n) for n in range(6)]
        async with service(env, Path("/tmp/busstats-load-service.log")) as svc:
            for day in days[:3]:  # data to ask about before the load starts
                await svc.ingest(day.isoformat(), poll=0.2)
            svc.rss.reset()
            latencies: list[float] = []
            started_at: list[float] = []
            errors: list[str] = []
            remaining = args.requests
            attempted = 0
            query = {"from": days[0].isoformat(), "to": days[-1].isoformat()}

            async def client() -> None:
                nonlocal remaining, attempted
                while remaining > 0:
                    remaining -= 1
                    attempted += 1
                    began = time.perf_counter()
                    try:
                        status, body, seconds = await svc.get("/country-stats", **query)
                    except Exception as exc:  # a failed call is a figure, not a crash
                        errors.append(repr(exc))
                        continue
                    latencies.append(seconds)
                    started_at.append(began)
                    if status != 200:
                        errors.append(f"{status}: {body}")

            started = time.perf_counter()
            ingests_done = float("inf")

            async def ingest_all() -> list[dict[str, Any]]:
                nonlocal ingests_done
                jobs = await asyncio.gather(
                    *(svc.ingest(day.isoformat(), poll=0.2) for day in days[3:])
                )
                ingests_done = time.perf_counter()
                return jobs

            async with asyncio.timeout(args.limit_seconds):
                ingesting = asyncio.create_task(ingest_all())
                await asyncio.gather(*(client() for _ in range(args.clients)))
                wall = time.perf_counter() - started
                jobs = await ingesting
            peak = svc.rss.peak_mb
    quantiles = statistics.quantiles(latencies, n=100)
    after = [lat for lat, t in zip(latencies, started_at, strict=True) if t >= ingests_done]
    after_quantiles = statistics.quantiles(after, n=100) if len(after) > 1 else [float("nan")] * 99
    return {
        "store": args.store,
        "clients": args.clients,
        "requests": attempted,
        "errors": len(errors),
        "first_errors": errors[:5],
        "wall_seconds": wall,
        "requests_per_second": len(latencies) / wall,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "max_ms": max(latencies) * 1000,
        "requests_after_ingests": len(after),
        "p50_after_ingests_ms": after_quantiles[49] * 1000,
        "p99_after_ingests_ms": after_quantiles[98] * 1000,
        "ingests_seconds": ingests_done - started,
        "peak_rss_mb": peak,
        "ingests": [job["status"] for job in jobs],
    }


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./run bench-load",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=50, help="clients calling at once")
    parser.add_argument("--requests", type=int, default=1000, help="calls in all")
    parser.add_argument("--latency", type=float, default=4.2, help="simulator latency, s")
    parser.add_argument(
        "--limit-seconds", type=float, default=600, help="the whole load run's time limit"
    )
    parser.add_argument(
        "--store", choices=["moto", "local"], default="moto", help="where the service stores"
    )
    args = parser.parse_args(argv)
    figures = asyncio.run(load(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"load-{args.store}.json").write_text(json.dumps(figures, indent=2) + "\n")
    f = figures
    print(
        "| store | clients | requests | errors | p50 ms | p99 ms | max ms | req/s | peak RSS MB"
        " | ingests | after the ingests: calls, p50 ms, p99 ms |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    print(
        f"| {f['store']} | {f['clients']} | {f['requests']} | {f['errors']} | {f['p50_ms']:.0f}"
        f" | {f['p99_ms']:.0f} | {f['max_ms']:.0f} | {f['requests_per_second']:.0f}"
        f" | {f['peak_rss_mb']:.0f} | {', '.join(f['ingests'])} in {f['ingests_seconds']:.0f} s"
        f" | {f['requests_after_ingests']}, {f['p50_after_ingests_ms']:.0f},"
        f" {f['p99_after_ingests_ms']:.0f} |"
    )
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(cli())
