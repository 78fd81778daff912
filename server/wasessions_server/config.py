"""Server configuration: documented frozen dataclasses with safe defaults, from flags,
`WASESSIONS_*` environment variables and a TOML file (in that order of precedence)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasessions_server.engines.registry import KNOWN_ENGINES
from wasessions_server.errors import ConfigError
from wasessions_server.policy import QrSchedule, policy_from_spec
from wasessions_server.policy.table import positive_float, positive_int
from wasessions_server.security import TOP_KEYS as _SECURITY_KEYS
from wasessions_server.security import SecuritySettings, security_from_mapping
from wasessions_server.sessions import ManagerSettings


@dataclass(frozen=True, slots=True)
class JournalSettings:
    #: Changes kept for resuming watchers; older tokens get a resync.
    retention_events: int = 100_000
    #: Changes buffered per watcher before it is told to resync.
    subscriber_queue_size: int = 10_000


@dataclass(frozen=True, slots=True)
class ServerConfig:
    #: host:port to listen on (port 0 picks a free one).
    listen: str = "127.0.0.1:50051"
    #: The SQLite registry and journal, and one credential folder per session.
    data_dir: Path = Path("./data")
    #: The engine of new sessions that name none.
    engine: str = "whatsmeow"
    #: The engines sessions may use; the default engine is always one of them.
    engines: tuple[str, ...] = ("whatsmeow",)
    manager: ManagerSettings = field(default_factory=ManagerSettings)
    journal: JournalSettings = field(default_factory=JournalSettings)
    #: How long in-flight RPCs get to finish on SIGTERM before they are cancelled.
    shutdown_grace_s: float = 5.0
    #: API keys, TLS, limits, metrics (see security.py and the README's security section).
    security: SecuritySettings = field(default_factory=SecuritySettings)


_TOP_KEYS = {
    "listen",
    "data_dir",
    "engine",
    "engines",
    "shutdown_grace_s",
    "policy",
    "qr",
    "manager",
    "journal",
    *_SECURITY_KEYS,
}
_MANAGER_FLOATS = (
    "stable_after_s",
    "connect_rate",
    "restore_jitter_s",
    "connect_timeout_s",
    "close_timeout_s",
    "heartbeat_interval_s",
)
_ZERO_OK = ("stable_after_s", "restore_jitter_s")
_MANAGER_INTS = ("restore_concurrency", "max_sessions")


def load_config(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> ServerConfig:
    """Reads `path` (TOML) and applies `overrides` (flags and environment, already merged).

    Raises ConfigError naming the key; nothing is applied half-way.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as error:
            raise ConfigError(f"--config: cannot read {path}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"--config: {path} is not valid TOML: {error}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return config_from_mapping(data)


def config_from_mapping(data: Mapping[str, Any]) -> ServerConfig:
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{key}: unknown key (allowed: {', '.join(sorted(_TOP_KEYS))})")
    listen = _string(data.get("listen", "127.0.0.1:50051"), "listen")
    if ":" not in listen:
        raise ConfigError(f"listen: expected host:port, got {listen!r}")
    engine = _string(data.get("engine", "whatsmeow"), "engine")
    if engine not in KNOWN_ENGINES:
        raise ConfigError(f"engine: expected one of {', '.join(KNOWN_ENGINES)}, got {engine!r}")
    engines = _engines(data.get("engines"), engine)
    policy = policy_from_spec(_section(data, "policy"))
    qr_spec = _section(data, "qr")
    _only(qr_spec, {"first_timeout_s", "timeout_s", "max_codes"}, "qr")
    base_qr = QrSchedule()
    qr = QrSchedule(
        first_timeout_s=positive_float(
            qr_spec.get("first_timeout_s", base_qr.first_timeout_s), "qr.first_timeout_s"
        ),
        timeout_s=positive_float(qr_spec.get("timeout_s", base_qr.timeout_s), "qr.timeout_s"),
        max_codes=positive_int(qr_spec.get("max_codes", base_qr.max_codes), "qr.max_codes"),
    )
    manager_spec = _section(data, "manager")
    _only(manager_spec, set(_MANAGER_FLOATS) | set(_MANAGER_INTS), "manager")
    base = ManagerSettings()
    values: dict[str, Any] = {}
    for key in _MANAGER_FLOATS:
        values[key] = positive_float(
            manager_spec.get(key, getattr(base, key)), f"manager.{key}", zero=key in _ZERO_OK
        )
    for key in _MANAGER_INTS:
        values[key] = positive_int(manager_spec.get(key, getattr(base, key)), f"manager.{key}")
    journal_spec = _section(data, "journal")
    _only(journal_spec, {"retention_events", "subscriber_queue_size"}, "journal")
    base_journal = JournalSettings()
    journal = JournalSettings(
        retention_events=positive_int(
            journal_spec.get("retention_events", base_journal.retention_events),
            "journal.retention_events",
        ),
        subscriber_queue_size=positive_int(
            journal_spec.get("subscriber_queue_size", base_journal.subscriber_queue_size),
            "journal.subscriber_queue_size",
        ),
    )
    return ServerConfig(
        listen=listen,
        data_dir=Path(_string(data.get("data_dir", "./data"), "data_dir")),
        engine=engine,
        engines=engines,
        manager=ManagerSettings(policy=policy, qr=qr, **values),
        journal=journal,
        shutdown_grace_s=positive_float(
            data.get("shutdown_grace_s", 5.0), "shutdown_grace_s", zero=True
        ),
        security=security_from_mapping(data, listen),
    )


def _engines(value: Any, default: str) -> tuple[str, ...]:
    if value is None:
        return (default,)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"engines: expected a list of engine names, got {value!r}")
    for name in value:
        if name not in KNOWN_ENGINES:
            raise ConfigError(
                f"engines: unknown engine {name!r} (known: {', '.join(KNOWN_ENGINES)})"
            )
    if default not in value:
        raise ConfigError(f"engines: must include the default engine {default!r}")
    return tuple(dict.fromkeys(value))


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a table")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
