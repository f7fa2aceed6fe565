"""Smoke test of a running busstats stack: health, one ingest, one stats call.

Standard library only, so it runs on a bare CI runner against the container stack
(`docker compose up`), and in the test suite against the API on 127.0.0.1.

    python .ci/smoke.py --api http://127.0.0.1:8080 --date 2024-05-01

Exits 0 when every step passed, else 1 with the step that failed and why.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

FINISHED = {"succeeded", "partial", "failed"}


class SmokeFailure(Exception):
    """A step of the smoke test did not get the answer it needs."""


def call(method: str, url: str, expected: int) -> Any:
    """The decoded JSON body of one request, which must answer `expected`."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    if status != expected:
        raise SmokeFailure(f"{method} {url} answered {status}, expected {expected}: {body[:300]!r}")
    return json.loads(body)


def wait_until_up(api: str, seconds: float) -> None:
    """Poll /health/ready until the API and its store answer, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            call("GET", f"{api}/health/ready", 200)
            return
        except (SmokeFailure, OSError) as exc:
            last = str(exc)
        time.sleep(1)
    raise SmokeFailure(f"{api} was not ready within {seconds:g} s: {last}")


def ingest(api: str, day: str, seconds: float) -> dict[str, Any]:
    """Ask for a day and follow its job until it ends, for at most `seconds`."""
    accepted = call("POST", f"{api}/process-request?date={day}", 202)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = call("GET", f"{api}{accepted['status_url']}", 200)
        if job["status"] in FINISHED:
            if job["status"] != "succeeded":
                raise SmokeFailure(f"job ended {job['status']}: {json.dumps(job)[:2000]}")
            return job
        time.sleep(1)
    raise SmokeFailure(f"job {accepted['job_id']} did not finish within {seconds:g} s")


def check_stats(api: str, day: str, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The day's stats must count exactly the rows the job stored."""
    answer = call("GET", f"{api}/country-stats?from={day}&to={day}", 200)
    rows: list[dict[str, Any]] = answer["stats"]
    stored = sum(city["rows"] for city in job["cities"])
    counted = sum(row["buses_started"] for row in rows)
    if not rows or answer["dates_without_data"] or counted != stored:
        raise SmokeFailure(f"stats for {day} count {counted} buses, the job stored {stored}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:8080", help="the API's base URL")
    parser.add_argument("--date", default="2024-05-01", help="the day to ingest, YYYY-MM-DD")
    parser.add_argument("--ready-timeout", type=float, default=120, help="seconds")
    parser.add_argument("--job-timeout", type=float, default=300, help="seconds")
    args = parser.parse_args(argv)
    api: str = args.api.rstrip("/")
    try:
        wait_until_up(api, args.ready_timeout)
        print(f"ok: {api} is ready")
        job = ingest(api, args.date, args.job_timeout)
        print(f"ok: job {job['job_id']} stored {len(job['cities'])} cities")
        rows = check_stats(api, args.date, job)
        print(f"ok: country-stats for {args.date} has {len(rows)} countries")
    except SmokeFailure as exc:
        print(f"smoke test failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
