"""One typed settings object for every command: flags over environment (CLOUT_*) over a TOML file.

Secrets are `Secret` values: they print as ``'**********'`` so a settings dump or a log line can
never leak them; code that needs the value calls ``reveal()``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ENV_PREFIX = "CLOUT_"
CACHE_DIR = Path(os.environ.get("CLOUT_CACHE_DIR", Path.home() / ".cache" / "clout"))


class Secret:
    """A string that refuses to be printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'**********'"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything clout connects to and every knob of the local stack."""

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    kafka_ssl_cafile: str | None = None
    # How long a connector's producer retries a record; `clout ingest` gives up (exit 2) once the broker
    # has acknowledged nothing for this + 30 s, naming how many records were not delivered
    kafka_delivery_timeout_s: float = 120.0
    topic: str = "interactions"
    dlq_topic: str = "interactions.dlq"
    flags_topic: str = "flags"
    partitions: int = 6
    replication_factor: int = 1
    retention_ms: int = -1  # topic retention; -1 keeps everything (record timestamps are event times)
    group: str = "clout"
    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_username: str | None = None
    redis_password: Secret | None = None
    redis_ssl_cafile: str | None = None  # CA bundle for rediss://
    key_prefix: str = "clout"
    retention_seconds: int = 7 * 24 * 3600
    # Live sources (clout/connectors): a Mastodon access token (required since Mastodon 4.2)
    mastodon_access_token: Secret | None = None
    # Read API (`clout serve`): requests/s per client address (0: no limit), burst, CORS origins (none: off)
    serve_rate_limit: float = 100.0
    serve_rate_burst: float = 200.0
    serve_cors_origins: str = ""  # comma-separated, e.g. "https://dash.example.com"
    # Local stack (clout/local)
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    redis_port: int = 6379
    flink_rest_port: int = 8081  # the JobManager's REST API (and web UI, when flink-runtime-web is present)
    flink_rpc_port: int = 6123
    flink_job_server_port: int = 8099  # Beam's job server; artifact and expansion services on the next two
    flink_worker_pool_port: int = 50000  # the Beam Python worker pool (EXTERNAL environment)
    state_dir: Path = field(default_factory=lambda: Path(".state"))
    cache_dir: Path = field(default_factory=lambda: CACHE_DIR)

    def kafka_client_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments for the connection (security included)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            config["sasl_plain_password"] = self.kafka_sasl_password.reveal() if self.kafka_sasl_password else None
        if self.kafka_ssl_cafile:
            config["ssl_cafile"] = self.kafka_ssl_cafile
        return config

    def redis_client_config(self) -> dict[str, Any]:
        """redis-py ``from_url`` keyword arguments beyond the URL (ACL user and password)."""
        config: dict[str, Any] = {}
        if self.redis_username:
            config["username"] = self.redis_username
        if self.redis_password:
            config["password"] = self.redis_password.reveal()
        if self.redis_ssl_cafile:
            config["ssl_ca_certs"] = self.redis_ssl_cafile
        return config

    def redacted(self) -> dict[str, Any]:
        """The effective settings as JSON-ready values, secrets and URL passwords masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = repr(value).strip("'")
            elif isinstance(value, Path):
                value = str(value)
            elif f.name == "redis_url":
                value = _mask_url_password(value)
            out[f.name] = value
        return out

    def environment(self) -> dict[str, str]:
        """These settings as CLOUT_* variables, for a clout child process to load as its own: the flags
        and the --config file a parent was given do not reach a child otherwise. Secrets included
        (the environment is a secret source; a child's environment is never printed)."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f"{ENV_PREFIX}{f.name.upper()}"] = value.reveal() if isinstance(value, Secret) else str(value)
        return out

    def __repr__(self) -> str:
        """Redacted, so a settings object in a log line or a traceback leaks no password."""
        return f"Settings({self.redacted()})"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: _coerce(self, k, v) for k, v in changes.items() if v is not None})


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults, then the TOML file (``--config`` or CLOUT_CONFIG), then CLOUT_* variables, then flags."""
    settings = Settings()
    path = path or os.environ.get(f"{ENV_PREFIX}CONFIG")
    if path:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
        settings = settings.replace(**{**_known(values, str(path)), **_secret_files(values, env=False)})
    from_env = {
        f.name: os.environ[f"{ENV_PREFIX}{f.name.upper()}"]
        for f in dataclasses.fields(Settings)
        if f"{ENV_PREFIX}{f.name.upper()}" in os.environ
    }
    settings = settings.replace(**{**from_env, **_secret_files(dict(os.environ))})
    return settings.replace(**(overrides or {}))


def _secret_names() -> list[str]:
    return [name for name, hint in typing.get_type_hints(Settings).items() if _non_optional(hint) is Secret]


def _secret_files(source: dict[str, Any], env: bool = True) -> dict[str, Secret]:
    """Secrets from files: `CLOUT_<NAME>_FILE` (or `<name>_file` in the TOML file) names a file, such
    as a secret manager's mounted secret, whose content (less a final newline) is the secret. The
    value then never sits in the environment, a config file or a command line."""
    out = {}
    for name in _secret_names():
        path = source.get(f"{ENV_PREFIX}{name.upper()}_FILE" if env else f"{name}_file")
        if path:
            try:
                out[name] = Secret(Path(path).read_text().removesuffix("\n"))
            except OSError as error:
                raise ValueError(f"cannot read the secret file for {name} ({path}): {error.strerror}") from None
    return out


def _known(values: dict[str, Any], origin: str) -> dict[str, Any]:
    values = {k: v for k, v in values.items() if not (k.endswith("_file") and k[:-5] in _secret_names())}
    names = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{origin}: unknown setting(s) {unknown}; known: {sorted(names)}")
    return values


def _coerce(settings: Settings, name: str, value: Any) -> Any:
    """Turn strings from the environment or a file into the field's declared type."""
    hints = typing.get_type_hints(Settings)
    if name not in hints:
        raise ValueError(f"unknown setting {name!r}")
    target = _non_optional(hints[name])
    if isinstance(value, target):
        return value
    if target is bool:
        return str(value).lower() in {"1", "true", "yes", "on"}
    return target(value)


def _non_optional(hint: Any) -> type:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":**********@")
    return urlunsplit(parts._replace(netloc=netloc))
