"""Log lines of a real `busstats serve` process through an ingest: JSON on a pipe, one line
per request, per job start and end and per city, and no credentials even at DEBUG."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp

from busstats.core.logs import QUIET_LIBRARIES, configure_logging
from busstats.reference.sim import SimulatorConfig
from harness.servers import KEY_ID, REGION, MotoEndpoint, serve_process, simulator
from tests.support.flows import ingest

DAY = "2024-05-01"


async def run_serve(
    env: dict[str, str], http: aiohttp.ClientSession, day: str, log: Path
) -> tuple[dict[str, Any], list[str]]:
    """Run `busstats serve` with `env`, ingest `day` through it, stop it; the job and the
    lines it wrote to stderr (a file: not a terminal, and never a full pipe)."""
    async with serve_process(env, http, log) as service:
        job = await ingest(http, service.url, day)
        await service.stop()
    return job, (await asyncio.to_thread(log.read_text)).splitlines()


async def test_job_city_and_request_lines_are_json_with_their_fields(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with simulator(SimulatorConfig(rows=(20, 40), max_latency=0.05)) as refsim:
        env = {
            "BUSSTATS_STORE": str(tmp_path / "store"),
            "BUSSTATS_REFERENCE_URL": refsim.url,
            "BUSSTATS_LOG_LEVEL": "INFO",
        }
        job, lines = await run_serve(env, http, DAY, tmp_path / "log")

    entries = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's too
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    colours = [v for e in entries for v in e.values() if isinstance(v, str) and "\x1b[" in v]
    assert not colours, "terminal colour codes in JSON lines"
    events: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        events.setdefault(entry.get("event", ""), []).append(entry)

    (started,) = events["job_started"]
    assert started["job_id"] == job["job_id"]
    assert started["date"] == DAY
    (finished,) = events["job_finished"]
    assert finished["job_id"] == job["job_id"]
    assert finished["date"] == DAY
    assert finished["status"] == job["status"] == "succeeded"
    assert finished["level"] == "INFO"
    assert finished["rows"] == sum(c["rows"] for c in job["cities"]) > 0
    assert finished["raw_bytes"] == sum(c["raw_bytes"] for c in job["cities"])
    assert finished["cities"] == 30
    assert finished["cities_failed"] == 0
    assert 0 < finished["duration_seconds"] < 30
    assert entries.index(started) < entries.index(finished)

    cities = {e["city_id"]: e for e in events["city_finished"]}
    assert sorted(cities) == list(range(30))
    for report in job["cities"]:
        line = cities[report["city_id"]]
        assert line["job_id"] == job["job_id"]
        assert line["date"] == DAY
        assert line["status"] == "succeeded"
        assert line["rows"] == report["rows"]
        assert line["raw_bytes"] == report["raw_bytes"]
        assert line["duration_seconds"] == report["duration_seconds"]

    requests = events["request"]
    (posted,) = [r for r in requests if r["method"] == "POST"]
    assert posted["route"] == "/process-request"
    assert posted["path"] == "/process-request"  # no query string
    assert posted["status"] == 202
    assert posted["duration_ms"] >= 0
    assert posted["client"].startswith("127.0.0.1:")
    polls = [r for r in requests if r["route"] == "/jobs/{job_id}"]
    assert polls
    assert {r["path"] for r in polls} == {f"/jobs/{job['job_id']}"}
    assert not any("GET /health HTTP/1.1" in e["message"] for e in entries), "uvicorn access log"


async def test_no_credentials_reach_the_log_even_at_debug(
    moto: MotoEndpoint, bucket: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    secret = "s3cr3t-Must-Not-Leak-0123456789"
    async with simulator(SimulatorConfig(rows=(1, 3), max_latency=0.0)) as refsim:
        env = {
            "BUSSTATS_STORE": f"s3://{bucket}",
            "BUSSTATS_S3_ENDPOINT_URL": moto.url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": secret,
            "BUSSTATS_REFERENCE_URL": refsim.url,
            "BUSSTATS_LOG_LEVEL": "DEBUG",
        }
        job, lines = await run_serve(env, http, DAY, tmp_path / "log")
    assert job["status"] == "succeeded"
    text = "\n".join(lines)
    assert any(json.loads(line)["level"] == "DEBUG" for line in lines)
    for leak in (secret, "Authorization", "X-Amz-Signature", "Signature="):
        assert leak not in text, f"{leak!r} appears in the log"


def test_a_terminal_gets_readable_lines_and_a_pipe_json() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    library_levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    terminal, pipe = Terminal(), io.StringIO()
    try:
        configure_logging("INFO", terminal)
        logging.getLogger("busstats.jobs").info("job x ended", extra={"event": "e", "rows": 7})
        configure_logging("INFO", pipe)
        logging.getLogger("busstats.jobs").info("job x ended", extra={"event": "e", "rows": 7})
    finally:
        root.handlers[:], root.level = saved
        for name, level in library_levels.items():
            logging.getLogger(name).setLevel(level)
    assert terminal.getvalue().rstrip().endswith("INFO busstats.jobs: job x ended  rows=7")
    entry = json.loads(pipe.getvalue())
    assert entry["message"] == "job x ended"
    assert entry["rows"] == 7
    assert entry["event"] == "e"
