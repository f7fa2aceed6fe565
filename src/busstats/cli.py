"""The `busstats` command: `serve`, `refsim` and `dev`."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence

import uvicorn
from aiohttp import web

from busstats.app import create_app
from busstats.config import ConfigError, Settings
from busstats.logs import UVICORN_LOGGING, configure_logging
from busstats.refsim import Fault, SimulatorConfig, create_simulator


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
    parser = argparse.ArgumentParser(prog="busstats", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API (configured by BUSSTATS_* variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    refsim = commands.add_parser("refsim", help="run the reference-server simulator")
    refsim.add_argument("--host", default="127.0.0.1")
    refsim.add_argument("--port", type=int, default=8081)
    _simulator_options(refsim)

    dev = commands.add_parser(
        "dev", help="simulator + API with local storage in one process, for a first look"
    )
    dev.add_argument("--port", type=int, default=8080, help="API port on 127.0.0.1")
    dev.add_argument("--refsim-port", type=int, default=8081)
    dev.add_argument("--data", default="./data", help="local store folder (default ./data)")
    _simulator_options(dev)
    return parser


def _simulator_options(parser: argparse.ArgumentParser) -> None:
    defaults = SimulatorConfig()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--rows", type=_row_range, default=defaults.rows, help="rows per city and day: N or MIN-MAX"
    )
    parser.add_argument(
        "--max-latency", type=float, default=defaults.max_latency, help="seconds, like upstream"
    )
    parser.add_argument("--date-param", choices=["datetime", "date"], default=defaults.date_param)
    parser.add_argument("--mixed-durations", action="store_true")
    parser.add_argument("--fault", type=_fault, action="append", default=[], metavar="CITY_ID=KIND")
    parser.add_argument(
        "--city-rows",
        type=_city_rows,
        action="append",
        default=[],
        metavar="CITY_ID=ROWS",
        help="a fixed row count for one city (about 122 bytes a row)",
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


async def _dev(args: argparse.Namespace) -> None:
    runner = web.AppRunner(create_simulator(_simulator_config(args)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.refsim_port).start()
    settings = Settings(store=args.data, reference_url=f"http://127.0.0.1:{args.refsim_port}")
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
    configure_logging(os.environ.get("BUSSTATS_LOG_LEVEL", "INFO"))
    if args.command == "serve":
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            print(f"busstats: {exc}")
            return 2
        uvicorn.run(create_app(settings), host=args.host, port=args.port, **UVICORN_LOGGING)
    elif args.command == "refsim":
        web.run_app(create_simulator(_simulator_config(args)), host=args.host, port=args.port)
    else:
        asyncio.run(_dev(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
