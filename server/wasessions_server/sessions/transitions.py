"""The changes a session's record goes through, one small typed value each.

Each transition names the fields it sets, so a misspelt field is a type error rather than a
silently wrong record; `apply` returns the record after it (times are set by the session).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from wasessions_server.model import (
    Account,
    Cause,
    Disconnect,
    RequiredAction,
    RetryProgress,
    SessionRecord,
    State,
)


class Transition(Protocol):
    @property
    def cause(self) -> Cause: ...

    def apply(self, record: SessionRecord) -> SessionRecord: ...


@dataclass(frozen=True, slots=True)
class Created:
    cause: Cause = Cause.CREATED

    def apply(self, record: SessionRecord) -> SessionRecord:
        return record


@dataclass(frozen=True, slots=True)
class LabelsSet:
    labels: Mapping[str, str]
    cause: Cause = Cause.LABELS_UPDATED

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(record, labels=dict(self.labels))


@dataclass(frozen=True, slots=True)
class Connecting:
    """Started, restarted by request, restored, or relinked (which forgets the account)."""

    cause: Cause
    status_message: str = "Connecting."
    forget_account: bool = False

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.CONNECTING,
            required_action=RequiredAction.NONE,
            retry=None,
            account=None if self.forget_account else record.account,
            status_message=self.status_message,
        )


@dataclass(frozen=True, slots=True)
class Restarting:
    """WhatsApp asked for a restart (515): reconnecting at once."""

    disconnect: Disconnect
    cause: Cause = Cause.CLOSED

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.CONNECTING,
            required_action=RequiredAction.NONE,
            last_disconnect=self.disconnect,
            retry=None,
            status_message=f"WhatsApp asked for a restart ({self.disconnect.code}); reconnecting.",
        )


@dataclass(frozen=True, slots=True)
class Stopped:
    cause: Cause
    status_message: str
    required_action: RequiredAction = RequiredAction.NONE

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.STOPPED,
            required_action=self.required_action,
            retry=None,
            status_message=self.status_message,
        )


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The link is gone (by request or by WhatsApp): credentials wiped, account forgotten."""

    cause: Cause
    required_action: RequiredAction
    status_message: str
    disconnect: Disconnect | None = None

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.LOGGED_OUT,
            required_action=self.required_action,
            last_disconnect=self.disconnect or record.last_disconnect,
            retry=None,
            account=None,
            status_message=self.status_message,
        )


@dataclass(frozen=True, slots=True)
class Failed:
    required_action: RequiredAction
    status_message: str
    disconnect: Disconnect | None = None
    retry: RetryProgress | None = None
    cause: Cause = Cause.CLOSED

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.FAILED,
            required_action=self.required_action,
            last_disconnect=self.disconnect or record.last_disconnect,
            retry=self.retry,
            status_message=self.status_message,
        )


@dataclass(frozen=True, slots=True)
class QrShown:
    cause: Cause = Cause.QR_SHOWN

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.QR_PENDING,
            required_action=RequiredAction.SCAN_QR,
            retry=None,
            status_message="Scan the QR code (WatchQrCodes) or request a pairing code.",
        )


@dataclass(frozen=True, slots=True)
class Paired:
    account: Account
    cause: Cause = Cause.PAIRED

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.PAIRING,
            required_action=RequiredAction.WAIT,
            account=self.account,
            status_message="Linked; waiting for WhatsApp's restart (515).",
        )


@dataclass(frozen=True, slots=True)
class Connected:
    account: Account
    cause: Cause = Cause.OPENED

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.CONNECTED,
            required_action=RequiredAction.NONE,
            account=self.account,
            retry=None,
            status_message="Connected.",
        )


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """Closed; the next attempt comes after a backoff."""

    disconnect: Disconnect
    required_action: RequiredAction
    retry: RetryProgress
    status_message: str
    cause: Cause = Cause.CLOSED

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.RECONNECTING,
            required_action=self.required_action,
            last_disconnect=self.disconnect,
            retry=self.retry,
            status_message=self.status_message,
        )


@dataclass(frozen=True, slots=True)
class RetryStarted:
    """The backoff is over: retry `attempt` is connecting."""

    attempt: int
    max_attempts: int
    cause: Cause = Cause.RETRY_STARTED

    def apply(self, record: SessionRecord) -> SessionRecord:
        return dataclasses.replace(
            record,
            state=State.RECONNECTING,
            retry=RetryProgress(self.attempt, self.max_attempts, None),
            status_message=f"Retry {self.attempt}: connecting.",
        )
