from __future__ import annotations

import pytest

from busstats.config import ConfigError, DateParam, Settings


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


def test_aws_region_wins_over_the_default_region() -> None:
    env = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert Settings.from_env(env).aws_region == "eu-central-1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BUSSTATS_REFERENCE_DATE_PARAM": "iso"}, "must be one of auto, date, datetime"),
        ({"BUSSTATS_CITY_CONCURRENCY": "many"}, "is not a number"),
        ({"BUSSTATS_CITY_CONCURRENCY": "0"}, "must be at least 1"),
        ({"BUSSTATS_STORE": "s3://"}, "does not name a bucket"),
        ({"BUSSTATS_MAX_MB_IN_FLIGHT": "10"}, "must be at least 64"),
    ],
)
def test_unusable_values_are_refused_with_the_variable_named(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
