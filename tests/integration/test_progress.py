"""A job's record costs O(cities) in all: progress saves are coalesced, not one per city."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from aiohttp import web

from busstats.core.settings import Settings
from busstats.storage import LocalStore
from busstats.storage.keys import job_key
from harness.servers import api_server
from tests.support.flows import ingest
from tests.support.loopback import loopback_app

CITIES = 600


class CountingStore(LocalStore):
    """The local store, counting writes per key."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writes: dict[str, int] = {}

    async def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        self.writes[key] = self.writes.get(key, 0) + 1
        return await super().put_bytes(key, data, if_absent=if_absent, if_match=if_match)


async def test_a_job_of_600_empty_cities_saves_its_record_a_few_times(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    listed = [{"id": n, "name": f"City {n}", "country": f"Land {n % 7}"} for n in range(CITIES)]

    async def upstream(request: web.Request) -> web.Response:
        body = listed if request.path == "/cities" else []
        return web.Response(body=json.dumps(body), content_type="application/json")

    store = CountingStore(tmp_path / "store")
    async with loopback_app(upstream) as (url, hits):
        settings = Settings(store=str(store.root), reference_url=url)
        async with api_server(settings, store) as api:
            job = await ingest(http, api, "2024-05-01")
    assert job["status"] == "succeeded", job["error"]
    assert len(job["cities"]) == CITIES
    assert len(hits) == CITIES + 1
    saves = store.writes[job_key(job["job_id"])]
    # one per second of the job at most (plus its creation and end), never one per city
    assert saves < 30, saves
