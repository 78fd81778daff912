"""The changes a session's record goes through, one small typed value each.

Each transition names the fields it sets, so a misspelt field is a type error rather than a
silently wrong record; `apply` returns the record after it, stamped with the time of the change
and what the engine says is stored (one copy of the record per change: a storm makes thousands).
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

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord: ...


def _moved(
    record: SessionRecord,
    now: float,
    has_credentials: bool,
    state: State,
    required_action: RequiredAction,
    status_message: str,
    *,
    retry: RetryProgress | None = None,
    disconnect: Disconnect | None = None,
    account: Account | None = None,
    forget_account: bool = False,
) -> SessionRecord:
    """`record` in `state`; the last disconnect and the account are kept unless given (or
    `forget_account`), the retry progress is cleared unless given."""
    return dataclasses.replace(
        record,
        update_time=now,
        has_credentials=has_credentials,
        state_change_time=now if state is not record.state else record.state_change_time,
        state=state,
        required_action=required_action,
        retry=retry,
        status_message=status_message,
        last_disconnect=disconnect or record.last_disconnect,
        account=None if forget_account else account or record.account,
    )


@dataclass(frozen=True, slots=True)
class Created:
    cause: Cause = Cause.CREATED

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        return dataclasses.replace(record, update_time=now, has_credentials=has_credentials)


@dataclass(frozen=True, slots=True)
class LabelsSet:
    labels: Mapping[str, str]
    cause: Cause = Cause.LABELS_UPDATED

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        return dataclasses.replace(
            record, labels=dict(self.labels), update_time=now, has_credentials=has_credentials
        )


@dataclass(frozen=True, slots=True)
class Connecting:
    """Started, restarted by request, restored, or relinked (which forgets the account)."""

    cause: Cause
    status_message: str = "Connecting."
    forget_account: bool = False

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        return _moved(
            record,
            now,
            has_credentials,
            State.CONNECTING,
            RequiredAction.NONE,
            self.status_message,
            forget_account=self.forget_account,
        )


@dataclass(frozen=True, slots=True)
class Restarting:
    """WhatsApp asked for a restart (515): reconnecting at once."""

    disconnect: Disconnect
    cause: Cause = Cause.CLOSED

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        message = f"WhatsApp asked for a restart ({self.disconnect.code}); reconnecting."
        return _moved(
            record,
            now,
            has_credentials,
            State.CONNECTING,
            RequiredAction.NONE,
            message,
            disconnect=self.disconnect,
        )


@dataclass(frozen=True, slots=True)
class Stopped:
    cause: Cause
    status_message: str
    required_action: RequiredAction = RequiredAction.NONE

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        return _moved(
            record, now, has_credentials, State.STOPPED, self.required_action, self.status_message
        )


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The link is gone (by request or by WhatsApp): credentials wiped, account forgotten."""

    cause: Cause
    required_action: RequiredAction
    status_message: str
    disconnect: Disconnect | None = None

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        return _moved(
            record,
            now,
            has_credentials,
            State.LOGGED_OUT,
            self.required_action,
            self.status_message,
            disconnect=self.disconnect,
            forget_account=True,
        )


@dataclass(frozen=True, slots=True)
class Failed:
    required_action: RequiredAction
    status_message: str
    disconnect: Disconnect | None = None
    retry: RetryProgress | None = None
    cause: Cause = Cause.CLOSED

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        return _moved(
            record,
            now,
            has_credentials,
            State.FAILED,
            self.required_action,
            self.status_message,
            disconnect=self.disconnect,
            retry=self.retry,
        )


@dataclass(frozen=True, slots=True)
class QrShown:
    cause: Cause = Cause.QR_SHOWN

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        message = "Scan the QR code (WatchQrCodes) or request a pairing code."
        return _moved(
            record, now, has_credentials, State.QR_PENDING, RequiredAction.SCAN_QR, message
        )


@dataclass(frozen=True, slots=True)
class Paired:
    account: Account
    cause: Cause = Cause.PAIRED

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        message = "Linked; waiting for WhatsApp's restart (515)."
        return _moved(
            record,
            now,
            has_credentials,
            State.PAIRING,
            RequiredAction.WAIT,
            message,
            account=self.account,
        )


@dataclass(frozen=True, slots=True)
class Connected:
    account: Account
    cause: Cause = Cause.OPENED

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        return _moved(
            record,
            now,
            has_credentials,
            State.CONNECTED,
            RequiredAction.NONE,
            "Connected.",
            account=self.account,
        )


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """Closed; the next attempt comes after a backoff."""

    disconnect: Disconnect
    required_action: RequiredAction
    retry: RetryProgress
    status_message: str
    cause: Cause = Cause.CLOSED

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        return _moved(
            record,
            now,
            has_credentials,
            State.RECONNECTING,
            self.required_action,
            self.status_message,
            disconnect=self.disconnect,
            retry=self.retry,
        )


@dataclass(frozen=True, slots=True)
class RetryStarted:
    """The backoff is over: retry `attempt` is connecting."""

    attempt: int
    max_attempts: int
    cause: Cause = Cause.RETRY_STARTED

    def apply(self, record: SessionRecord, now: float, has_credentials: bool) -> SessionRecord:
        return _moved(
            record,
            now,
            has_credentials,
            State.RECONNECTING,
            record.required_action,
            f"Retry {self.attempt}: connecting.",
            retry=RetryProgress(self.attempt, self.max_attempts, None),
        )
