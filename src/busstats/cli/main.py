"""The `busstats` command: `serve`, `refsim`, `dev` and `settings` run the service; `ingest`,
`cancel`, `stats`, `jobs` and `upload` talk to a running one over HTTP (`--url`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from busstats import __version__
from busstats.cli.conventions import (
    DEADLINE,
    EXIT_CODES,
    INTERRUPTED,
    JOBS_PAGE_LIMIT,
    URL_VARIABLE,
    default_url,
    service_url,
)

# Parsing and `--help` load only the standard library and this package's light modules: the
# client commands (busstats.cli.commands: http.client, rich, the wire types) and the service's
# commands (busstats.cli.server: the API, the simulator, settings) are imported once a command
# is chosen, each only what it runs.

SERVICE_COMMANDS = ("serve", "refsim", "dev", "settings")
CLIENT_COMMANDS = ("ingest", "cancel", "stats", "jobs", "upload")
SIMULATOR_COMMANDS = ("refsim", "dev")
"""The commands whose options are the simulator's (their defaults come from it)."""


def _parser(simulator_options: bool = True) -> argparse.ArgumentParser:
    """The whole command line. Without `simulator_options`, `refsim` and `dev` are listed but
    declare no options, so that parsing any other command does not load the simulator."""
    parser = argparse.ArgumentParser(
        prog="busstats", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"busstats {__version__}")
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to run; COMMAND --help for more",
    )

    def command(name: str, summary: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=epilog,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )

    serve = command(
        "serve",
        "run the API",
        "Settings come from environment variables; `busstats settings` lists them with their"
        " defaults and the values they accept.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8080, help="port to listen on")

    refsim = command("refsim", "run the reference-server simulator")
    dev = command("dev", "simulator + API with local storage in one process, for a first look")
    if simulator_options:
        from busstats.cli.server import simulator_options as add_simulator_options

        refsim.add_argument("--host", default="127.0.0.1", help="address to listen on")
        refsim.add_argument("--port", type=_port, default=8081, help="port to listen on")
        add_simulator_options(refsim)
        dev.add_argument("--port", type=_port, default=8080, help="API port on 127.0.0.1")
        dev.add_argument(
            "--refsim-port", type=_port, default=8081, help="simulator port on 127.0.0.1"
        )
        dev.add_argument("--data", default="./data", help="local store folder")
        add_simulator_options(dev)

    command("settings", "print the environment variables the service reads (Markdown)")
    _client_commands(command)
    return parser


def _url(text: str) -> str:
    """An http(s) URL, else a usage error (exit 2) saying so."""
    try:
        return service_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _client_commands(command: Callable[[str, str, str | None], argparse.ArgumentParser]) -> None:
    """`ingest`, `cancel`, `stats`, `jobs` and `upload`: clients of a running service."""

    def client(name: str, summary: str) -> argparse.ArgumentParser:
        parser = command(name, summary, EXIT_CODES)
        parser.formatter_class = _ClientHelp  # the epilog lists exit codes, one a line
        parser.add_argument(
            "--url",
            type=_url,
            default=default_url(),
            help=f"the service (http:// or https://); ${URL_VARIABLE} sets the default",
        )
        parser.add_argument(
            "--deadline", type=float, default=DEADLINE, help=argparse.SUPPRESS
        )  # seconds one HTTP call may take as a whole; short in tests
        return parser

    ingest = client("ingest", "ask the service to ingest a date or a range of dates")
    ingest.add_argument("date", metavar="DATE", help="the date, YYYY-MM-DD")
    ingest.add_argument(
        "--to",
        metavar="DATE",
        help="ingest every date from DATE to this one, as one backfill on the service",
    )
    ingest.add_argument(
        "--wait",
        action="store_true",
        help="follow the job (or the backfill and each of its jobs) until they end, showing"
        " each city; exit 1 unless all succeeded",
    )
    ingest.add_argument(
        "--interval", type=float, default=0.5, help=argparse.SUPPRESS
    )  # seconds between polls of each job

    cancel = client("cancel", "cancel a backfill or a job")
    cancel.add_argument("id", metavar="ID", help="the backfill's id, or the job's")

    stats = client("stats", "print per-country, per-day statistics of a range")
    stats.add_argument("start", metavar="FROM", help="first date, YYYY-MM-DD")
    stats.add_argument("end", metavar="TO", help="last date, YYYY-MM-DD (inclusive)")
    stats.add_argument(
        "--format",
        choices=["table", "csv", "json", "parquet"],
        default="table",
        help="table for people; the others are the service's bytes as sent",
    )
    stats.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")

    jobs = client("jobs", "list jobs, newest first")
    jobs.add_argument("--date", metavar="DATE", help="only jobs that ingest this date")
    jobs.add_argument(
        "--status",
        choices=["queued", "running", "succeeded", "partial", "failed"],
        help="only jobs with this status",
    )
    jobs.add_argument("--limit", type=_positive, default=50, help="at most this many jobs")
    jobs.add_argument(
        "--page-size", type=_positive, default=JOBS_PAGE_LIMIT, help=argparse.SUPPRESS
    )  # jobs asked for per request; small in tests, to follow `next`

    upload = client("upload", "store a city's day from a file, as if fetched from upstream")
    upload.add_argument("date", metavar="DATE", help="the date, YYYY-MM-DD")
    upload.add_argument("city_id", metavar="CITY_ID", help="the city's id upstream")
    upload.add_argument(
        "file", metavar="FILE", help="the JSON array of buses, as upstream sends it"
    )
    upload.add_argument("--city-name", help="the city's name, for a city upstream does not list")
    upload.add_argument("--country", help="the city's country, for a city upstream does not list")


class _ClientHelp(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the epilog kept as written."""


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError("expected a whole number from 1")
    return number


def _port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535, else a usage error (exit 2).

    >>> _port("8080")
    8080
    """
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError("expected a port from 0 to 65535")
    return number


def _command_named(argv: Sequence[str]) -> str | None:
    """The command `argv` names: its first argument that is not an option (`busstats` itself
    takes no option with a value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """`busstats ARGS...`: its exit code. Ctrl-C at any point of it, the imports of the
    command chosen included (the first few tenths of a second), is exit 130 without a
    traceback."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(simulator_options=_command_named(arguments) in SIMULATOR_COMMANDS)
    args = parser.parse_args(arguments)
    if args.command in CLIENT_COMMANDS:
        from busstats.cli import commands

        return commands.run(commands.COMMANDS[args.command], args)
    from busstats.cli import server

    return server.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
