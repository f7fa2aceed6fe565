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
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import moto_process, service, simulator_process
from tests.servers import KEY_ID, REGION, SECRET

RESULTS = Path(__file__).parent / "results"
FIRST_DAY = dt.date(2024, 3, 1)


async def load(args: argparse.Namespace) -> dict[str, Any]:
    with moto_process() as moto, simulator_process("--max-latency", str(args.latency)) as sim:
        env = {
            "BUSSTATS_STORE": f"s3://{moto.new_bucket()}",
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
            errors: list[str] = []
            remaining = args.requests
            attempted = 0
            query = {"from": days[0].isoformat(), "to": days[-1].isoformat()}

            async def client() -> None:
                nonlocal remaining, attempted
                while remaining > 0:
                    remaining -= 1
                    attempted += 1
                    try:
                        status, body, seconds = await svc.get("/country-stats", **query)
                    except Exception as exc:  # a failed call is a figure, not a crash
                        errors.append(repr(exc))
                        continue
                    latencies.append(seconds)
                    if status != 200:
                        errors.append(f"{status}: {body}")

            started = time.perf_counter()
            async with asyncio.timeout(args.limit_seconds):
                ingests = [
                    asyncio.create_task(svc.ingest(day.isoformat(), poll=0.2)) for day in days[3:]
                ]
                await asyncio.gather(*(client() for _ in range(args.clients)))
                wall = time.perf_counter() - started
                jobs = await asyncio.gather(*ingests)
            peak = svc.rss.peak_mb
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "clients": args.clients,
        "requests": attempted,
        "errors": len(errors),
        "first_errors": errors[:5],
        "wall_seconds": wall,
        "requests_per_second": len(latencies) / wall,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "max_ms": max(latencies) * 1000,
        "peak_rss_mb": peak,
        "ingests": [job["status"] for job in jobs],
    }


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run bench-load", description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=4.2, help="simulator latency, s")
    parser.add_argument("--limit-seconds", type=float, default=600)
    args = parser.parse_args(argv)
    figures = asyncio.run(load(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(
        "| clients | requests | errors | p50 ms | p99 ms | max ms | req/s | peak RSS MB | ingests |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print(
        f"| {figures['clients']} | {figures['requests']} | {figures['errors']} |"
        f" {figures['p50_ms']:.0f} | {figures['p99_ms']:.0f} | {figures['max_ms']:.0f} |"
        f" {figures['requests_per_second']:.0f} | {figures['peak_rss_mb']:.0f} |"
        f" {', '.join(figures['ingests'])} |"
    )
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(cli())
