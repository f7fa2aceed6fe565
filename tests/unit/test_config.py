from __future__ import annotations

import doctest
import math
import re
from pathlib import Path

import msgspec
import pytest

import busstats.core.settings
from busstats.core.settings import (
    ConfigError,
    DateParam,
    Settings,
    env_name,
    settings_table,
    unknown_variables,
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


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("BUSSTATS_REFERENCE_DATE_PARAM", "iso", "accepts `auto`, `date`, `datetime`"),
        ("BUSSTATS_CITY_CONCURRENCY", "many", "Expected `int`"),
        ("BUSSTATS_CITY_CONCURRENCY", "2.7", "Expected `int`"),
        ("BUSSTATS_CITY_CONCURRENCY", "inf", "Expected `int`"),
        ("BUSSTATS_CITY_CONCURRENCY", "0", "Expected `int` >= 1"),
        ("BUSSTATS_CITY_CONCURRENCY", "1e9", "Expected `int` <= 1024"),
        ("BUSSTATS_CITY_CONCURRENCY", " 8", "Expected `int`"),
        ("BUSSTATS_REFERENCE_TIMEOUT", "inf", "Expected `float` <= 3600"),
        ("BUSSTATS_REFERENCE_TIMEOUT", "-inf", "Expected `float` >= 0.1"),
        ("BUSSTATS_REFERENCE_TIMEOUT", "nan", "Expected `float`"),
        ("BUSSTATS_REFERENCE_TIMEOUT", "1e400", "out of range"),
        ("BUSSTATS_REFERENCE_BACKOFF", "-0.5", "Expected `float` >= 0"),
        ("BUSSTATS_REFERENCE_BACKOFF", "NaN", "Expected `float`"),
        ("BUSSTATS_REFERENCE_ATTEMPTS", "3.0001", "Expected `int`"),
        ("BUSSTATS_S3_ATTEMPTS", "-1", "Expected `int` >= 1"),
        ("BUSSTATS_MAX_MB_IN_FLIGHT", "10", "Expected `int` >= 64"),
        ("BUSSTATS_MAX_RANGE_DAYS", "0x10", "Expected `int`"),
        ("BUSSTATS_LOG_LEVEL", "info", "accepts `CRITICAL`, `DEBUG`, `ERROR`, `INFO`, `WARNING`"),
        ("BUSSTATS_STORE", "s3://", "does not name a bucket"),
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


def test_every_number_has_finite_bounds() -> None:
    """So `inf` and `nan` can never reach the service, whatever setting is added."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        kind = field.type
        while isinstance(kind, msgspec.inspect.Metadata):
            kind = kind.type
        if isinstance(kind, msgspec.inspect.IntType | msgspec.inspect.FloatType):
            bounds = (kind.ge, kind.le)
            assert None not in bounds, field.name
            assert all(math.isfinite(bound) for bound in bounds if bound is not None), field.name


def test_env_names_follow_the_fields_except_the_listed_ones() -> None:
    assert env_name("city_concurrency") == "BUSSTATS_CITY_CONCURRENCY"
    assert env_name("max_mb_in_flight") == "BUSSTATS_MAX_MB_IN_FLIGHT"
    assert env_name("reference_timeout_seconds") == "BUSSTATS_REFERENCE_TIMEOUT"
    assert env_name("aws_secret_access_key") == "AWS_SECRET_ACCESS_KEY"


def test_unknown_busstats_variables_are_reported() -> None:
    env = {"BUSSTATS_CITY_CONCURENCY": "8", "BUSSTATS_STORE": "x", "PATH": "/bin"}
    assert unknown_variables(env) == ["BUSSTATS_CITY_CONCURENCY"]


def test_the_settings_page_holds_exactly_the_generated_table() -> None:
    readme = SETTINGS_PAGE.read_text()
    table = settings_table()
    assert table in readme
    # and no other row that starts with a variable: the README table is the generated one, whole
    variable_row = re.compile(r"\| `[A-Z][A-Z0-9_]*` \|")
    rows = [line for line in readme.splitlines() if variable_row.match(line)]
    assert rows == [line for line in table.splitlines() if variable_row.match(line)]


def test_docstring_examples_hold() -> None:
    outcome = doctest.testmod(busstats.core.settings)
    assert outcome.attempted > 0
    assert outcome.failed == 0
