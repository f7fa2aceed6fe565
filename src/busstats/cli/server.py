"""The commands that run the service: `serve` (the API), `refsim` (the simulator), `dev` (both,
over a local store) and `settings` (the table of the variables the service reads).

Each imports what it runs inside its own function: `refsim` needs no API, `settings` no
server, and none of it is loaded for the client commands (busstats.cli.main)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import TYPE_CHECKING

from busstats.cli.conventions import CANNOT_START, INTERRUPTED, OK, URL_VARIABLE, USAGE

if TYPE_CHECKING:
    from busstats.core.settings import Settings
    from busstats.reference.sim import Fault, SimulatorConfig


def _fault(text: str) -> tuple[int, Fault]:
    from busstats.reference.sim import Fault

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


def simulator_options(parser: argparse.ArgumentParser) -> None:
    """The options of `refsim` and `dev`: how the simulator behaves, its defaults shown."""
    from busstats.reference.sim import Fault, SimulatorConfig

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
    from busstats.reference.sim import SimulatorConfig

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


def run(args: argparse.Namespace) -> int:
    """Run `serve`, `refsim`, `dev` or `settings`; 2 when a setting is wrong."""
    from busstats.core.logs import configure_logging
    from busstats.core.settings import (
        ConfigError,
        Settings,
        did_you_mean,
        settings_table,
        unknown_variables,
    )

    if args.command == "settings":
        print(settings_table(), end="")
        return OK
    for name in unknown_variables():
        if name == URL_VARIABLE:  # read by the client commands, not by the service
            continue
        meant = did_you_mean(name)
        see = f"did you mean {meant}? See" if meant else "see"
        print(
            f"busstats: warning: {name} is not a setting; {see} `busstats settings`",
            file=sys.stderr,
        )
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"busstats: {exc}", file=sys.stderr)
        return USAGE
    configure_logging(settings.log_level)
    if args.command == "serve":
        _serve(args, settings)
    elif args.command == "refsim":
        _refsim(args)
    else:
        return _dev(args, settings)
    return OK


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from busstats.api.app import GRACEFUL_SHUTDOWN_SECONDS, create_app
    from busstats.core.logs import UVICORN_LOGGING

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **UVICORN_LOGGING,
    )


def _refsim(args: argparse.Namespace) -> None:
    from aiohttp import web

    from busstats.reference.sim import create_simulator

    web.run_app(create_simulator(_simulator_config(args)), host=args.host, port=args.port)


def dev_urls(port: int) -> str:
    """What `busstats dev` prints once the API answers: the dashboard's, the API docs' and the
    API's URLs, on one line."""
    base = f"http://127.0.0.1:{port}"
    return f"dashboard {base}/  API docs {base}/docs  API {base}  (Ctrl-C stops)"


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    """The simulator and the API over a local store, until Ctrl-C (exit 130, no traceback) or
    SIGTERM."""
    local = settings.model_copy(
        update={"store": args.data, "reference_url": f"http://127.0.0.1:{args.refsim_port}"}
    )
    try:
        for port in (args.refsim_port, args.port):
            _check_free(port)
        asyncio.run(_run_dev(args, local))
    except _CannotListen as exc:
        print(f"busstats: {exc}", file=sys.stderr)
        return CANNOT_START
    except KeyboardInterrupt:
        return INTERRUPTED
    return OK


class _CannotListen(Exception):
    """A port `dev` is to listen on is taken (or not allowed)."""


def _check_free(port: int) -> None:
    """`_CannotListen` unless a server can listen on 127.0.0.1:`port` now (as `dev`'s
    servers bind, SO_REUSEADDR set): said before anything starts, on one line."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise _CannotListen(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None


async def _run_dev(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn
    from aiohttp import web

    from busstats.api.app import create_app
    from busstats.core.logs import UVICORN_LOGGING
    from busstats.reference.sim import create_simulator

    class _DevServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            print(dev_urls(args.port), flush=True)  # once the API answers

    runner = web.AppRunner(create_simulator(_simulator_config(args)), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", args.refsim_port).start()
    except OSError as exc:  # taken since _check_free
        await runner.cleanup()
        raise _CannotListen(f"cannot listen on 127.0.0.1:{args.refsim_port}: {exc}") from None
    print(
        f"reference simulator on http://127.0.0.1:{args.refsim_port}, data in {args.data}",
        flush=True,
    )
    try:
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=args.port, **UVICORN_LOGGING
        )
        await _DevServer(config).serve()
    finally:
        await runner.cleanup()
