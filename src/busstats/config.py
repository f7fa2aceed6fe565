"""Settings, read once from environment variables (the table in README.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class DateParam(StrEnum):
    """How the reference server wants its `date` query parameter spelled."""

    AUTO = "auto"  # try the plain date, switch to the datetime form on a 400
    DATE = "date"  # 2024-05-01
    DATETIME = "datetime"  # 2024-05-01T00:00:00


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    store: str = "./data"
    """A local folder, or `s3://<bucket>` for S3."""
    s3_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    s3_attempts: int = 5
    """Tries per S3 call, with botocore's standard retry mode (backoff with jitter)."""
    reference_url: str = "http://127.0.0.1:8081"
    reference_date_param: DateParam = DateParam.AUTO
    reference_timeout_seconds: float = 30.0
    """Longest silence allowed while connecting to or reading from the reference server."""
    reference_attempts: int = 4
    """Tries per call on connection errors, timeouts and 5xx; a 4xx is never retried."""
    reference_backoff_seconds: float = 0.5
    """First wait between tries; it doubles (with jitter) up to 8 s."""
    city_concurrency: int = 32
    city_max_seconds: float = 3600.0
    """Wall time one city's download may take, all its retries included."""
    city_max_bytes: int = 8 * 2**30
    """Largest body one city may send, counted after decompression; also its temp file's cap."""
    max_bytes_in_flight: int = 256 * 1024 * 1024
    """Memory that cities being converted and uploaded may hold at once."""
    max_range_days: int = 3660
    temp_dir: str | None = None
    """Where downloads wait to be converted (a `busstats/` folder inside); the system's
    temporary folder when unset."""
    lease_seconds: float = 30.0
    """How long a job's and a date's lease last without renewal; after that, any process
    may end the job (its process is taken for dead) or take the date over."""
    lease_renew_seconds: float = 5.0
    """How often a process renews the leases it holds; well below `lease_seconds`."""

    @property
    def s3_bucket(self) -> str | None:
        """The bucket when the store is S3, else None."""
        if not self.store.startswith("s3://"):
            return None
        return self.store.removeprefix("s3://").strip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()

        def text(name: str, default: str) -> str:
            return env.get(name) or default

        def optional(name: str) -> str | None:
            return env.get(name) or None

        def number(name: str, default: float, *, minimum: float) -> float:
            raw = env.get(name)
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number") from None
            if value < minimum:
                raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}")
            return value

        date_param = text("BUSSTATS_REFERENCE_DATE_PARAM", defaults.reference_date_param.value)
        try:
            parsed_date_param = DateParam(date_param)
        except ValueError:
            choices = ", ".join(p.value for p in DateParam)
            raise ConfigError(
                f"BUSSTATS_REFERENCE_DATE_PARAM={date_param!r} must be one of {choices}"
            ) from None

        settings = cls(
            store=text("BUSSTATS_STORE", defaults.store),
            s3_endpoint_url=optional("BUSSTATS_S3_ENDPOINT_URL"),
            aws_region=optional("AWS_REGION") or text("AWS_DEFAULT_REGION", defaults.aws_region),
            aws_access_key_id=optional("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=optional("AWS_SECRET_ACCESS_KEY"),
            s3_attempts=int(number("BUSSTATS_S3_ATTEMPTS", defaults.s3_attempts, minimum=1)),
            reference_url=text("BUSSTATS_REFERENCE_URL", defaults.reference_url),
            reference_date_param=parsed_date_param,
            reference_timeout_seconds=number(
                "BUSSTATS_REFERENCE_TIMEOUT", defaults.reference_timeout_seconds, minimum=0.1
            ),
            reference_attempts=int(
                number("BUSSTATS_REFERENCE_ATTEMPTS", defaults.reference_attempts, minimum=1)
            ),
            reference_backoff_seconds=number(
                "BUSSTATS_REFERENCE_BACKOFF", defaults.reference_backoff_seconds, minimum=0
            ),
            city_concurrency=int(
                number("BUSSTATS_CITY_CONCURRENCY", defaults.city_concurrency, minimum=1)
            ),
            city_max_seconds=number(
                "BUSSTATS_CITY_MAX_SECONDS", defaults.city_max_seconds, minimum=1
            ),
            city_max_bytes=int(
                number("BUSSTATS_CITY_MAX_MB", defaults.city_max_bytes / 2**20, minimum=1) * 2**20
            ),
            max_bytes_in_flight=int(
                number(
                    "BUSSTATS_MAX_MB_IN_FLIGHT", defaults.max_bytes_in_flight / 2**20, minimum=64
                )
                * 2**20
            ),
            max_range_days=int(
                number("BUSSTATS_MAX_RANGE_DAYS", defaults.max_range_days, minimum=1)
            ),
            temp_dir=optional("BUSSTATS_TEMP_DIR"),
            lease_seconds=number("BUSSTATS_LEASE_SECONDS", defaults.lease_seconds, minimum=1),
            lease_renew_seconds=number(
                "BUSSTATS_LEASE_RENEW_SECONDS", defaults.lease_renew_seconds, minimum=0.1
            ),
        )
        if settings.lease_renew_seconds * 2 > settings.lease_seconds:
            raise ConfigError(
                "BUSSTATS_LEASE_RENEW_SECONDS must be at most half of BUSSTATS_LEASE_SECONDS"
            )
        if settings.s3_bucket is not None and len(settings.s3_bucket) < 3:
            raise ConfigError(f"BUSSTATS_STORE={settings.store!r} does not name a bucket")
        return settings
