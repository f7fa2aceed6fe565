"""Settings, read once from environment variables.

`Settings` is the one list of settings, a `pydantic-settings` model: each field carries its
type, bounds, default and a line of documentation, and its environment variable is
`BUSSTATS_<FIELD>` unless its `validation_alias` names others (the AWS SDK's own names, and
names kept from earlier releases). pydantic converts and checks the values, so `2.7` for a
count, `inf` or `nan` for a number of seconds, or a typo in a choice is refused; `from_env`
turns pydantic's errors into one line naming the variable, the value and what is accepted,
in words derived from the field's JSON schema. The table of docs/settings.md is
`settings_table()`, built from the same schema (a test keeps them equal).

Only `from_env` reads the environment. Keyword construction, `Settings(store=...)`, takes the
keywords and the defaults and nothing else, so a test never picks up the variables of the
shell it runs in; it checks the values as `from_env` does. `model_copy(update=...)` changes
fields unchecked, for tests that need what a user may not set.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import urllib.parse
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class DateParam(StrEnum):
    """How the reference server wants its `date` query parameter spelled."""

    AUTO = "auto"  # try the plain date, switch to the datetime form on a 400
    DATE = "date"  # 2024-05-01
    DATETIME = "datetime"  # 2024-05-01T00:00:00


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/?")
"""An S3 bucket name (AWS's rules, less the ones about dots), a trailing `/` allowed."""

SCHEDULER_ADDRESS = r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[^/:\[\]]+):([0-9]{1,5})$"
"""`tcp://host:port` (or `tls://`), an IPv6 host in brackets; the port is checked apart."""


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


ENV_PREFIX = "BUSSTATS_"

_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _number_text(value: object) -> object:
    """A number given as text must be written as in JSON (`8`, `0.5`, `1e3`).

    pydantic's own parsing would also take ` 8`, `+8`, `08` and `1_000`, which msgspec
    refused when it read the settings, and they stay refused. `3.0` and `1e2` still make a
    whole number; a fraction does not.
    """
    if not isinstance(value, str):
        return value
    if _JSON_NUMBER.fullmatch(value) is None:
        raise PydanticCustomError("number_text", "not a number")
    return int(value) if value.lstrip("-").isdigit() else float(value)


NUMBER_TEXT = BeforeValidator(_number_text)
"""The last annotation of a number setting: after its `Field`, so that the bounds stay in the
integer's or number's own schema (and show as `minimum` and `maximum` in the JSON schema)."""


class Settings(BaseSettings):
    """Every setting of the service; construct with keywords, or read with `from_env()`.

    Both check every value and the rules between settings; only `from_env` reads variables.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        env_prefix=ENV_PREFIX,
        # pydantic-settings compares names in lower case; `_EnvironSource` keeps only the
        # variables spelt exactly as `variables()` lists them
        case_sensitive=False,
        validate_by_name=True,
        validate_by_alias=True,
        allow_inf_nan=False,
        extra="forbid",
    )

    store: Annotated[str, Field(min_length=1, description="a local folder, or `s3://<bucket>`")] = (
        "./data"
    )
    s3_endpoint_url: Annotated[
        str | None,
        Field(
            description="an S3-compatible endpoint such as MinIO or moto (path-style addressing"
            " is used then); unset: AWS"
        ),
    ] = None
    aws_region: Annotated[
        str,
        Field(
            validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
            description="the bucket's region; `AWS_DEFAULT_REGION` is read when this is unset",
        ),
    ] = "us-east-1"
    aws_access_key_id: Annotated[
        str | None,
        Field(
            validation_alias=AliasChoices("AWS_ACCESS_KEY_ID"),
            description="credentials; when unset, the usual AWS credential chain applies",
        ),
    ] = None
    aws_secret_access_key: Annotated[
        str | None,
        Field(
            validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY"),
            description="the secret that goes with `AWS_ACCESS_KEY_ID`",
        ),
    ] = None
    s3_attempts: Annotated[
        int,
        Field(ge=1, le=20, description="tries per S3 call (botocore's standard retry mode)"),
        NUMBER_TEXT,
    ] = 5
    reference_url: Annotated[str, Field(min_length=1, description="the reference server")] = (
        "http://127.0.0.1:8081"
    )
    reference_date_param: Annotated[
        DateParam,
        Field(
            description="how the reference server wants `date`: `date` (`2024-05-01`), `datetime`"
            " (`2024-05-01T00:00:00`), or `auto` (try the date, switch on a `400` and remember)"
        ),
    ] = DateParam.AUTO
    reference_timeout_seconds: Annotated[
        float,
        Field(
            ge=0.1,
            le=3600,
            validation_alias=AliasChoices("BUSSTATS_REFERENCE_TIMEOUT"),
            description="seconds of silence allowed when connecting to or reading from the"
            " reference server",
        ),
        NUMBER_TEXT,
    ] = 30.0
    reference_attempts: Annotated[
        int,
        Field(
            ge=1,
            le=20,
            description="tries per reference call on connection errors, timeouts, 5xx and 429;"
            " a 4xx is never retried",
        ),
        NUMBER_TEXT,
    ] = 4
    reference_backoff_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=60,
            validation_alias=AliasChoices("BUSSTATS_REFERENCE_BACKOFF"),
            description="seconds before the first retry; doubles with jitter up to 8 s",
        ),
        NUMBER_TEXT,
    ] = 0.5
    city_concurrency: Annotated[
        int, Field(ge=1, le=1024, description="cities fetched at once"), NUMBER_TEXT
    ] = 32
    max_mb_in_flight: Annotated[
        int,
        Field(
            ge=64,
            le=1024 * 1024,
            description="MiB that cities being converted and uploaded may hold at once, over"
            " the whole process and its conversion processes; a large city reserves about"
            " 96 MiB (twenty 4 MiB slices of its JSON being decoded, one upload part)",
        ),
        NUMBER_TEXT,
    ] = 256
    max_range_days: Annotated[
        int,
        Field(ge=1, le=100_000, description="the longest range `/country-stats` accepts"),
        NUMBER_TEXT,
    ] = 3660
    city_max_seconds: Annotated[
        float,
        Field(
            ge=1,
            le=7 * 86400,
            description="wall time one city's download may take, all its retries included",
        ),
        NUMBER_TEXT,
    ] = 3600.0
    city_max_mb: Annotated[
        int,
        Field(
            ge=1,
            le=16 * 1024,
            description="largest body one city may send, in MiB counted after decompression;"
            " also its temporary file's cap",
        ),
        NUMBER_TEXT,
    ] = 8 * 1024
    temp_dir: Annotated[
        str | None,
        Field(
            description="where downloads wait to be converted (a `busstats/` folder inside);"
            " the system's temporary folder when unset",
        ),
    ] = None
    lease_seconds: Annotated[
        float,
        Field(
            ge=1,
            le=3600,
            description="how long job and date leases last unrenewed; then any process may end"
            " the job (its process is taken for dead) or take the date over",
        ),
        NUMBER_TEXT,
    ] = 30.0
    lease_renew_seconds: Annotated[
        float,
        Field(
            ge=0.1,
            le=1800,
            description="how often a process renews its leases; at most half of"
            " `BUSSTATS_LEASE_SECONDS`",
        ),
        NUMBER_TEXT,
    ] = 5.0
    max_running_jobs: Annotated[
        int,
        Field(
            ge=1,
            le=64,
            description="ingest jobs this process runs at once; more wait `queued`, holding"
            " no date lease",
        ),
        NUMBER_TEXT,
    ] = 2
    executor: Annotated[
        Literal["local", "threads", "dask"],
        Field(
            description="where city work runs: `local` worker processes (conversions never hold"
            " up the API), `threads` of the API process, or a `dask` cluster"
            " (`BUSSTATS_DASK_SCHEDULER`); docs/executors.md"
        ),
    ] = "local"
    worker_processes: Annotated[
        Annotated[int, Field(ge=1, le=256), NUMBER_TEXT] | None,
        Field(description="conversion processes of the `local` executor; unset: one per CPU"),
    ] = None
    dask_scheduler: Annotated[
        Annotated[str, StringConstraints(pattern=SCHEDULER_ADDRESS)] | None,
        Field(
            examples=["tcp://127.0.0.1:8786"],
            description="the Dask scheduler (`tcp://host:port`) of the `dask` executor; its"
            " workers read credentials from their own environment",
        ),
    ] = None
    schedule_at: Annotated[
        Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")]
        | None,
        Field(
            examples=["06:30", "06:30:00"],
            description="the time of day (`HH:MM`, UTC) the daily schedule ingests the latest"
            " day; unset: no schedule unless started with `POST /schedule/start`. Seeds the"
            " schedule kept in the store only when the store has none (docs/schedule.md)",
        ),
    ] = None
    schedule_lag_days: Annotated[
        int,
        Field(
            ge=0,
            le=365,
            description="days between a scheduled run and the day it ingests (1: yesterday)",
        ),
        NUMBER_TEXT,
    ] = 1
    schedule_catch_up_days: Annotated[
        int,
        Field(
            ge=1,
            le=366,
            description="at start, how many of the latest due days a schedule that missed"
            " runs (no process was up) catches up on",
        ),
        NUMBER_TEXT,
    ] = 7
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        Field(description="Python logging level"),
    ] = "INFO"

    @field_validator("store")
    @classmethod
    def _names_a_bucket(cls, store: str) -> str:
        if store[:5].lower() == "s3://" and not store.startswith("s3://"):
            raise ValueError("write the scheme in lower case: s3://<bucket>")
        if store.startswith("s3://") and not _BUCKET.fullmatch(store.removeprefix("s3://")):
            raise ValueError(
                "does not name a bucket (s3://<bucket>: 3 to 63 lower-case letters, digits,"
                " dots and hyphens, starting and ending with a letter or digit)"
            )
        return store

    @field_validator("reference_url", "s3_endpoint_url")
    @classmethod
    def _is_an_http_url(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urllib.parse.urlsplit(url)
            try:
                parts.port  # noqa: B018 - raises for a port that is no number or out of range
            except ValueError:
                raise ValueError("the port must be a number from 0 to 65535") from None
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError("expected an http:// or https:// URL with a host")
        return url

    @field_validator("dask_scheduler")
    @classmethod
    def _has_a_port(cls, address: str | None) -> str | None:
        if address is not None and not 1 <= int(address.rsplit(":", 1)[1]) <= 65535:
            raise ValueError("the port must be from 1 to 65535")
        return address

    @model_validator(mode="after")
    def _renews_in_time(self) -> Self:
        """A lease renewed at most every half of its length survives one late renewal."""
        if self.lease_renew_seconds * 2 > self.lease_seconds:
            raise ValueError(
                f"{env_name('lease_renew_seconds')}={self.lease_renew_seconds:g}: must be at"
                f" most half of {env_name('lease_seconds')} ({self.lease_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _scheduler_with_dask(self) -> Self:
        if (self.executor == "dask") != (self.dask_scheduler is not None):
            raise ValueError(
                f"{env_name('executor')}={self.executor!r} and"
                f" {env_name('dask_scheduler')}"
                f"{'=' + repr(self.dask_scheduler) if self.dask_scheduler else ' unset'}:"
                " the dask executor"
                " needs a scheduler, and a scheduler is used only by the dask executor"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword construction reads the keywords only; the environment is `from_env`'s."""
        return (init_settings,)

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

        Raises ConfigError naming the variable, its value and what is accepted, one line.

        >>> Settings.from_env({"BUSSTATS_CITY_CONCURRENCY": "8"}).city_concurrency
        8
        >>> try:
        ...     Settings.from_env({"BUSSTATS_CITY_CONCURRENCY": "2.7"})
        ... except ConfigError as exc:
        ...     print(exc)
        BUSSTATS_CITY_CONCURRENCY='2.7': expected a whole number from 1 to 1024
        """
        env = os.environ if environ is None else environ
        try:
            return cls.model_validate(_EnvironSource(cls, env)())
        except ValidationError as exc:
            raise ConfigError(
                "; ".join(_config_message(error, env) for error in exc.errors())
            ) from None


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping, not only `os.environ`.

    It sees only the variables spelt exactly as `variables()` lists them, non-empty: on its
    own it would match names in any case, and for a field with an alias it would also read
    `BUSSTATS_<FIELD>` (`BUSSTATS_AWS_REGION`), which no release ever read.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ  # before super().__init__, which loads the variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        known = set(variables())
        return {
            name.lower(): value for name, value in self._environ.items() if name in known and value
        }


def variables_of(field: str) -> tuple[str, ...]:
    """The environment variables that set a `Settings` field, first one first.

    >>> variables_of("aws_region")
    ('AWS_REGION', 'AWS_DEFAULT_REGION')
    """
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return (ENV_PREFIX + field.upper(),)


def env_name(field: str) -> str:
    """The environment variable that sets a `Settings` field.

    >>> env_name("city_concurrency")
    'BUSSTATS_CITY_CONCURRENCY'
    >>> env_name("reference_timeout_seconds")
    'BUSSTATS_REFERENCE_TIMEOUT'
    """
    return variables_of(field)[0]


@functools.cache
def variables() -> tuple[str, ...]:
    """Every environment variable a setting reads, in the fields' order."""
    return tuple(name for field in Settings.model_fields for name in variables_of(field))


@functools.cache
def _field_of_key() -> dict[str, str]:
    """The field a key of pydantic's input (field name or variable) belongs to."""
    keys = {field: field for field in Settings.model_fields}
    keys.update({name: field for field in Settings.model_fields for name in variables_of(field)})
    return keys


def _config_message(error: ErrorDetails, environ: Mapping[str, str]) -> str:
    """One pydantic error as `NAME='value': expected ...`, or a rule's own message.

    A validator's `ValueError` says what is wrong itself; any other error (not a number, out
    of bounds, not a choice, not the pattern) is answered with what the field accepts, from
    its JSON schema, whatever pydantic's own words were.
    """
    if not error["loc"]:  # a rule between settings (a model validator): names its variables
        return str(error.get("ctx", {}).get("error", error["msg"]))
    field = _field_of_key()[str(error["loc"][0])]
    name = next((n for n in variables_of(field) if environ.get(n)), env_name(field))
    given = environ.get(name, error["input"])  # the text, not what a validator made of it
    reason = (
        str(error.get("ctx", {}).get("error", error["msg"]))
        if error["type"] == "value_error"
        else f"expected {accepts(field)}"
    )
    return f"{name}={given!r}: {reason}"


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """`BUSSTATS_*` variables that no setting reads: most likely typos.

    >>> unknown_variables({"BUSSTATS_CITY_CONCURENCY": "8", "HOME": "/root"})
    ['BUSSTATS_CITY_CONCURENCY']
    """
    env = os.environ if environ is None else environ
    known = set(variables())
    return sorted(name for name in env if name.upper().startswith(ENV_PREFIX) and name not in known)


def did_you_mean(name: str) -> str | None:
    """The variable an unknown one most likely meant to be, if one is close.

    Names are compared without the `BUSSTATS_` that most share, which would make every
    name look close to every other.

    >>> did_you_mean("BUSSTATS_CITY_CONCURENCY")
    'BUSSTATS_CITY_CONCURRENCY'
    >>> did_you_mean("BUSSTATS_AWS_REGION")
    'AWS_REGION'
    >>> did_you_mean("busstats_city_concurrency")
    'BUSSTATS_CITY_CONCURRENCY'
    >>> print(did_you_mean("BUSSTATS_COLOUR"))
    None
    """
    if name.upper() in variables():  # names are read as written: upper case
        return name.upper()
    by_stem = {known.removeprefix(ENV_PREFIX): known for known in variables()}
    stem = name.upper().removeprefix(ENV_PREFIX)
    close = difflib.get_close_matches(stem, list(by_stem), n=1)
    return by_stem[close[0]] if close else None


@functools.cache
def _schemas() -> dict[str, dict[str, Any]]:
    """Each field's JSON schema, by field name, `$ref` resolved and `None` left out.

    An optional field's schema is `anyOf` its type and `null`; its own keys (description,
    default, examples) stay beside the `anyOf` and are kept.
    """
    document = Settings.model_json_schema(by_alias=False)
    definitions: dict[str, dict[str, Any]] = document.get("$defs", {})

    def resolved(schema: dict[str, Any]) -> dict[str, Any]:
        ref: str | None = schema.get("$ref")
        if ref is not None:
            return resolved(definitions[ref.rsplit("/", 1)[1]])
        return schema

    schemas: dict[str, dict[str, Any]] = {}
    for field, schema in document["properties"].items():
        kinds: list[dict[str, Any]] = schema.get("anyOf", [schema])
        (kind,) = (resolved(k) for k in kinds if k.get("type") != "null")
        schemas[field] = {**kind, **{k: v for k, v in schema.items() if k not in ("anyOf", "$ref")}}
    return schemas


def accepts(field: str) -> str:
    """What a field's variable accepts, in words, from its JSON schema.

    >>> accepts("city_concurrency")
    'a whole number from 1 to 1024'
    >>> accepts("reference_date_param")
    'one of `auto`, `date`, `datetime`'
    """
    schema = _schemas()[field]
    if "enum" in schema:
        return "one of " + ", ".join(f"`{choice}`" for choice in schema["enum"])
    kind = schema.get("type")
    if kind == "boolean":
        return "`true` or `false`"
    if kind in ("integer", "number"):
        words = "a whole number" if kind == "integer" else "a number"
        if "minimum" in schema:
            words += f" from {schema['minimum']}"
        if "maximum" in schema:
            words += (
                f" to {schema['maximum']}" if "minimum" in schema else f" up to {schema['maximum']}"
            )
        return words
    if "pattern" in schema:
        examples: list[str] = schema.get("examples", [])
        if examples:
            return "text like " + " or ".join(f"`{example}`" for example in examples)
        return f"text matching `{schema['pattern']}`"
    return "text"


def _default(schema: Mapping[str, Any]) -> str:
    value = schema.get("default")
    return "(unset)" if value is None else f"`{value}`"


def settings_table() -> str:
    """The table of docs/settings.md, in Markdown, built from `Settings`' JSON schema.

    >>> print(settings_table().splitlines()[0])
    | variable | default | accepts | meaning |
    """
    lines = ["| variable | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    for field, schema in _schemas().items():
        cells = [
            f"`{env_name(field)}`",
            _default(schema),
            accepts(field),
            schema.get("description", ""),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
