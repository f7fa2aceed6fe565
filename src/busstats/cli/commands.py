"""The client commands `ingest`, `cancel`, `stats`, `jobs` and `upload`: each talks to a
running service over HTTP and returns the exit code a script can rely on (see `EXIT_CODES`).

They run in the main thread, one blocking call after another (`busstats.cli.client`), so
Ctrl-C is a `KeyboardInterrupt` wherever a command waits: it stops following and exits 130
(`INTERRUPTED`); the service goes on with what it was asked."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
from rich.console import Console

from busstats.cli.client import (
    CannotWrite,
    Client,
    ServiceError,
    UnexpectedAnswer,
    Unreachable,
    decode_answer,
    follow_backfill,
    wait_for,
)
from busstats.cli.conventions import (
    INTERRUPTED,
    JOB_NOT_SUCCEEDED,
    OK,
    SERVICE_ERROR,
    UNREACHABLE,
    USAGE,
)
from busstats.cli.render import (
    Column,
    LiveProgress,
    PlainProgress,
    backfill_line,
    job_line,
    print_table,
    timestamp,
)
from busstats.model.backfills import BackfillAccepted, BackfillRecord
from busstats.model.jobs import JobRecord
from busstats.model.stats import CountryStats

MAX_INGEST_DAYS = 366
"""The most dates one `busstats ingest --to` asks for, so that a typo in a year cannot start
a backfill of thousands of dates."""


class UsageError(Exception):
    """Arguments that argparse accepts but that make no sense together."""


Command = Callable[[Client, argparse.Namespace], int]
"""A client command: its arguments in, its exit code out."""


def run(command: Command, args: Any) -> int:
    """Run a client command against `args.url`; service errors become exit codes."""
    try:
        with Client(args.url, deadline=args.deadline) as client:
            return command(client, args)
    except UsageError as exc:
        _say(f"error: {exc}")
        return USAGE
    except ServiceError as exc:
        _say(f"the service answered {exc.status}: {exc.message}")
        return SERVICE_ERROR
    except UnexpectedAnswer as exc:
        _say(f"{args.url} is not answering as busstats does: {exc}")
        return SERVICE_ERROR
    except Unreachable as exc:
        _say(f"cannot reach the service: {exc}")
        return UNREACHABLE
    except KeyboardInterrupt:
        return INTERRUPTED


MAX_MESSAGE = 300
"""The most characters of a message printed on stderr (what the service sent may be a
whole page)."""


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` as one printable line: control characters (newlines, ESC) escaped as Python
    writes them (`\\n`, `\\x1b`), cut at `limit` characters with an ellipsis.

    >>> one_line("a\\nb\\x1b[31m")
    'a\\\\nb\\\\x1b[31m'
    >>> one_line("x" * 10, limit=5)
    'xxxx…'
    """
    escaped = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _say(message: str) -> None:
    print(f"busstats: {one_line(message)}", file=sys.stderr)


def _check_range(start: str, end: str) -> None:
    """Refuse, before any request, a range that is not dates, backwards or too long."""
    try:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError as exc:
        raise UsageError(f"--to needs dates as YYYY-MM-DD: {exc}") from None
    if first > last:
        raise UsageError(f"{start} is after {end}")
    count = (last - first).days + 1
    if count > MAX_INGEST_DAYS:
        raise UsageError(f"{count} days asked; at most {MAX_INGEST_DAYS} at once")


def ingest(client: Client, args: argparse.Namespace) -> int:
    """One date: one job. A range (`--to`): one backfill, which creates a job per date on
    the service, a few at a time."""
    if args.to is not None:
        return _ingest_range(client, args)
    accepted = client.submit(args.date)
    if not args.wait:
        print(f"{accepted.date} {accepted.job_id} {accepted.status}")
        return OK
    console = Console()
    views: list[JobRecord] = []
    if console.is_terminal:
        with LiveProgress(console) as progress:
            for views in wait_for(client, [accepted.job_id], args.interval):
                progress.update(views)
        for view in views:
            print(job_line(view))
    else:
        plain = PlainProgress(sys.stdout)
        for views in wait_for(client, [accepted.job_id], args.interval):
            plain.update(views)
    return OK if all(view.status == "succeeded" for view in views) else JOB_NOT_SUCCEEDED


def _ingest_range(client: Client, args: argparse.Namespace) -> int:
    _check_range(args.date, args.to)
    backfill = client.start_backfill(args.date, args.to)
    if not args.wait:
        print(backfill_line(backfill))
        for job in backfill.jobs:
            print(f"{job.date} {job.job_id} {job.status}")
        return OK
    try:
        return _follow(client, backfill, args.interval)
    except KeyboardInterrupt:  # Ctrl-C: say how to stop what goes on, then exit 130
        print(
            f"busstats: stopped following; backfill {backfill.backfill_id} goes on running on"
            f" the service. To stop it: busstats cancel {backfill.backfill_id} --url {args.url}",
            file=sys.stderr,
        )
        raise


def _follow(client: Client, started: BackfillAccepted, interval: float) -> int:
    """Follow the backfill and each of its jobs until all have ended; 0 if all succeeded."""
    console = Console()
    backfill: BackfillAccepted | BackfillRecord = started
    jobs: list[JobRecord] = []
    if console.is_terminal:
        with LiveProgress(console) as progress:
            for backfill, jobs in follow_backfill(client, started.backfill_id, interval):
                progress.update(jobs, backfill)
        for view in jobs:
            print(job_line(view))
        print(backfill_line(backfill))
    else:
        plain = PlainProgress(sys.stdout)
        for backfill, jobs in follow_backfill(client, started.backfill_id, interval):
            plain.update(jobs)
            plain.backfill(backfill)
    succeeded = backfill.status == "succeeded" and all(job.status == "succeeded" for job in jobs)
    return OK if succeeded else JOB_NOT_SUCCEEDED


def cancel(client: Client, args: argparse.Namespace) -> int:
    """Cancel a backfill or a job by its id."""
    answer = client.cancel(args.id)
    if isinstance(answer, BackfillRecord):
        what, why = "backfill", answer.reason or ""
    else:
        what, why = "job", answer.error or ""
    if answer.status in ("running", "queued"):  # 202: its jobs take a while to stop
        why = "cancelled; its jobs are still stopping"
    said = why if why.startswith(answer.status) else f"{answer.status}: {why}".rstrip(": ")
    print(f"{what} {args.id}: {said}")
    return OK


STATS_COLUMNS = [
    Column("date"),
    Column("country"),
    Column("buses", "right"),
    Column("passengers", "right"),
    Column("accident"),
    Column("avg delay min", "right"),
    Column("cities", "right"),
]


def stats(client: Client, args: argparse.Namespace) -> int:
    binary = args.format == "parquet"
    if binary and args.output is None and sys.stdout.isatty():
        raise UsageError("parquet is binary: give --output FILE or redirect stdout")
    fmt = "json" if args.format == "table" else args.format
    if args.output is None:
        return _stats(client, args, fmt, None)
    output = _open_output(args.output)  # before any request
    try:
        with output:
            return _stats(client, args, fmt, output)
    except OSError as exc:  # writing the table, or closing the file, failed
        _remove_partial(Path(args.output))
        raise UsageError(f"cannot write {args.output}: {_reason(exc)}") from None
    except BaseException:
        _remove_partial(Path(args.output))  # no part of an answer left as if it were whole
        raise


def _stats(client: Client, args: argparse.Namespace, fmt: str, output: BinaryIO | None) -> int:
    if args.format != "table":  # the bytes as sent, streamed to the file or stdout
        into = sys.stdout.buffer if output is None else output
        try:
            answer = client.country_stats(args.start, args.end, fmt, into=into)
            into.flush()
        except (CannotWrite, OSError) as exc:
            raise UsageError(f"cannot write {args.output or 'stdout'}: {exc}") from None
        if answer.incomplete_dates and args.format != "json":
            print(
                f"busstats: warning: {answer.incomplete_dates} incomplete date(s) in the range;"
                " --format json or table says which",
                file=sys.stderr,
            )
        return OK
    answer = client.country_stats(args.start, args.end, fmt)
    decoded = decode_answer(answer.body, CountryStats, "GET /country-stats")
    _show_stats(decoded, None if output is None else io.TextIOWrapper(output, encoding="utf-8"))
    return OK


def _open_output(name: str) -> BinaryIO:
    """`--output FILE` opened for writing, else a usage error saying why (a directory, a
    folder that does not exist, no permission)."""
    try:
        return Path(name).open("wb")
    except OSError as exc:
        raise UsageError(f"cannot write {name}: {_reason(exc)}") from None


def _remove_partial(path: Path) -> None:
    """Remove the regular file a failed `stats --output` wrote a part of (not a device or
    a pipe such as /dev/stdout)."""
    with contextlib.suppress(OSError):
        if stat.S_ISREG(path.stat().st_mode):
            path.unlink()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _show_stats(answer: CountryStats, output: io.TextIOWrapper | None) -> None:
    """The table, and on stderr which dates are incomplete or have no data."""
    for gap in answer.incomplete_dates:
        _say(f"warning: {gap.date} is incomplete: {gap.reason}")
    rows = [
        [
            str(row.date),
            row.country,
            f"{row.buses_started:,}",
            f"{row.total_passengers:,}",
            "yes" if row.accident else "no",
            f"{row.average_delay_minutes:.2f}",
            str(row.cities_counted),
        ]
        for row in answer.stats
    ]
    if output is None:
        print_table(Console(), STATS_COLUMNS, rows)
    else:
        print_table(Console(file=output), STATS_COLUMNS, rows)
        output.flush()
        output.detach()  # the binary file is closed by `stats`
    if answer.dates_without_data:
        shown = ", ".join(map(str, answer.dates_without_data[:10]))
        more = " ..." if len(answer.dates_without_data) > 10 else ""
        print(
            f"busstats: no data for {len(answer.dates_without_data)} date(s): {shown}{more}",
            file=sys.stderr,
        )


JOB_COLUMNS = [Column("created_at"), Column("date"), Column("status"), Column("job_id")]


def jobs(client: Client, args: argparse.Namespace) -> int:
    filters = {
        name: value
        for name, value in [("date", args.date), ("status", args.status)]
        if value is not None
    }
    rows = [
        [timestamp(listing.created_at), str(listing.date), listing.status, listing.job_id]
        for listing in client.jobs(filters, args.limit, args.page_size)
    ]
    print_table(Console(), JOB_COLUMNS, rows)
    return OK


def _existing_file(name: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise UsageError(f"{name} is not a file")
    return path


def upload(client: Client, args: argparse.Namespace) -> int:
    file = _existing_file(args.file)
    params = {
        name: value
        for name, value in [("city_name", args.city_name), ("country", args.country)]
        if value is not None
    }
    body = client.upload(args.date, args.city_id, file, params)  # a job record, checked
    status = decode_answer(body, JobRecord, "PUT /raw").status
    print(msgspec.json.format(body, indent=2).decode())
    return OK if status == "succeeded" else JOB_NOT_SUCCEEDED


COMMANDS: dict[str, Command] = {
    "ingest": ingest,
    "cancel": cancel,
    "stats": stats,
    "jobs": jobs,
    "upload": upload,
}
"""Each client command by its name on the command line."""
