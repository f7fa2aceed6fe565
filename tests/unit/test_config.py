from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import busstats.core.settings
from busstats.core.settings import (
    ConfigError,
    DateParam,
    Settings,
    did_you_mean,
    env_name,
    settings_table,
    unknown_variables,
    variables_of,
)

SETTINGS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.s3_bucket is None


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "BUSSTATS_STORE": "s3://bus-data",
            "BUSSTATS_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "BUSSTATS_REFERENCE_URL": "http://ref.example:8000",
            "BUSSTATS_REFERENCE_DATE_PARAM": "datetime",
            "BUSSTATS_REFERENCE_TIMEOUT": "12.5",
            "BUSSTATS_CITY_CONCURRENCY": "8",
            "BUSSTATS_MAX_RANGE_DAYS": "400",
            "BUSSTATS_REFERENCE_ATTEMPTS": "2",
            "BUSSTATS_REFERENCE_BACKOFF": "0.25",
            "BUSSTATS_S3_ATTEMPTS": "7",
            "BUSSTATS_MAX_MB_IN_FLIGHT": "128",
            "BUSSTATS_LOG_LEVEL": "DEBUG",
        }
    )
    assert settings.s3_bucket == "bus-data"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.aws_region == "eu-west-1"
    assert (settings.aws_access_key_id, settings.aws_secret_access_key) == ("key", "secret")
    assert settings.reference_url == "http://ref.example:8000"
    assert settings.reference_date_param is DateParam.DATETIME
    assert settings.reference_timeout_seconds == 12.5
    assert settings.city_concurrency == 8
    assert settings.max_range_days == 400
    assert settings.reference_attempts == 2
    assert settings.reference_backoff_seconds == 0.25
    assert settings.s3_attempts == 7
    assert settings.max_bytes_in_flight == 128 * 2**20
    assert settings.log_level == "DEBUG"


def test_aws_region_wins_over_the_default_region() -> None:
    env = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert Settings.from_env(env).aws_region == "eu-central-1"


def test_empty_variables_keep_their_defaults() -> None:
    assert Settings.from_env({"BUSSTATS_CITY_CONCURRENCY": "", "AWS_REGION": ""}) == Settings()


WHOLE_1_1024 = "expected a whole number from 1 to 1024"
TIMEOUT = "expected a number from 0.1 to 3600"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("BUSSTATS_REFERENCE_DATE_PARAM", "iso", "expected one of `auto`, `date`, `datetime`"),
        ("BUSSTATS_CITY_CONCURRENCY", "many", WHOLE_1_1024),
        ("BUSSTATS_CITY_CONCURRENCY", "2.7", WHOLE_1_1024),
        ("BUSSTATS_CITY_CONCURRENCY", "inf", WHOLE_1_1024),
        ("BUSSTATS_CITY_CONCURRENCY", "0", WHOLE_1_1024),
        ("BUSSTATS_CITY_CONCURRENCY", "1e9", WHOLE_1_1024),
        ("BUSSTATS_CITY_CONCURRENCY", " 8", WHOLE_1_1024),
        ("BUSSTATS_CITY_CONCURRENCY", "+8", WHOLE_1_1024),
        ("BUSSTATS_CITY_CONCURRENCY", "08", WHOLE_1_1024),
        ("BUSSTATS_CITY_CONCURRENCY", "1_0", WHOLE_1_1024),
        ("BUSSTATS_REFERENCE_TIMEOUT", "inf", TIMEOUT),
        ("BUSSTATS_REFERENCE_TIMEOUT", "-inf", TIMEOUT),
        ("BUSSTATS_REFERENCE_TIMEOUT", "nan", TIMEOUT),
        ("BUSSTATS_REFERENCE_TIMEOUT", "1e400", TIMEOUT),
        ("BUSSTATS_REFERENCE_TIMEOUT", "0.05", TIMEOUT),
        ("BUSSTATS_REFERENCE_BACKOFF", "-0.5", "expected a number from 0 to 60"),
        ("BUSSTATS_REFERENCE_BACKOFF", "NaN", "expected a number from 0 to 60"),
        ("BUSSTATS_REFERENCE_ATTEMPTS", "3.0001", "expected a whole number from 1 to 20"),
        ("BUSSTATS_S3_ATTEMPTS", "-1", "expected a whole number from 1 to 20"),
        ("BUSSTATS_MAX_MB_IN_FLIGHT", "10", "expected a whole number from 64 to 1048576"),
        ("BUSSTATS_MAX_RANGE_DAYS", "0x10", "expected a whole number from 1 to 100000"),
        ("BUSSTATS_WORKER_PROCESSES", "0", "expected a whole number from 1 to 256"),
        ("BUSSTATS_WORKER_PROCESSES", "four", "expected a whole number from 1 to 256"),
        (
            "BUSSTATS_LOG_LEVEL",
            "info",
            "expected one of `DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`",
        ),
        ("BUSSTATS_EXECUTOR", "processes", "expected one of `local`, `threads`, `dask`"),
        ("BUSSTATS_SCHEDULE_AT", "7am", "expected text like `06:30` or `06:30:00`"),
        ("BUSSTATS_STORE", "s3://", "does not name a bucket"),
        ("BUSSTATS_STORE", "s3://a/b/c", "does not name a bucket"),
        ("BUSSTATS_STORE", "s3:///abc", "does not name a bucket"),
        ("BUSSTATS_STORE", "s3://Bus_Data", "does not name a bucket"),
        ("BUSSTATS_STORE", "S3://bus-data", "write the scheme in lower case"),
        ("BUSSTATS_S3_ENDPOINT_URL", "junk", "expected an http:// or https:// URL with a host"),
        ("BUSSTATS_S3_ENDPOINT_URL", "http://127.0.0.1:abc", "the port must be a number"),
        ("BUSSTATS_REFERENCE_URL", "not a url", "expected an http:// or https:// URL"),
        ("BUSSTATS_REFERENCE_URL", "ftp://x", "expected an http:// or https:// URL"),
    ],
)
def test_unusable_values_are_refused_with_the_variable_named(
    name: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r}: ")
    assert reason in message
    assert "\n" not in message
    assert "Input should" not in message  # pydantic's own words never reach the user


def test_whole_numbers_written_as_json_numbers_are_taken() -> None:
    env = {"BUSSTATS_CITY_CONCURRENCY": "3.0", "BUSSTATS_MAX_RANGE_DAYS": "1e2"}
    settings = Settings.from_env(env)
    assert (settings.city_concurrency, settings.max_range_days) == (3, 100)


def test_every_bad_variable_is_named_on_the_one_line() -> None:
    env = {"BUSSTATS_CITY_CONCURRENCY": "0", "BUSSTATS_LOG_LEVEL": "loud"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == (
        f"BUSSTATS_CITY_CONCURRENCY='0': {WHOLE_1_1024}; BUSSTATS_LOG_LEVEL='loud': expected one"
        " of `DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`"
    )


def test_the_old_names_are_read_and_named() -> None:
    env = {"BUSSTATS_REFERENCE_TIMEOUT": "7", "BUSSTATS_REFERENCE_BACKOFF": "2"}
    settings = Settings.from_env(env)
    assert (settings.reference_timeout_seconds, settings.reference_backoff_seconds) == (7, 2)
    with pytest.raises(ConfigError, match=r"^BUSSTATS_REFERENCE_TIMEOUT='0': "):
        Settings.from_env({"BUSSTATS_REFERENCE_TIMEOUT": "0"})


def test_only_the_listed_variables_are_read_spelt_exactly() -> None:
    """pydantic-settings on its own matches names in any case and would also read
    `BUSSTATS_<FIELD>` beside a field's aliases; neither was ever a setting."""
    env = {
        "busstats_city_concurrency": "8",
        "Busstats_Log_Level": "DEBUG",
        "BUSSTATS_AWS_REGION": "eu-west-1",
        "BUSSTATS_REFERENCE_TIMEOUT_SECONDS": "7",
        "aws_region": "eu-west-2",
        "city_concurrency": "9",
    }
    assert Settings.from_env(env) == Settings()


def test_the_default_region_is_read_when_the_region_is_unset_or_empty() -> None:
    assert Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).aws_region == "eu-west-1"
    env = {"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert Settings.from_env(env).aws_region == "eu-west-1"
    assert variables_of("aws_region") == ("AWS_REGION", "AWS_DEFAULT_REGION")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BUSSTATS_LEASE_RENEW_SECONDS": "20"},
            "BUSSTATS_LEASE_RENEW_SECONDS=20: must be at most half of BUSSTATS_LEASE_SECONDS (30)",
        ),
        (
            {"BUSSTATS_LEASE_SECONDS": "9", "BUSSTATS_LEASE_RENEW_SECONDS": "4.6"},
            "BUSSTATS_LEASE_RENEW_SECONDS=4.6: must be at most half of BUSSTATS_LEASE_SECONDS (9)",
        ),
        (
            {"BUSSTATS_EXECUTOR": "dask"},
            "BUSSTATS_EXECUTOR='dask' and BUSSTATS_DASK_SCHEDULER unset: the dask executor needs"
            " a scheduler, and a scheduler is used only by the dask executor",
        ),
        (
            {"BUSSTATS_DASK_SCHEDULER": "tcp://127.0.0.1:8786"},
            "BUSSTATS_EXECUTOR='local' and BUSSTATS_DASK_SCHEDULER='tcp://127.0.0.1:8786': the"
            " dask executor needs a scheduler, and a scheduler is used only by the dask executor",
        ),
    ],
)
def test_rules_between_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_a_lease_renewed_at_exactly_half_its_length_is_accepted() -> None:
    env = {"BUSSTATS_LEASE_SECONDS": "9", "BUSSTATS_LEASE_RENEW_SECONDS": "4.5"}
    assert Settings.from_env(env).lease_renew_seconds == 4.5


def test_keyword_construction_is_checked_and_reads_no_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUSSTATS_CITY_CONCURRENCY", "8")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert Settings() == Settings.from_env({})
    assert Settings(city_concurrency=4).city_concurrency == 4
    assert Settings(reference_timeout_seconds=3).reference_timeout_seconds == 3  # by field name
    for wrong in ({"city_concurrency": 0}, {"lease_renew_seconds": 600}, {"city_concurency": 8}):
        with pytest.raises(ValidationError):
            Settings.model_validate(wrong)


def test_settings_survive_pickling_as_for_dask_and_stay_usable_as_a_key() -> None:
    """Dask pickles a task's settings; a worker keeps its tools per settings in a dict."""
    settings = Settings(store="s3://bus", executor="dask", dask_scheduler="tcp://[::1]:8786")
    copy = pickle.loads(pickle.dumps(settings))
    assert copy == settings
    assert hash(copy) == hash(settings)
    tools: dict[Settings, str] = {}
    tools[settings] = "opened once"
    assert tools[copy] == "opened once"
    with pytest.raises(ValidationError):
        settings.city_concurrency = 4  # type: ignore[misc]  # frozen


def test_every_number_has_finite_bounds() -> None:
    """So `inf` and `nan` can never reach the service, whatever setting is added."""
    for field, schema in busstats.core.settings._schemas().items():
        if schema.get("type") in ("integer", "number"):
            bounds = (schema.get("minimum"), schema.get("maximum"))
            assert None not in bounds, field
            assert all(math.isfinite(bound) for bound in bounds if bound is not None), field


def test_the_table_says_what_each_kind_accepts() -> None:
    """Issue 16: the hand-kept table once said "text" for `BUSSTATS_WORKER_PROCESSES`."""
    rows = {
        row.split(" | ")[0].strip("|` "): row.split(" | ")[2]
        for row in settings_table().splitlines()[2:]
    }
    assert rows["BUSSTATS_WORKER_PROCESSES"] == "a whole number from 1 to 256"
    assert rows["BUSSTATS_LEASE_SECONDS"] == "a number from 1 to 3600"
    assert rows["BUSSTATS_EXECUTOR"] == "one of `local`, `threads`, `dask`"
    assert rows["BUSSTATS_SCHEDULE_AT"] == "text like `06:30` or `06:30:00`"
    assert rows["AWS_REGION"] == "text"
    assert len(rows) == len(Settings.model_fields)


def test_every_pattern_has_an_example_to_show_instead() -> None:
    """A user reads `text like 06:30`, never a regular expression."""
    for field, schema in busstats.core.settings._schemas().items():
        if "pattern" in schema:
            examples: list[Any] = schema.get("examples", [])
            assert examples, field
            assert all(re.fullmatch(schema["pattern"], example) for example in examples), field
            assert "like" in busstats.core.settings.accepts(field), field


def test_env_names_follow_the_fields_except_the_listed_ones() -> None:
    assert env_name("city_concurrency") == "BUSSTATS_CITY_CONCURRENCY"
    assert env_name("max_mb_in_flight") == "BUSSTATS_MAX_MB_IN_FLIGHT"
    assert env_name("reference_timeout_seconds") == "BUSSTATS_REFERENCE_TIMEOUT"
    assert env_name("aws_secret_access_key") == "AWS_SECRET_ACCESS_KEY"


def test_unknown_busstats_variables_are_reported() -> None:
    env = {"BUSSTATS_CITY_CONCURENCY": "8", "BUSSTATS_STORE": "x", "PATH": "/bin"}
    assert unknown_variables(env) == ["BUSSTATS_CITY_CONCURENCY"]
    # a name in lower case is not read (names are upper case): it is reported, not ignored
    assert unknown_variables({"busstats_city_concurrency": "3"}) == ["busstats_city_concurrency"]


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("BUSSTATS_CITY_CONCURENCY", "BUSSTATS_CITY_CONCURRENCY"),
        ("BUSSTATS_LOGLEVEL", "BUSSTATS_LOG_LEVEL"),
        ("BUSSTATS_REFERENCE_TIMEOUT_SECONDS", "BUSSTATS_REFERENCE_TIMEOUT"),
        ("BUSSTATS_AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("BUSSTATS_COLOUR", None),
        ("BUSSTATS_URL", None),
    ],
)
def test_an_unknown_variable_gets_the_closest_setting(name: str, meant: str | None) -> None:
    assert did_you_mean(name) == meant


def test_the_settings_page_holds_exactly_the_generated_table() -> None:
    readme = SETTINGS_PAGE.read_text()
    table = settings_table()
    assert table in readme
    # and no other row that starts with a variable: the README table is the generated one, whole
    variable_row = re.compile(r"\| `[A-Z][A-Z0-9_]*` \|")
    rows = [line for line in readme.splitlines() if variable_row.match(line)]
    assert rows == [line for line in table.splitlines() if variable_row.match(line)]
