"""Settings, read once from environment variables.

`Settings` is the one list of settings: each field carries its type, bounds, default and a line
of documentation, and its environment variable is `BUSSTATS_<FIELD>` unless `ENV_NAMES` says
otherwise. Values are converted and checked by msgspec, so `2.7` for a count, `inf` or `nan`
for a number of seconds, or a typo in a choice is refused with the variable named. README's
configuration table is `settings_table()` (a test keeps them equal).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Literal, get_type_hints

import msgspec
from msgspec import Meta


class DateParam(StrEnum):
    """How the reference server wants its `date` query parameter spelled."""

    AUTO = "auto"  # try the plain date, switch to the datetime form on a 400
    DATE = "date"  # 2024-05-01
    DATETIME = "datetime"  # 2024-05-01T00:00:00


SCHEDULER_ADDRESS = r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[^/:\[\]]+):([0-9]{1,5})$"
"""`tcp://host:port` (or `tls://`), an IPv6 host in brackets; the port is checked apart."""


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


ENV_PREFIX = "BUSSTATS_"

ENV_NAMES: dict[str, str] = {
    "aws_region": "AWS_REGION",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "reference_timeout_seconds": "BUSSTATS_REFERENCE_TIMEOUT",
    "reference_backoff_seconds": "BUSSTATS_REFERENCE_BACKOFF",
}
"""Fields whose variable is not `BUSSTATS_<FIELD>`: the AWS SDK's own names, and names kept
from earlier releases."""

ENV_FALLBACKS: dict[str, str] = {"AWS_REGION": "AWS_DEFAULT_REGION"}
"""A variable read when the first one is unset, as the AWS SDKs do."""


def env_name(field: str) -> str:
    """The environment variable that sets a `Settings` field.

    >>> env_name("city_concurrency")
    'BUSSTATS_CITY_CONCURRENCY'
    >>> env_name("reference_timeout_seconds")
    'BUSSTATS_REFERENCE_TIMEOUT'
    """
    return ENV_NAMES.get(field, ENV_PREFIX + field.upper())


class Settings(msgspec.Struct, frozen=True, kw_only=True, rename=env_name):
    """Every setting of the service; construct with keywords, or read with `from_env()`.

    Keyword construction is for code and tests and does not check bounds; `from_env` does.
    """

    store: Annotated[str, Meta(min_length=1, description="a local folder, or `s3://<bucket>`")] = (
        "./data"
    )
    s3_endpoint_url: Annotated[
        str | None,
        Meta(
            description="an S3-compatible endpoint such as MinIO or moto (path-style addressing"
            " is used then); unset: AWS"
        ),
    ] = None
    aws_region: Annotated[
        str,
        Meta(description="the bucket's region; `AWS_DEFAULT_REGION` is read when this is unset"),
    ] = "us-east-1"
    aws_access_key_id: Annotated[
        str | None,
        Meta(description="credentials; when unset, the usual AWS credential chain applies"),
    ] = None
    aws_secret_access_key: Annotated[
        str | None, Meta(description="the secret that goes with `AWS_ACCESS_KEY_ID`")
    ] = None
    s3_attempts: Annotated[
        int, Meta(ge=1, le=20, description="tries per S3 call (botocore's standard retry mode)")
    ] = 5
    reference_url: Annotated[str, Meta(min_length=1, description="the reference server")] = (
        "http://127.0.0.1:8081"
    )
    reference_date_param: Annotated[
        DateParam,
        Meta(
            description="how the reference server wants `date`: `date` (`2024-05-01`), `datetime`"
            " (`2024-05-01T00:00:00`), or `auto` (try the date, switch on a `400` and remember)"
        ),
    ] = DateParam.AUTO
    reference_timeout_seconds: Annotated[
        float,
        Meta(
            ge=0.1,
            le=3600,
            description="seconds of silence allowed when connecting to or reading from the"
            " reference server",
        ),
    ] = 30.0
    reference_attempts: Annotated[
        int,
        Meta(
            ge=1,
            le=20,
            description="tries per reference call on connection errors, timeouts, 5xx and 429;"
            " a 4xx is never retried",
        ),
    ] = 4
    reference_backoff_seconds: Annotated[
        float,
        Meta(
            ge=0, le=60, description="seconds before the first retry; doubles with jitter up to 8 s"
        ),
    ] = 0.5
    city_concurrency: Annotated[int, Meta(ge=1, le=1024, description="cities fetched at once")] = 32
    max_mb_in_flight: Annotated[
        int,
        Meta(
            ge=64,
            le=1024 * 1024,
            description="MiB that cities being converted and uploaded may hold at once, over"
            " the whole process and its conversion processes; a large city reserves about"
            " 96 MiB (twenty 4 MiB slices of its JSON being decoded, one upload part)",
        ),
    ] = 256
    max_range_days: Annotated[
        int, Meta(ge=1, le=100_000, description="the longest range `/country-stats` accepts")
    ] = 3660
    city_max_seconds: Annotated[
        float,
        Meta(
            ge=1,
            le=7 * 86400,
            description="wall time one city's download may take, all its retries included",
        ),
    ] = 3600.0
    city_max_mb: Annotated[
        int,
        Meta(
            ge=1,
            le=16 * 1024,
            description="largest body one city may send, in MiB counted after decompression;"
            " also its temporary file's cap",
        ),
    ] = 8 * 1024
    temp_dir: Annotated[
        str | None,
        Meta(
            description="where downloads wait to be converted (a `busstats/` folder inside);"
            " the system's temporary folder when unset",
        ),
    ] = None
    lease_seconds: Annotated[
        float,
        Meta(
            ge=1,
            le=3600,
            description="how long job and date leases last unrenewed; then any process may end"
            " the job (its process is taken for dead) or take the date over",
        ),
    ] = 30.0
    lease_renew_seconds: Annotated[
        float,
        Meta(
            ge=0.1,
            le=1800,
            description="how often a process renews its leases; at most half of"
            " `BUSSTATS_LEASE_SECONDS`",
        ),
    ] = 5.0
    max_running_jobs: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description="ingest jobs this process runs at once; more wait `queued`, holding"
            " no date lease",
        ),
    ] = 2
    executor: Annotated[
        Literal["local", "threads", "dask"],
        Meta(
            description="where city work runs: `local` worker processes (conversions never hold"
            " up the API), `threads` of the API process, or a `dask` cluster"
            " (`BUSSTATS_DASK_SCHEDULER`); docs/executors.md"
        ),
    ] = "local"
    worker_processes: Annotated[
        Annotated[int, Meta(ge=1, le=256)] | None,
        Meta(
            description="conversion processes of the `local` executor; unset: one per CPU",
        ),
    ] = None
    dask_scheduler: Annotated[
        Annotated[str, Meta(pattern=SCHEDULER_ADDRESS)] | None,
        Meta(
            description="the Dask scheduler (`tcp://host:port`) of the `dask` executor; its"
            " workers read credentials from their own environment"
        ),
    ] = None
    schedule_at: Annotated[
        Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")] | None,
        Meta(
            description="the time of day (`HH:MM`, UTC) the daily schedule ingests the latest"
            " day; unset: no schedule unless started with `POST /schedule/start`. Seeds the"
            " schedule kept in the store only when the store has none (docs/schedule.md)",
        ),
    ] = None
    schedule_lag_days: Annotated[
        int,
        Meta(
            ge=0,
            le=365,
            description="days between a scheduled run and the day it ingests (1: yesterday)",
        ),
    ] = 1
    schedule_catch_up_days: Annotated[
        int,
        Meta(
            ge=1,
            le=366,
            description="at start, how many of the latest due days a schedule that missed"
            " runs (no process was up) catches up on",
        ),
    ] = 7
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        Meta(description="Python logging level"),
    ] = "INFO"

    @property
    def s3_bucket(self) -> str | None:
        """The bucket when the store is S3, else None."""
        if not self.store.startswith("s3://"):
            return None
        return self.store.removeprefix("s3://").strip("/")

    @property
    def city_max_bytes(self) -> int:
        """`city_max_mb` in bytes."""
        return self.city_max_mb * 2**20

    @property
    def max_bytes_in_flight(self) -> int:
        """`max_mb_in_flight` in bytes."""
        return self.max_mb_in_flight * 2**20

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables (default: `os.environ`); unset or empty ones
        keep their defaults.

        Raises ConfigError naming the variable, its value and what is wrong.

        >>> Settings.from_env({"BUSSTATS_CITY_CONCURRENCY": "8"}).city_concurrency
        8
        >>> try:
        ...     Settings.from_env({"BUSSTATS_CITY_CONCURRENCY": "2.7"})
        ... except ConfigError as exc:
        ...     print(exc)
        BUSSTATS_CITY_CONCURRENCY='2.7': Expected `int`, got `str`; accepts integer from 1 to 1024
        """
        env = os.environ if environ is None else environ
        given: dict[str, str] = {}
        for name in _variables():
            value = env.get(name) or (name in ENV_FALLBACKS and env.get(ENV_FALLBACKS[name]))
            if value:
                given[name] = value
        try:
            settings = msgspec.convert(given, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise _config_error(exc, given) from None
        if settings.lease_renew_seconds * 2 > settings.lease_seconds:
            raise ConfigError(
                f"{env_name('lease_renew_seconds')}={settings.lease_renew_seconds:g}: must be at"
                f" most half of {env_name('lease_seconds')} ({settings.lease_seconds:g})"
            )
        if (settings.executor == "dask") != (settings.dask_scheduler is not None):
            raise ConfigError(
                f"{env_name('executor')}={settings.executor!r} and"
                f" {env_name('dask_scheduler')}={settings.dask_scheduler!r}: the dask executor"
                " needs a scheduler, and a scheduler is used only by the dask executor"
            )
        scheduler = settings.dask_scheduler
        if scheduler is not None and not 1 <= int(scheduler.rsplit(":", 1)[1]) <= 65535:
            raise ConfigError(
                f"{env_name('dask_scheduler')}={settings.dask_scheduler!r}: the port must be"
                " from 1 to 65535"
            )
        if settings.s3_bucket is not None and len(settings.s3_bucket) < 3:
            raise ConfigError(
                f"{env_name('store')}={settings.store!r}: does not name a bucket (s3://<bucket>)"
            )
        return settings


@functools.cache
def _fields() -> tuple[msgspec.inspect.Field, ...]:
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    return info.fields


def _variables() -> list[str]:
    return [field.encode_name for field in _fields()]


_AT_FIELD = re.compile(r"(?P<reason>.*) - at `\$\.(?P<name>\w+)`")


def _config_error(exc: msgspec.ValidationError, given: Mapping[str, str]) -> ConfigError:
    """`NAME='value': msgspec's reason; accepts ...`."""
    match = _AT_FIELD.fullmatch(str(exc))
    if match is None:
        return ConfigError(str(exc))
    name = match["name"]
    field = next(f for f in _fields() if f.encode_name == name)
    return ConfigError(
        f"{name}={given[name]!r}: {match['reason']}; accepts {_accepted(field.type)}"
    )


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """`BUSSTATS_*` variables that no setting reads: most likely typos.

    >>> unknown_variables({"BUSSTATS_CITY_CONCURENCY": "8", "HOME": "/root"})
    ['BUSSTATS_CITY_CONCURENCY']
    """
    env = os.environ if environ is None else environ
    known = set(_variables())
    return sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in known)


def _unwrap(kind: msgspec.inspect.Type) -> msgspec.inspect.Type:
    while isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    return kind


def _choices(kind: msgspec.inspect.Type) -> list[str]:
    kind = _unwrap(kind)
    if isinstance(kind, msgspec.inspect.EnumType):
        return [str(member.value) for member in kind.cls]
    if isinstance(kind, msgspec.inspect.LiteralType):
        return [str(value) for value in kind.values]
    return []


def _accepted(kind: msgspec.inspect.Type) -> str:
    """What a variable accepts, in words: `integer from 1 to 20`, `` `a`, `b` ``, `text`."""
    kind = _unwrap(kind)
    choices = _choices(kind)
    if choices:
        return ", ".join(f"`{choice}`" for choice in choices)
    if isinstance(kind, msgspec.inspect.BoolType):
        return "`true`, `false`"
    if isinstance(kind, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        noun = "integer" if isinstance(kind, msgspec.inspect.IntType) else "number"
        low = "" if kind.ge is None else f" from {kind.ge}"
        high = "" if kind.le is None else f" to {kind.le}"
        return noun + low + high
    return "text"


def _default(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, StrEnum):
        value = value.value
    return f"`{value}`"


def _description(field: str) -> str:
    """The `description` of the field's `Meta`."""
    hint = get_type_hints(Settings, include_extras=True)[field]
    metas = [meta for meta in getattr(hint, "__metadata__", ()) if isinstance(meta, Meta)]
    return next((meta.description for meta in metas if meta.description), "")


def settings_table() -> str:
    """README's configuration table, in Markdown, built from `Settings`.

    >>> print(settings_table().splitlines()[0])
    | variable | default | accepts | meaning |
    """
    lines = ["| variable | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    for field in _fields():
        cells = [
            f"`{field.encode_name}`",
            _default(field.default),
            _accepted(field.type),
            _description(field.name),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
