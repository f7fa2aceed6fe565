"""The `busstats` command: `serve`, `refsim`, `dev` and `settings` run the service; `ingest`,
`cancel`, `stats`, `jobs` and `upload` talk to a running one over HTTP (`--url`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

import msgspec
import uvicorn
from aiohttp import web

from busstats.api.app import GRACEFUL_SHUTDOWN_SECONDS, create_app
from busstats.cli import commands as cli_client
from busstats.cli.client import JOBS_PAGE_LIMIT, URL_VARIABLE, default_url, service_url
from busstats.core.logs import UVICORN_LOGGING, configure_logging
from busstats.core.settings import ConfigError, Settings, settings_table, unknown_variables
from busstats.reference.sim import Fault, SimulatorConfig, create_simulator


def _fault(text: str) -> tuple[int, Fault]:
    city, _, kind = text.partition("=")
    try:
        return int(city), Fault(kind)
    except ValueError:
        kinds = ", ".join(f.value for f in Fault)
        raise argparse.ArgumentTypeError(
            f"expected CITY_ID=KIND with KIND one of {kinds}"
        ) from None


def _city_rows(text: str) -> tuple[int, int]:
    city, _, rows = text.partition("=")
    try:
        return int(city), int(rows)
    except ValueError:
        raise argparse.ArgumentTypeError("expected CITY_ID=ROWS, e.g. 0=1300000") from None


def _row_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError("expected N or MIN-MAX, e.g. 1000-3000") from None
    if bounds[0] < 0 or bounds[0] > bounds[1]:
        raise argparse.ArgumentTypeError("expected 0 <= MIN <= MAX")
    return bounds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="busstats", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
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
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")

    refsim = command("refsim", "run the reference-server simulator")
    refsim.add_argument("--host", default="127.0.0.1", help="address to listen on")
    refsim.add_argument("--port", type=int, default=8081, help="port to listen on")
    _simulator_options(refsim)

    dev = command("dev", "simulator + API with local storage in one process, for a first look")
    dev.add_argument("--port", type=int, default=8080, help="API port on 127.0.0.1")
    dev.add_argument("--refsim-port", type=int, default=8081, help="simulator port on 127.0.0.1")
    dev.add_argument("--data", default="./data", help="local store folder")
    _simulator_options(dev)

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
        parser = command(name, summary, cli_client.EXIT_CODES)
        parser.formatter_class = _ClientHelp  # the epilog lists exit codes, one a line
        parser.add_argument(
            "--url",
            type=_url,
            default=default_url(),
            help=f"the service (http:// or https://); ${URL_VARIABLE} sets the default",
        )
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


CLIENT_COMMANDS = {
    "ingest": cli_client.ingest,
    "cancel": cli_client.cancel,
    "stats": cli_client.stats,
    "jobs": cli_client.jobs,
    "upload": cli_client.upload,
}


def _simulator_options(parser: argparse.ArgumentParser) -> None:
    defaults = SimulatorConfig()
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of the generated cities' data"
    )
    parser.add_argument(
        "--rows",
        type=_row_range,
        default="-".join(map(str, defaults.rows)),
        help="rows per city and day: N or MIN-MAX",
    )
    parser.add_argument(
        "--max-latency",
        type=float,
        default=defaults.max_latency,
        help="longest wait in seconds before a stats call answers, like upstream",
    )
    parser.add_argument(
        "--date-param",
        choices=["datetime", "date"],
        default=defaults.date_param,
        help="the spelling of `date` the simulator accepts; it answers 400 to the other",
    )
    parser.add_argument(
        "--mixed-durations",
        action="store_true",
        help="spell delays in varied ISO 8601 forms, not only upstream's",
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="CITY_ID=KIND",
        help=f"make one city misbehave; KIND: {', '.join(f.value for f in Fault)}; repeatable",
    )
    parser.add_argument(
        "--city-rows",
        type=_city_rows,
        action="append",
        default=[],
        metavar="CITY_ID=ROWS",
        help="a fixed row count for one city (about 122 bytes a row); repeatable",
    )
    parser.add_argument(
        "--redirect-url",
        default=defaults.redirect_url,
        help="where cities with the `redirect` fault send the client (another origin)",
    )
    parser.add_argument("--gzip", action="store_true", help="gzip-encode stats answers")
    parser.add_argument(
        "--bad-city-entries",
        action="store_true",
        help="append malformed entries (negative, string, float, bool, > int64 ids...) to /cities",
    )


def _simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        seed=args.seed,
        rows=args.rows,
        max_latency=args.max_latency,
        date_param=args.date_param,
        mixed_durations=args.mixed_durations,
        faults=dict(args.fault),
        rows_by_city=dict(args.city_rows),
        redirect_url=args.redirect_url,
        gzip=args.gzip,
        bad_city_entries=args.bad_city_entries,
    )


async def _dev(args: argparse.Namespace, settings: Settings) -> None:
    runner = web.AppRunner(create_simulator(_simulator_config(args)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.refsim_port).start()
    print(f"reference simulator on http://127.0.0.1:{args.refsim_port}, data in {args.data}")
    try:
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=args.port, **UVICORN_LOGGING
        )
        await uvicorn.Server(config).serve()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "settings":
        print(settings_table(), end="")
        return 0
    if args.command in CLIENT_COMMANDS:
        return cli_client.run(CLIENT_COMMANDS[args.command], args)
    for name in unknown_variables():
        if name == URL_VARIABLE:  # read by the client commands, not by the service
            continue
        print(
            f"busstats: warning: {name} is not a setting; see `busstats settings`", file=sys.stderr
        )
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"busstats: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve":
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            **UVICORN_LOGGING,
        )
    elif args.command == "refsim":
        web.run_app(create_simulator(_simulator_config(args)), host=args.host, port=args.port)
    else:
        local = msgspec.structs.replace(
            settings, store=args.data, reference_url=f"http://127.0.0.1:{args.refsim_port}"
        )
        asyncio.run(_dev(args, local))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
