"""Server configuration: every key, from flags, `WASESSIONS_*` environment variables and a TOML
file (in that order of precedence), is validated here and nowhere else.

The settings themselves are documented frozen dataclasses with safe defaults, next to the layer
they configure (`ManagerSettings`, `Backoff`, `QrSchedule`, `SecuritySettings`, ...). A key that
is not given keeps its dataclass default; the keys of a section are the dataclass's fields.
Every error is a `ConfigError` whose message starts with the key (`policy.codes.440.action:
...`), and nothing is applied half-way.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from wasessions_server.engines.registry import KNOWN_ENGINES
from wasessions_server.errors import ConfigError
from wasessions_server.messages import MessageSettings
from wasessions_server.model import RequiredAction
from wasessions_server.policy import Action, Backoff, CodeRule, QrSchedule, ReconnectPolicy
from wasessions_server.policy.table import BACKOFF_KEYS, DEFAULT_ROWS, DEFAULT_RULE, build_policy
from wasessions_server.security import ApiKeys, SecuritySettings, TlsFiles, parse_api_keys
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
    #: The outbox's pacing, ttl and attempts, and how long message events are kept.
    messages: MessageSettings = field(default_factory=MessageSettings)
    #: How long in-flight RPCs get to finish on SIGTERM before they are cancelled.
    shutdown_grace_s: float = 5.0
    #: API keys, TLS, limits, metrics (see security.py and the README's security section).
    security: SecuritySettings = field(default_factory=SecuritySettings)


_SECTIONS = ("policy", "qr", "manager", "journal", "messages", "security")
_SECURITY_TOP_KEYS = (
    "api_keys_file",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "metrics_listen",
    "allow_unauthenticated",
)
_TOP_KEYS = frozenset(
    [f.name for f in fields(ServerConfig) if f.name not in _SECTIONS]
    + [*_SECTIONS, *_SECURITY_TOP_KEYS]
)

#: The lower bound of a number field, where it is not "above 0" (floats) or "at least 1" (ints).
_AT_LEAST: Mapping[tuple[type, str], float] = {
    (Backoff, "initial_delay_s"): 0,
    (Backoff, "max_delay_s"): 0,
    (Backoff, "jitter_s"): 0,
    (Backoff, "multiplier"): 1,
    (ManagerSettings, "stable_after_s"): 0,
    (ManagerSettings, "restore_jitter_s"): 0,
    (ServerConfig, "shutdown_grace_s"): 0,
    (SecuritySettings, "max_message_bytes"): 4096,
    (MessageSettings, "max_per_minute"): 0,
}
#: `[security]` holds the scalar fields of SecuritySettings except these (top-level keys).
_SECURITY_SECTION_EXCLUDES = ("allow_unauthenticated",)


def load_config(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> ServerConfig:
    """Reads `path` (TOML) and applies `overrides` (flags and environment, already merged;
    None values are not given)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as error:
            raise ConfigError(f"--config: cannot read {path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--config: {path} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"--config: {path} is not valid TOML: {error}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return config_from_mapping(data)


def config_from_mapping(data: Mapping[str, Any]) -> ServerConfig:
    """The configuration a TOML-shaped mapping describes."""
    only_keys(data, _TOP_KEYS, "")
    given: dict[str, Any] = {}
    if "listen" in data:
        given["listen"] = address(data["listen"], "listen")
    if "engine" in data:
        given["engine"] = choice(data["engine"], KNOWN_ENGINES, "engine")
    if "data_dir" in data:
        given["data_dir"] = Path(text(data["data_dir"], "data_dir"))
    if "shutdown_grace_s" in data:
        given["shutdown_grace_s"] = _scalar(
            ServerConfig, "shutdown_grace_s", float, data["shutdown_grace_s"], ""
        )
    base = ServerConfig(**given)
    # NOTE: the default engine of new sessions is `ServerConfig.engine` alone; the server
    # wiring hands it to the session registry (ManagerSettings holds no engine).
    manager = ManagerSettings(
        policy=policy_from_mapping(section(data, "policy")),
        qr=QrSchedule(**scalar_fields(QrSchedule, section(data, "qr"), "qr")),
        **scalar_fields(ManagerSettings, section(data, "manager"), "manager"),
    )
    journal = JournalSettings(**scalar_fields(JournalSettings, section(data, "journal"), "journal"))
    messages = MessageSettings(
        **scalar_fields(MessageSettings, section(data, "messages"), "messages")
    )
    if messages.default_ttl_s > messages.retention_s:
        raise ConfigError(
            "messages.default_ttl_s must be at most the retention (messages.retention_days)"
        )
    return replace(
        base,
        engines=_engines(data.get("engines"), base.engine),
        manager=manager,
        journal=journal,
        messages=messages,
        security=_security(data, base.listen),
    )


def policy_from_mapping(spec: Mapping[str, Any], where: str = "policy") -> ReconnectPolicy:
    """The reconnect policy of `[policy]`: `[policy.default]` over `DEFAULT_RULE`, and each
    `[policy.codes.N]` over the built-in row of N (see `DEFAULT_ROWS`) and the default."""
    only_keys(spec, ("default", "codes"), where)
    row = _row(spec.get("default", {}), f"{where}.default")
    default = CodeRule(
        None,
        row.get("action", DEFAULT_RULE.action),
        row.get("required_action", DEFAULT_RULE.required_action),
        replace(DEFAULT_RULE.backoff, **{k: row[k] for k in BACKOFF_KEYS if k in row}),
    )
    rows = {code: dict(built_in) for code, built_in in DEFAULT_ROWS.items()}
    for key, value in section(spec, "codes", where).items():
        row_where = f"{where}.codes.{key}"
        code = _code(key, row_where)
        row = _row(value, row_where)
        if "action" in row:
            # NOTE: a new action resets the built-in row, so 401's SCAN_QR does not leak onto
            # an operator's `action = "reconnect"`.
            rows[code] = row
        else:
            rows.setdefault(code, {}).update(row)
    policy = build_policy(default, rows)
    for rule in (policy.default, *policy.rules.values()):
        rule_where = f"{where}.default" if rule.code is None else f"{where}.codes.{rule.code}"
        if rule.backoff.max_delay_s < rule.backoff.initial_delay_s:
            raise ConfigError(f"{rule_where}.max_delay_s: must not be below initial_delay_s")
    return policy


# --- the validators: each returns the typed value or raises ConfigError naming `where` ---

E = TypeVar("E", bound=enum.Enum)


def one_of(kind: type[E], value: Any, where: str) -> E:
    """The member of `kind` whose value is `value`."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(member.value) for member in kind)
        raise ConfigError(f"{where}: expected one of {choices}, got {value!r}") from None


def choice(value: Any, choices: Collection[str], where: str) -> str:
    """One of the strings `choices`."""
    if value not in choices:
        raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def number(value: Any, where: str, at_least: float | None = None) -> float:
    """A finite float or int (not a bool): above 0, or at least `at_least` if given."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if at_least is None and value <= 0:
        raise ConfigError(f"{where}: must be above 0, got {value!r}")
    if at_least is not None and value < at_least:
        raise ConfigError(f"{where}: must be at least {at_least:g}, got {value!r}")
    return float(value)


def whole(value: Any, where: str, at_least: int = 1) -> int:
    """An int (not a bool) of at least `at_least`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if value < at_least:
        raise ConfigError(f"{where}: must be at least {at_least}, got {value!r}")
    return value


def flag(value: Any, where: str) -> bool:
    """A bool, or (from the environment) 1/0, true/false, yes/no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def address(value: Any, where: str) -> str:
    """host:port, the port a number up to 65535 (0: any free port)."""
    host, _, port = text(value, where).rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{where}: expected host:port, got {value!r}")
    return str(value)


def file_path(value: Any, where: str) -> Path | None:
    """A file path; None and "" are not given."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a file path, got {value!r}")
    return Path(value)


def section(data: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    """The table `key` of `data` (empty if not given)."""
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_join(where, key)}: expected a table")
    return value


def only_keys(table: Mapping[str, Any], allowed: Collection[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{_join(where, str(key))}: unknown key (allowed: {', '.join(sorted(allowed))})"
            )


_SCALAR_TYPES: Mapping[object, type] = {
    bool: bool, "bool": bool, int: int, "int": int, float: float, "float": float,
}  # fmt: skip


def scalar_fields(
    cls: type, spec: Mapping[str, Any], where: str, exclude: Collection[str] = ()
) -> dict[str, Any]:
    """The values `spec` gives for the bool, int and float fields of the dataclass `cls` (its
    keys), validated by field type; keys not given keep the dataclass defaults."""
    kinds = {
        f.name: _SCALAR_TYPES[f.type]
        for f in fields(cls)
        if f.type in _SCALAR_TYPES and f.name not in exclude
    }
    only_keys(spec, kinds, where)
    return {key: _scalar(cls, key, kinds[key], value, where) for key, value in spec.items()}


def _scalar(cls: type, name: str, kind: type, value: Any, where: str) -> Any:
    key = _join(where, name)
    bound = _AT_LEAST.get((cls, name))
    if kind is bool:
        return flag(value, key)
    if kind is int:
        return whole(value, key, 1 if bound is None else int(bound))
    return number(value, key, bound)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# --- sections with more than scalar fields ---


def _row(value: Any, where: str) -> dict[str, Any]:
    """One policy row (`[policy.default]` or `[policy.codes.N]`), typed."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table")
    only_keys(value, ("action", "required_action", *BACKOFF_KEYS), where)
    timing = {k: v for k, v in value.items() if k in BACKOFF_KEYS}
    row: dict[str, Any] = scalar_fields(Backoff, timing, where)
    if "action" in value:
        row["action"] = one_of(Action, value["action"], f"{where}.action")
    if "required_action" in value:
        row["required_action"] = one_of(
            RequiredAction, value["required_action"], f"{where}.required_action"
        )
    return row


def _code(key: Any, where: str) -> int:
    try:
        code = int(key)
    except ValueError:
        raise ConfigError(f"{where}: a code must be a whole number") from None
    if not 100 <= code <= 999:
        raise ConfigError(f"{where}: a code must be between 100 and 999")
    return code


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


def _security(data: Mapping[str, Any], listen: str) -> SecuritySettings:
    """The top-level security keys and the `[security]` table."""
    given = scalar_fields(
        SecuritySettings, section(data, "security"), "security", _SECURITY_SECTION_EXCLUDES
    )
    if "allow_unauthenticated" in data:
        given["allow_unauthenticated"] = flag(
            data["allow_unauthenticated"], "allow_unauthenticated"
        )
    metrics = data.get("metrics_listen")
    if metrics is not None and metrics != "":
        given["metrics_listen"] = address(metrics, "metrics_listen")
    keys_file = file_path(data.get("api_keys_file"), "api_keys_file")
    if keys_file is not None:
        given["api_keys"] = _api_keys(keys_file)
    settings = SecuritySettings(tls=_tls(data), **given)
    if not settings.authenticates and not settings.allow_unauthenticated and not _loopback(listen):
        raise ConfigError(
            f"listen: {listen} is not a loopback address, and no API keys (api_keys_file) or "
            "client certificates (tls_client_ca) are configured; without them the server "
            "listens on loopback only (set allow_unauthenticated to override)"
        )
    return settings


def _api_keys(path: Path) -> ApiKeys:
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"api_keys_file: cannot read {path}: {error}") from None
    return parse_api_keys(content, f"api_keys_file {path}")


def _tls(data: Mapping[str, Any]) -> TlsFiles | None:
    cert = file_path(data.get("tls_cert"), "tls_cert")
    key = file_path(data.get("tls_key"), "tls_key")
    client_ca = file_path(data.get("tls_client_ca"), "tls_client_ca")
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError("tls_client_ca: needs tls_cert and tls_key")
        return None
    if cert is None or key is None:
        raise ConfigError("tls_cert and tls_key: give both or neither")
    return TlsFiles(
        cert=_pem(cert, "tls_cert"),
        key=_pem(key, "tls_key"),
        client_ca=_pem(client_ca, "tls_client_ca") if client_ca is not None else None,
    )


def _pem(path: Path, where: str) -> bytes:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {path}: {error.strerror}") from None
    if b"-----BEGIN" not in content:
        raise ConfigError(f"{where}: {path} is not a PEM file")
    return content


def _loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
