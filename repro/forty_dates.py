"""40 dates POSTed at once to one `busstats serve` under `ulimit -n 1024`, on moto; then
`/country-stats` over them (default and source=full) while 10 of them are re-ingested.
Run: PYTHONPATH=. .venv/bin/python repro/forty_dates.py  (bounded: about 3 minutes at most)."""

from __future__ import annotations

import asyncio
import datetime as dt
import resource
import sys

import aiohttp

from busstats.refsim import SimulatorConfig
from tests.servers import moto_server, s3_environment, serve_process, simulator

DAYS = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(40)]


async def main() -> int:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))  # inherited by the serve process
    problems: list[str] = []
    with moto_server() as moto:
        bucket = moto.new_bucket()
        async with (
            simulator(SimulatorConfig(rows=(200, 400), max_latency=0.5)) as sim,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http,
            serve_process(
                {**s3_environment(bucket, moto.url), "BUSSTATS_REFERENCE_URL": sim.url}, http
            ) as api,
        ):

            async def post(day: dt.date) -> str:
                async with http.post(f"{api.url}/process-request?date={day}") as r:
                    assert r.status == 202, await r.text()
                    return (await r.json())["job_id"]

            async def final(job_id: str) -> dict[str, object]:
                async with asyncio.timeout(150):
                    while True:
                        async with http.get(f"{api.url}/jobs/{job_id}") as r:
                            job = await r.json()
                        if job["status"] in {"succeeded", "partial", "failed"}:
                            return job
                        await asyncio.sleep(0.5)

            ids = await asyncio.gather(*(post(d) for d in DAYS))
            jobs = await asyncio.gather(*(final(i) for i in ids))
            bad = [(j["date"], j["status"], j["error"]) for j in jobs if j["status"] != "succeeded"]
            print(f"40 dates: {40 - len(bad)} succeeded; not: {bad[:5]}")
            if bad:
                problems.append("some of the 40 dates did not succeed")

            # hammer stats while 10 dates are re-ingested
            again = await asyncio.gather(*(post(d) for d in DAYS[:10]))
            statuses: dict[int, int] = {}
            bodies: list[str] = []

            async def hammer(source: str) -> None:
                for _ in range(15):
                    q = f"from={DAYS[0]}&to={DAYS[-1]}" + (f"&source={source}" if source else "")
                    async with http.get(f"{api.url}/country-stats?{q}") as r:
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                        if r.status != 200:
                            bodies.append((await r.text())[:300])
                        else:
                            body = await r.json()
                            if body["dates_without_data"] or body["incomplete_dates"]:
                                bodies.append(
                                    f"200 with holes: {body['dates_without_data'][:3]} "
                                    f"{body['incomplete_dates'][:1]}"
                                )

            await asyncio.gather(*(hammer(s) for s in ["", "full", "", "full"]))
            rejobs = await asyncio.gather(*(final(i) for i in again))
            print("stats statuses during re-ingest:", statuses, bodies[:3])
            print("re-ingests:", sorted({j["status"] for j in rejobs}))
            if set(statuses) != {200} or bodies:
                problems.append("stats during re-ingest were not all complete 200s")
    print("PROBLEMS:" if problems else "held", problems)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
