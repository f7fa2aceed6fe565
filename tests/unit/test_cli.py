"""The `busstats` command's parsing, help, version and settings checks, run in this process
(`busstats.cli.main.main`): the service never starts, no socket is opened."""

from __future__ import annotations

import argparse

import pytest

from busstats import __version__
from busstats.cli.main import _parser
from busstats.core.settings import settings_table
from tests.support.clirun import Run, run_main


def busstats(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> Run:
    """Run the `busstats` command to its end; `env` is added to this process's environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return run_main(*args, url=env.get("BUSSTATS_URL"))


@pytest.mark.parametrize(
    ("command", "name", "value", "reason"),
    [
        ("serve", "BUSSTATS_CITY_CONCURRENCY", "2.7", "expected a whole number from 1 to 1024"),
        ("serve", "BUSSTATS_REFERENCE_TIMEOUT", "inf", "expected a number from 0.1 to 3600"),
        ("serve", "BUSSTATS_REFERENCE_TIMEOUT", "nan", "expected a number from 0.1 to 3600"),
        (
            "dev",
            "BUSSTATS_LOG_LEVEL",
            "info",
            "expected one of `DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`",
        ),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, command: str, name: str, value: str, reason: str
) -> None:
    ports = ["--port", "0", "--refsim-port", "0"] if command == "dev" else ["--port", "0"]
    done = busstats(monkeypatch, command, *ports, **{name: value})  # were it to start...
    assert done.code == 2
    assert done.out == ""
    assert done.err == f"busstats: {name}={value!r}: {reason}\n"
    assert done.err.count("\n") == 1, done.err  # one line, no traceback


def test_an_unknown_busstats_variable_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    done = busstats(
        monkeypatch,
        "serve",
        BUSSTATS_CITY_CONCURENCY="8",
        BUSSTATS_COLOUR="blue",
        BUSSTATS_MAX_RANGE_DAYS="0",
        BUSSTATS_URL="http://127.0.0.1:9",  # the client commands' setting: no warning
    )
    assert done.code == 2
    assert done.err.splitlines() == [
        "busstats: warning: BUSSTATS_CITY_CONCURENCY is not a setting; did you mean"
        " BUSSTATS_CITY_CONCURRENCY? See `busstats settings`",
        "busstats: warning: BUSSTATS_COLOUR is not a setting; see `busstats settings`",
        "busstats: BUSSTATS_MAX_RANGE_DAYS='0': expected a whole number from 1 to 100000",
    ]


def test_settings_prints_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    done = busstats(monkeypatch, "settings", BUSSTATS_CITY_CONCURRENCY="not looked at")
    assert (done.code, done.err) == (0, "")
    assert done.out == settings_table()


def test_version_prints_the_packages_version(monkeypatch: pytest.MonkeyPatch) -> None:
    done = busstats(monkeypatch, "--version")
    assert (done.code, done.out, done.err) == (0, f"busstats {__version__}\n", "")


def options_of(command: str) -> list[argparse.Action]:
    """The options of one subcommand, as the parser declares them (help and version left
    out: they have no default)."""
    parser = _parser()
    if command:
        (subcommands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = subcommands.choices[command]
    shown_without_default = (argparse._HelpAction, argparse._VersionAction)
    return [a for a in parser._actions if not isinstance(a, shown_without_default)]


@pytest.mark.parametrize("command", ["serve", "refsim", "dev", "settings", ""])
def test_help_has_a_line_and_the_default_for_every_option(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    done = busstats(monkeypatch, *filter(None, [command, "--help"]), COLUMNS="1000")
    assert done.code == 0, done.err  # one line per option: COLUMNS
    text = " ".join(done.out.split())
    for action in options_of(command):
        assert action.help, f"busstats {command} {action.dest} has no help line"
        if action.option_strings:
            assert f"{action.help} (default: {action.default})" in text, action.dest
