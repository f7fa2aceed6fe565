"""Take the dashboard screenshot of docs/dashboard.md: `./run python -m harness.screenshot`.

Starts the simulator (one city failing upstream, so the grid shows a failure) and the API on
a local store in a temporary folder, ingests a week, and saves what headless Chromium (the
same set-up as the browser test) shows at `/` to docs/dashboard.png.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
from pathlib import Path

import aiohttp

from busstats.reference.sim import Fault, SimulatorConfig
from busstats.storage import LocalStore
from harness.browser import chromium
from harness.servers import api_server, settings_for, simulator

FIRST_DAY = dt.date(2024, 5, 1)
DAYS = 7
FAILING_CITY = 3
OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"


async def ingest_week(http: aiohttp.ClientSession, url: str) -> None:
    """POST each date, then wait (bounded) until every job has finished."""
    job_ids: list[str] = []
    for offset in range(DAYS):
        day = (FIRST_DAY + dt.timedelta(days=offset)).isoformat()
        async with http.post(f"{url}/process-request", params={"date": day}) as response:
            response.raise_for_status()
            job_ids.append((await response.json())["job_id"])
    async with asyncio.timeout(300):
        for job_id in job_ids:
            while True:
                async with http.get(f"{url}/jobs/{job_id}") as response:
                    if (await response.json())["status"] in {"succeeded", "partial", "failed"}:
                        break
                await asyncio.sleep(0.2)


async def take(output: Path) -> None:
    config = SimulatorConfig(max_latency=0.2, faults={FAILING_CITY: Fault.ERROR})
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(Path(folder) / "store")
        async with (
            simulator(config) as sim,
            api_server(settings_for(store, sim), store) as url,
            aiohttp.ClientSession() as http,
        ):
            await ingest_week(http, url)
            last = (FIRST_DAY + dt.timedelta(days=DAYS - 1)).isoformat()
            async with chromium() as browser:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                await page.goto(f"{url}/")
                ready = f'body[data-rendered="{FIRST_DAY.isoformat()}..{last}"]'
                await page.wait_for_selector(ready, timeout=60_000)
                await page.screenshot(path=str(output), full_page=True)
    print(f"saved {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Take the screenshot of docs/dashboard.md.")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    asyncio.run(take(parser.parse_args().output))


if __name__ == "__main__":
    main()
