"""Plain typed values shared by every layer: a session's record and its parts.

These mirror the `wasessions.v1` messages but carry no gRPC or protobuf: the sessions, policy,
events and store layers speak only in these.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

SESSION_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
NAME_PREFIX = "sessions/"


class State(enum.Enum):
    STOPPED = "STOPPED"
    CONNECTING = "CONNECTING"
    QR_PENDING = "QR_PENDING"
    PAIRING = "PAIRING"
    CONNECTED = "CONNECTED"
    RECONNECTING = "RECONNECTING"
    LOGGED_OUT = "LOGGED_OUT"
    FAILED = "FAILED"

    @property
    def is_running(self) -> bool:
        """The session has a run loop working on it (it is neither stopped nor given up)."""
        return self not in (State.STOPPED, State.LOGGED_OUT, State.FAILED)


class RequiredAction(enum.Enum):
    NONE = "NONE"
    WAIT = "WAIT"
    SCAN_QR = "SCAN_QR"
    START_SESSION = "START_SESSION"
    CHECK_NETWORK = "CHECK_NETWORK"
    RESOLVE_CONFLICT = "RESOLVE_CONFLICT"
    CONTACT_SUPPORT = "CONTACT_SUPPORT"
    UPDATE_CLIENT = "UPDATE_CLIENT"


class Cause(enum.Enum):
    """What caused a change (mirrors `SessionChange.Cause`)."""

    CREATED = "CREATED"
    LABELS_UPDATED = "LABELS_UPDATED"
    STARTED = "STARTED"
    STOPPED_BY_REQUEST = "STOPPED_BY_REQUEST"
    LOGGED_OUT_BY_REQUEST = "LOGGED_OUT_BY_REQUEST"
    RELINK_REQUESTED = "RELINK_REQUESTED"
    RESTORED = "RESTORED"
    QR_SHOWN = "QR_SHOWN"
    PAIRED = "PAIRED"
    OPENED = "OPENED"
    CLOSED = "CLOSED"
    RETRY_STARTED = "RETRY_STARTED"
    RETRY_NOW_REQUESTED = "RETRY_NOW_REQUESTED"
    QR_ABANDONED = "QR_ABANDONED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Disconnect:
    code: int
    reason: str
    message: str
    time: float


@dataclass(frozen=True, slots=True)
class RetryProgress:
    attempt: int
    max_attempts: int
    next_attempt_time: float | None


@dataclass(frozen=True, slots=True)
class Account:
    jid: str
    phone_number: str
    push_name: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """Everything the service knows about one session, as last made durable."""

    session_id: str
    engine: str
    state: State = State.STOPPED
    required_action: RequiredAction = RequiredAction.NONE
    status_message: str = ""
    last_disconnect: Disconnect | None = None
    retry: RetryProgress | None = None
    has_credentials: bool = False
    account: Account | None = None
    labels: dict[str, str] = field(default_factory=dict)
    create_time: float = 0.0
    update_time: float = 0.0
    state_change_time: float = 0.0
    last_activity_time: float | None = None
    request_id: str = ""
    #: The proxy URL as given (it may hold a password: never shown, see `redacted_proxy`).
    proxy: str = ""

    @property
    def name(self) -> str:
        return NAME_PREFIX + self.session_id

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "engine": self.engine,
            "state": self.state.value,
            "required_action": self.required_action.value,
            "status_message": self.status_message,
            "last_disconnect": _dataclass_json(self.last_disconnect),
            "retry": _dataclass_json(self.retry),
            "has_credentials": self.has_credentials,
            "account": _dataclass_json(self.account),
            "labels": dict(self.labels),
            "create_time": self.create_time,
            "update_time": self.update_time,
            "state_change_time": self.state_change_time,
            "last_activity_time": self.last_activity_time,
            "request_id": self.request_id,
            "proxy": self.proxy,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionRecord:
        ld, retry, account = data.get("last_disconnect"), data.get("retry"), data.get("account")
        return cls(
            session_id=data["session_id"],
            engine=data["engine"],
            state=State(data["state"]),
            required_action=RequiredAction(data["required_action"]),
            status_message=data.get("status_message", ""),
            last_disconnect=Disconnect(**ld) if ld else None,
            retry=RetryProgress(**retry) if retry else None,
            has_credentials=bool(data.get("has_credentials", False)),
            account=Account(**account) if account else None,
            labels=dict(data.get("labels", {})),
            create_time=float(data.get("create_time", 0.0)),
            update_time=float(data.get("update_time", 0.0)),
            state_change_time=float(data.get("state_change_time", 0.0)),
            last_activity_time=data.get("last_activity_time"),
            request_id=data.get("request_id", ""),
            proxy=data.get("proxy", ""),
        )


def redact_proxy(url: str) -> str:
    """The proxy URL without its user and password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def _dataclass_json(value: Disconnect | RetryProgress | Account | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {name: getattr(value, name) for name in value.__slots__}


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One durable change: `record` is the session after it, or None when it was deleted.

    `before` is the session as it was before the change (None when it was created). It is not
    stored: only entries published live carry it; entries read back from the store have None.
    """

    seq: int
    session_id: str
    cause: Cause
    record: SessionRecord | None
    time: float
    before: SessionRecord | None = None
