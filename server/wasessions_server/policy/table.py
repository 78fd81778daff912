"""The reconnect policy: one rule per disconnect code, each a small composable value."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from tenacity import wait_exponential, wait_random
from tenacity.wait import wait_base

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
    #: Retries before giving up; for a RESTART rule, also the restarts in a row.
    max_attempts: int = 8

    def wait(self) -> wait_base:
        """The tenacity wait strategy: initial * multiplier**(n-1), capped, plus jitter."""
        exponential = wait_exponential(
            multiplier=self.initial_delay_s, exp_base=self.multiplier, max=self.max_delay_s
        )
        return exponential + wait_random(0, self.jitter_s)


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


#: The required action of a code row that names none, by its action.
DEFAULT_REQUIRED: Mapping[Action, RequiredAction] = MappingProxyType(
    {
        Action.RECONNECT: RequiredAction.START_SESSION,
        Action.RESTART: RequiredAction.START_SESSION,
        Action.FAIL: RequiredAction.START_SESSION,
        Action.LOGOUT: RequiredAction.SCAN_QR,
    }
)

#: The rule for codes without a row: reconnect with `Backoff()`'s timing.
DEFAULT_RULE = CodeRule(None, Action.RECONNECT, RequiredAction.START_SESSION, Backoff())

#: DESIGN.md's table, in the shape of the TOML configuration (`[policy.codes.N]`, values
#: typed): a code row names only what differs from the default rule and inherits every other
#: key from it, also from a configured `[policy.default]`.
DEFAULT_ROWS: Mapping[int, Mapping[str, Any]] = MappingProxyType(
    {
        # NOTE: for RESTART, max_attempts bounds the restarts in a row (a server that asks
        # for a restart after every connect must not be obeyed forever).
        codes.RESTART_REQUIRED: {"action": Action.RESTART, "max_attempts": 5},
        codes.SERVICE_UNAVAILABLE: {"action": Action.RECONNECT},
        codes.CONNECTION_CLOSED: {"action": Action.RECONNECT},
        codes.CONNECTION_LOST: {"action": Action.RECONNECT},
        codes.BAD_SESSION: {"action": Action.RECONNECT, "max_attempts": 3},
        codes.LOGGED_OUT: {"action": Action.LOGOUT, "required_action": RequiredAction.SCAN_QR},
        codes.FORBIDDEN: {"action": Action.FAIL, "required_action": RequiredAction.CONTACT_SUPPORT},
        codes.TEMPORARILY_BANNED: {
            "action": Action.FAIL,
            "required_action": RequiredAction.CONTACT_SUPPORT,
        },
        codes.CLIENT_OUTDATED: {
            "action": Action.FAIL,
            "required_action": RequiredAction.UPDATE_CLIENT,
        },
        codes.BANNED: {"action": Action.FAIL, "required_action": RequiredAction.CONTACT_SUPPORT},
        codes.MULTIDEVICE_MISMATCH: {
            "action": Action.LOGOUT,
            "required_action": RequiredAction.SCAN_QR,
        },
        codes.CONNECTION_REPLACED: {
            "action": Action.FAIL,
            "required_action": RequiredAction.RESOLVE_CONFLICT,
        },
    }
)

#: The keys of a row that set its `Backoff` (the timing keys).
BACKOFF_KEYS = tuple(f.name for f in fields(Backoff))


def build_policy(default: CodeRule, rows: Mapping[int, Mapping[str, Any]]) -> ReconnectPolicy:
    """The table: each row (typed values, keys as in `DEFAULT_ROWS`) over `default`.

    A row without `action` takes the default's; without `required_action`, its action's
    `DEFAULT_REQUIRED`; every timing key it does not name, the default's.
    """
    rules: dict[int, CodeRule] = {}
    for code, row in rows.items():
        action: Action = row.get("action", default.action)
        required: RequiredAction = row.get("required_action", DEFAULT_REQUIRED[action])
        timing = {key: row[key] for key in BACKOFF_KEYS if key in row}
        rules[code] = CodeRule(code, action, required, replace(default.backoff, **timing))
    return ReconnectPolicy(default, MappingProxyType(dict(sorted(rules.items()))))


def default_policy() -> ReconnectPolicy:
    return build_policy(DEFAULT_RULE, DEFAULT_ROWS)
