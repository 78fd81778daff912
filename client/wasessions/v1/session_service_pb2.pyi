import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from wasessions.v1 import session_pb2 as _session_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateSessionRequest(_message.Message):
    __slots__ = ("session_id", "labels", "engine", "skip_start", "request_id", "proxy")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    SKIP_START_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROXY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    labels: _containers.ScalarMap[str, str]
    engine: str
    skip_start: bool
    request_id: str
    proxy: str
    def __init__(self, session_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., engine: _Optional[str] = ..., skip_start: _Optional[bool] = ..., request_id: _Optional[str] = ..., proxy: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "states")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[_session_pb2.Session.State]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_session_pb2.Session.State, str]]] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_session_pb2.Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[_session_pb2.Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSessionRequest(_message.Message):
    __slots__ = ("name", "labels", "update_mask")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class StartSessionRequest(_message.Message):
    __slots__ = ("name", "relink")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RELINK_FIELD_NUMBER: _ClassVar[int]
    name: str
    relink: bool
    def __init__(self, name: _Optional[str] = ..., relink: _Optional[bool] = ...) -> None: ...

class StopSessionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class LogoutSessionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RequestPairingCodeRequest(_message.Message):
    __slots__ = ("name", "phone_number")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    name: str
    phone_number: str
    def __init__(self, name: _Optional[str] = ..., phone_number: _Optional[str] = ...) -> None: ...

class RequestPairingCodeResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class WatchSessionsRequest(_message.Message):
    __slots__ = ("names", "resume_token")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    resume_token: str
    def __init__(self, names: _Optional[_Iterable[str]] = ..., resume_token: _Optional[str] = ...) -> None: ...

class WatchSessionsResponse(_message.Message):
    __slots__ = ("resume_token", "snapshot", "snapshot_complete", "change", "deleted", "heartbeat", "resync")
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    resume_token: str
    snapshot: _session_pb2.Session
    snapshot_complete: SnapshotComplete
    change: SessionChange
    deleted: SessionDeleted
    heartbeat: Heartbeat
    resync: Resync
    def __init__(self, resume_token: _Optional[str] = ..., snapshot: _Optional[_Union[_session_pb2.Session, _Mapping]] = ..., snapshot_complete: _Optional[_Union[SnapshotComplete, _Mapping]] = ..., change: _Optional[_Union[SessionChange, _Mapping]] = ..., deleted: _Optional[_Union[SessionDeleted, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., resync: _Optional[_Union[Resync, _Mapping]] = ...) -> None: ...

class SnapshotComplete(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionChange(_message.Message):
    __slots__ = ("session", "cause")
    class Cause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CAUSE_UNSPECIFIED: _ClassVar[SessionChange.Cause]
        CREATED: _ClassVar[SessionChange.Cause]
        LABELS_UPDATED: _ClassVar[SessionChange.Cause]
        STARTED: _ClassVar[SessionChange.Cause]
        STOPPED_BY_REQUEST: _ClassVar[SessionChange.Cause]
        LOGGED_OUT_BY_REQUEST: _ClassVar[SessionChange.Cause]
        RELINK_REQUESTED: _ClassVar[SessionChange.Cause]
        RESTORED: _ClassVar[SessionChange.Cause]
        QR_SHOWN: _ClassVar[SessionChange.Cause]
        PAIRED: _ClassVar[SessionChange.Cause]
        OPENED: _ClassVar[SessionChange.Cause]
        CLOSED: _ClassVar[SessionChange.Cause]
        RETRY_STARTED: _ClassVar[SessionChange.Cause]
        RETRY_NOW_REQUESTED: _ClassVar[SessionChange.Cause]
        QR_ABANDONED: _ClassVar[SessionChange.Cause]
    CAUSE_UNSPECIFIED: SessionChange.Cause
    CREATED: SessionChange.Cause
    LABELS_UPDATED: SessionChange.Cause
    STARTED: SessionChange.Cause
    STOPPED_BY_REQUEST: SessionChange.Cause
    LOGGED_OUT_BY_REQUEST: SessionChange.Cause
    RELINK_REQUESTED: SessionChange.Cause
    RESTORED: SessionChange.Cause
    QR_SHOWN: SessionChange.Cause
    PAIRED: SessionChange.Cause
    OPENED: SessionChange.Cause
    CLOSED: SessionChange.Cause
    RETRY_STARTED: SessionChange.Cause
    RETRY_NOW_REQUESTED: SessionChange.Cause
    QR_ABANDONED: SessionChange.Cause
    SESSION_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    cause: SessionChange.Cause
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ..., cause: _Optional[_Union[SessionChange.Cause, str]] = ...) -> None: ...

class SessionDeleted(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time",)
    TIME_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Resync(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class WatchQrCodesRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class QrCode(_message.Message):
    __slots__ = ("value", "expire_time", "outcome", "sequence")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[QrCode.Outcome]
        PAIRED: _ClassVar[QrCode.Outcome]
        EXPIRED: _ClassVar[QrCode.Outcome]
        STOPPED: _ClassVar[QrCode.Outcome]
    OUTCOME_UNSPECIFIED: QrCode.Outcome
    PAIRED: QrCode.Outcome
    EXPIRED: QrCode.Outcome
    STOPPED: QrCode.Outcome
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    value: str
    expire_time: _timestamp_pb2.Timestamp
    outcome: QrCode.Outcome
    sequence: int
    def __init__(self, value: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[QrCode.Outcome, str]] = ..., sequence: _Optional[int] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Policy(_message.Message):
    __slots__ = ("default_rule", "rules", "qr", "connect_rate", "stable_after")
    DEFAULT_RULE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    QR_FIELD_NUMBER: _ClassVar[int]
    CONNECT_RATE_FIELD_NUMBER: _ClassVar[int]
    STABLE_AFTER_FIELD_NUMBER: _ClassVar[int]
    default_rule: PolicyRule
    rules: _containers.RepeatedCompositeFieldContainer[PolicyRule]
    qr: QrSchedule
    connect_rate: float
    stable_after: _duration_pb2.Duration
    def __init__(self, default_rule: _Optional[_Union[PolicyRule, _Mapping]] = ..., rules: _Optional[_Iterable[_Union[PolicyRule, _Mapping]]] = ..., qr: _Optional[_Union[QrSchedule, _Mapping]] = ..., connect_rate: _Optional[float] = ..., stable_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class PolicyRule(_message.Message):
    __slots__ = ("code", "reason", "action", "required_action", "initial_delay", "max_delay", "multiplier", "jitter", "max_attempts")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[PolicyRule.Action]
        RECONNECT: _ClassVar[PolicyRule.Action]
        RESTART: _ClassVar[PolicyRule.Action]
        FAIL: _ClassVar[PolicyRule.Action]
        LOGOUT: _ClassVar[PolicyRule.Action]
    ACTION_UNSPECIFIED: PolicyRule.Action
    RECONNECT: PolicyRule.Action
    RESTART: PolicyRule.Action
    FAIL: PolicyRule.Action
    LOGOUT: PolicyRule.Action
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_ACTION_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    action: PolicyRule.Action
    required_action: _session_pb2.Session.RequiredAction
    initial_delay: _duration_pb2.Duration
    max_delay: _duration_pb2.Duration
    multiplier: float
    jitter: _duration_pb2.Duration
    max_attempts: int
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., action: _Optional[_Union[PolicyRule.Action, str]] = ..., required_action: _Optional[_Union[_session_pb2.Session.RequiredAction, str]] = ..., initial_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., multiplier: _Optional[float] = ..., jitter: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class QrSchedule(_message.Message):
    __slots__ = ("first_timeout", "timeout", "max_codes")
    FIRST_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_CODES_FIELD_NUMBER: _ClassVar[int]
    first_timeout: _duration_pb2.Duration
    timeout: _duration_pb2.Duration
    max_codes: int
    def __init__(self, first_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_codes: _Optional[int] = ...) -> None: ...
