"""The reconnect policy: one rule per disconnect code, each a small composable value."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from tenacity import wait_exponential, wait_random
from tenacity.wait import wait_base

from wasessions_server.errors import ConfigError
from wasessions_server.model import RequiredAction
from wasessions_server.policy import codes


class Action(enum.Enum):
    """What the service does after a close."""

    RECONNECT = "reconnect"  # exponential backoff with jitter, bounded attempts
    RESTART = "restart"  # at once, not counted as a failed attempt (515)
    FAIL = "fail"  # FAILED with the rule's required action; credentials kept
    LOGOUT = "logout"  # the link is gone: credentials wiped, LOGGED_OUT


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with additive jitter and a bounded number of attempts."""

    initial_delay_s: float = 1.0
    max_delay_s: float = 60.0
    multiplier: float = 2.0
    jitter_s: float = 1.0
    max_attempts: int = 8

    def wait(self) -> wait_base:
        """The tenacity wait strategy: initial * multiplier**(n-1), capped, plus jitter."""
        exponential = wait_exponential(
            multiplier=self.initial_delay_s, exp_base=self.multiplier, max=self.max_delay_s
        )
        return exponential + wait_random(0, self.jitter_s)

    @property
    def longest_wait_s(self) -> float:
        return self.max_delay_s + self.jitter_s


@dataclass(frozen=True, slots=True)
class CodeRule:
    """What a close with `code` leads to; `code` is None on the default rule."""

    code: int | None
    action: Action
    required_action: RequiredAction
    backoff: Backoff

    @property
    def reason(self) -> str:
        return "DEFAULT" if self.code is None else codes.reason_for(self.code)


@dataclass(frozen=True, slots=True)
class QrSchedule:
    """WhatsApp's QR pacing: the first code lives longer, then a fixed number of refreshes."""

    first_timeout_s: float = 60.0
    timeout_s: float = 20.0
    max_codes: int = 6

    def lifetime_s(self, index: int) -> float:
        """How long the code with 0-based `index` is shown."""
        return self.first_timeout_s if index == 0 else self.timeout_s


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """The whole table: a default rule and one rule per code."""

    default: CodeRule
    rules: Mapping[int, CodeRule] = field(default_factory=dict)

    def rule_for(self, code: int, message: str = "") -> CodeRule:
        if codes.is_qr_window_over(code, message):
            # NOTE: the QR window ending is not a network problem; retrying it would show QR
            # codes forever. It stops and asks for an explicit StartSession.
            return CodeRule(code, Action.FAIL, RequiredAction.START_SESSION, self.default.backoff)
        return self.rules.get(code, self.default)


# DESIGN.md's table, in the shape of the TOML configuration: a code row names only what differs
# from `[policy.default]` and inherits every other key from it.
DEFAULT_POLICY_SPEC: dict[str, Any] = {
    "default": {
        "action": "reconnect",
        "required_action": "START_SESSION",
        "initial_delay_s": 1.0,
        "max_delay_s": 60.0,
        "multiplier": 2.0,
        "jitter_s": 1.0,
        "max_attempts": 8,
    },
    "codes": {
        "515": {"action": "restart"},
        "503": {"action": "reconnect"},
        "428": {"action": "reconnect"},
        "408": {"action": "reconnect"},
        "500": {"action": "reconnect", "max_attempts": 3},
        "401": {"action": "logout", "required_action": "SCAN_QR"},
        "403": {"action": "fail", "required_action": "CONTACT_SUPPORT"},
        "402": {"action": "fail", "required_action": "CONTACT_SUPPORT"},
        "405": {"action": "fail", "required_action": "UPDATE_CLIENT"},
        "406": {"action": "fail", "required_action": "CONTACT_SUPPORT"},
        "411": {"action": "logout", "required_action": "SCAN_QR"},
        "440": {"action": "fail", "required_action": "RESOLVE_CONFLICT"},
    },
}

_DEFAULT_REQUIRED = {
    Action.RECONNECT: RequiredAction.START_SESSION,
    Action.RESTART: RequiredAction.START_SESSION,
    Action.FAIL: RequiredAction.START_SESSION,
    Action.LOGOUT: RequiredAction.SCAN_QR,
}
_TIMING_KEYS = ("initial_delay_s", "max_delay_s", "multiplier", "jitter_s", "max_attempts")
_ROW_KEYS = frozenset(("action", "required_action", *_TIMING_KEYS))


def policy_from_spec(spec: Mapping[str, Any], where: str = "policy") -> ReconnectPolicy:
    """Builds the table from a TOML-shaped mapping, merged over DESIGN.md's defaults.

    Raises ConfigError naming the offending key; nothing is applied half-way.
    """
    _only_keys(spec, {"default", "codes"}, where)
    default_row = {**DEFAULT_POLICY_SPEC["default"], **_table(spec, "default", where)}
    default = _build_rule(None, default_row, f"{where}.default")
    rows: dict[str, dict[str, Any]] = {k: dict(v) for k, v in DEFAULT_POLICY_SPEC["codes"].items()}
    for key, row in _table(spec, "codes", where).items():
        row_where = f"{where}.codes.{key}"
        if not isinstance(row, Mapping):
            raise ConfigError(f"{row_where}: expected a table")
        if "action" in row:
            # NOTE: a new action resets the built-in row, so 401's SCAN_QR does not leak onto
            # an operator's `action = "reconnect"`.
            rows[str(key)] = dict(row)
        else:
            rows.setdefault(str(key), {}).update(row)
    rules: dict[int, CodeRule] = {}
    for key, row in rows.items():
        row_where = f"{where}.codes.{key}"
        try:
            code = int(key)
        except ValueError:
            raise ConfigError(f"{row_where}: a code must be a whole number") from None
        if not 100 <= code <= 999:
            raise ConfigError(f"{row_where}: a code must be between 100 and 999")
        timing = {k: default_row[k] for k in _TIMING_KEYS}
        merged = {"action": default_row["action"], **timing, **row}
        rules[code] = _build_rule(code, merged, row_where)
    return ReconnectPolicy(default, MappingProxyType(dict(sorted(rules.items()))))


def default_policy() -> ReconnectPolicy:
    return policy_from_spec({})


def _table(spec: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = spec.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}.{key}: expected a table")
    return value


def _only_keys(table: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _build_rule(code: int | None, row: Mapping[str, Any], where: str) -> CodeRule:
    _only_keys(row, _ROW_KEYS, where)
    action = one_of(Action, row.get("action"), f"{where}.action")
    required_name = row.get("required_action")
    required = (
        _DEFAULT_REQUIRED[action]
        if required_name is None
        else one_of(RequiredAction, required_name, f"{where}.required_action")
    )
    backoff = Backoff(
        initial_delay_s=positive_float(
            row["initial_delay_s"], f"{where}.initial_delay_s", zero=True
        ),
        max_delay_s=positive_float(row["max_delay_s"], f"{where}.max_delay_s", zero=True),
        multiplier=positive_float(row["multiplier"], f"{where}.multiplier"),
        jitter_s=positive_float(row["jitter_s"], f"{where}.jitter_s", zero=True),
        max_attempts=positive_int(row["max_attempts"], f"{where}.max_attempts"),
    )
    if backoff.multiplier < 1:
        raise ConfigError(f"{where}.multiplier: must be at least 1")
    if backoff.max_delay_s < backoff.initial_delay_s:
        raise ConfigError(f"{where}.max_delay_s: must not be below initial_delay_s")
    return CodeRule(code, action, required, backoff)


E = TypeVar("E", bound=enum.Enum)


def one_of(kind: type[E], value: Any, where: str) -> E:
    """The member of `kind` whose value is `value`, or a ConfigError listing the choices."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(member.value) for member in kind)
        raise ConfigError(f"{where}: expected one of {choices}, got {value!r}") from None


def positive_float(value: Any, where: str, *, zero: bool = False) -> float:
    """A duration or factor: a float or an int (not a bool), > 0 (or >= 0 with `zero`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if value < 0 or (value == 0 and not zero) or value != value or value == float("inf"):
        raise ConfigError(f"{where}: must be {'at least 0' if zero else 'above 0'}, got {value!r}")
    return float(value)


def positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if value < 1:
        raise ConfigError(f"{where}: must be at least 1, got {value!r}")
    return value
