"""How the client commands show things: rich tables and a live display on a terminal, plain
aligned text and one line per change otherwise (a pipe, a file, a CI log)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Literal

import msgspec
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from busstats.model.backfills import BackfillAccepted, BackfillRecord
from busstats.model.jobs import CityReport, JobRecord

Backfill = BackfillAccepted | BackfillRecord
"""A backfill as the service answers its start, or its record since."""

Align = Literal["left", "right"]

STATUS_STYLES = {
    "queued": "dim",
    "pending": "dim",
    "running": "yellow",
    "succeeded": "green",
    "partial": "magenta",
    "failed": "bold red",
    "cancelled": "bold red",
    "interrupted": "bold red",
}


@dataclass(frozen=True)
class Column:
    header: str
    align: Align = "left"


def print_table(
    console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str = ""
) -> None:
    """A rich table on a terminal; plain aligned columns (two spaces apart) otherwise.

    >>> import io
    >>> out = io.StringIO()
    >>> print_table(Console(file=out), [Column("city"), Column("rows", "right")], [["Lyon", "7"]])
    >>> print(out.getvalue(), end="")
    city  rows
    Lyon     7
    """
    if console.is_terminal:
        table = Table(title=title or None, title_justify="left")
        for column in columns:
            table.add_column(column.header, justify=column.align)
        for row in rows:
            table.add_row(*(Text(cell, style=STATUS_STYLES.get(cell, "")) for cell in row))
        console.print(table)
        return
    if title:
        console.out(title, highlight=False)
    console.out(plain_table(columns, rows), highlight=False)


def plain_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, no trailing spaces."""
    widths = [max([len(c.header), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    lines: list[str] = []
    for cells in [[c.header for c in columns], *rows]:
        padded = [
            cell.rjust(width) if column.align == "right" else cell.ljust(width)
            for cell, width, column in zip(cells, widths, columns, strict=True)
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def timestamp(moment: dt.datetime) -> str:
    """A time as the service wrote it in JSON (RFC 3339).

    >>> timestamp(dt.datetime(2024, 5, 1, 6, 30, 0, 250000, tzinfo=dt.UTC))
    '2024-05-01T06:30:00.250000Z'
    """
    return msgspec.json.encode(moment)[1:-1].decode()


def city_line(job: JobRecord, city: CityReport) -> str:
    """One city's outcome, for the plain progress lines."""
    where = f"{job.date} city {city.city_id} {city.city_name} ({city.country})"
    if city.status == "failed":
        return f"{where}: failed: {city.error or 'no reason given'}"
    seconds = f", {city.duration_seconds:.2f} s" if city.duration_seconds is not None else ""
    return f"{where}: {city.status}, {city.rows} rows, {city.invalid_rows} invalid{seconds}"


def job_line(job: JobRecord) -> str:
    """The job's status, and when it has finished, how many cities made it and why not all."""
    line = f"{job.date} job {job.job_id}: {job.status}"
    if job.cities:
        done = sum(city.status == "succeeded" for city in job.cities)
        line += f", {done}/{len(job.cities)} cities stored"
    if job.error:
        line += f": {job.error}"
    return line


def backfill_line(backfill: Backfill) -> str:
    """The backfill's status and how far it has gone; once ended, why.

    >>> from busstats.model.backfills import BackfillStatus
    >>> started = BackfillAccepted(backfill_id="5c0e", first=dt.date(2024, 5, 1),
    ...     last=dt.date(2024, 5, 7), status=BackfillStatus.RUNNING, status_url="", jobs=[])
    >>> backfill_line(started)
    'backfill 5c0e 2024-05-01..2024-05-07: running'
    """
    line = f"backfill {backfill.backfill_id} {backfill.first}..{backfill.last}: {backfill.status}"
    if not isinstance(backfill, BackfillRecord):  # just started: no counts yet
        return line
    if backfill.finished and backfill.reason:  # the reason has the counts
        return f"{line}: {backfill.reason}"
    if backfill.progress is not None:
        counts = backfill.progress
        line += (
            f", {counts.done}/{counts.total} dates ingested, {counts.failed} failed,"
            f" {counts.in_progress} in progress, {counts.left} left"
        )
    return line


MANY_JOBS = 10
"""Above this many jobs, the live display shows only the jobs not ended and those that did
not succeed (the final lines list them all)."""


@dataclass
class PlainProgress:
    """A line for each change: a job's status, a city that finished. Nothing is repeated, so
    the output of a long run stays readable in a log."""

    out: IO[str]
    _seen: dict[tuple[str, int | None], str] = field(
        default_factory=dict[tuple[str, int | None], str]
    )

    def update(self, jobs: Sequence[JobRecord]) -> None:
        for job in jobs:
            for city in job.cities:
                if city.status in ("succeeded", "failed") and self._changed(
                    job, city.city_id, city.status
                ):
                    print(city_line(job, city), file=self.out, flush=True)
            if self._changed(job, None, job.status):
                print(job_line(job), file=self.out, flush=True)

    def backfill(self, backfill: Backfill) -> None:
        """A line when the backfill's status or counts change."""
        line = backfill_line(backfill)
        if self._seen.get((backfill.backfill_id, None)) != line:
            self._seen[(backfill.backfill_id, None)] = line
            print(line, file=self.out, flush=True)

    def _changed(self, job: JobRecord, city_id: int | None, status: str) -> bool:
        key = (job.job_id, city_id)
        if self._seen.get(key) == status:
            return False
        self._seen[key] = status
        return True


class LiveProgress:
    """A display redrawn on each poll: a bar per job (cities finished of cities listed) and a
    table of cities: every city of a single job; for several jobs, the cities running or failed."""

    def __init__(self, console: Console) -> None:
        self._live = Live(
            console=console, auto_refresh=False
        )  # crops to the screen; whole at the end

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def update(self, jobs: Sequence[JobRecord], backfill: BackfillRecord | None = None) -> None:
        self._live.update(live_view(jobs, backfill), refresh=True)


def live_view(jobs: Sequence[JobRecord], backfill: BackfillRecord | None = None) -> RenderableType:
    """Bars and cities of `jobs`; with `backfill`, its line on top and, for many jobs, only
    those not ended or not succeeded."""
    bars = Table.grid(padding=(0, 2))
    if backfill is not None and len(jobs) > MANY_JOBS:
        jobs = [job for job in jobs if job.status != "succeeded"]
    for job in jobs:
        total = len(job.cities)
        finished = sum(city.status in ("succeeded", "failed") for city in job.cities)
        bars.add_row(
            str(job.date),
            job.job_id,
            Text(job.status, style=STATUS_STYLES.get(job.status, "")),
            ProgressBar(total=total or None, completed=finished, width=30),
            f"{finished}/{total} cities",
            Text(job.error or "", style="red"),
        )
    cities = Table(title="cities", title_justify="left", expand=False)
    city_columns: list[tuple[str, Align]] = [
        ("date", "left"), ("city", "right"), ("name", "left"), ("country", "left"),
        ("status", "left"), ("rows", "right"), ("invalid", "right"), ("seconds", "right"),
        ("error", "left"),
    ]  # fmt: skip
    for name, align in city_columns:
        cities.add_column(name, justify=align)
    shown = 0
    for job in jobs:
        for city in job.cities:
            if len(jobs) > 1 and city.status not in ("running", "failed"):
                continue
            shown += 1
            cities.add_row(
                str(job.date),
                str(city.city_id),
                city.city_name,
                city.country,
                Text(city.status, style=STATUS_STYLES.get(city.status, "")),
                f"{city.rows:,}",
                f"{city.invalid_rows:,}",
                f"{city.duration_seconds:.2f}" if city.duration_seconds is not None else "",
                Text(city.error or "", style="red"),
            )
    parts: list[RenderableType] = [bars, cities] if shown else [bars]
    if backfill is not None:
        parts.insert(0, _backfill_bar(backfill))
    return Group(*parts)


def _backfill_bar(backfill: BackfillRecord) -> RenderableType:
    counts = backfill.progress
    total = counts.total if counts else None
    ended = counts.done + counts.failed if counts else 0
    bar = Table.grid(padding=(0, 2))
    bar.add_row(
        f"backfill {backfill.backfill_id}",
        f"{backfill.first}..{backfill.last}",
        Text(backfill.status, style=STATUS_STYLES.get(backfill.status, "")),
        ProgressBar(total=total, completed=ended, width=30),
        f"{ended}/{total or '?'} dates",
        f"{counts.failed} failed" if counts else "",
    )
    return bar
