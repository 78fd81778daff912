import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Session(_message.Message):
    __slots__ = ("name", "state", "required_action", "status_message", "last_disconnect", "retry", "has_credentials", "account", "labels", "engine", "create_time", "update_time", "state_change_time", "last_activity_time", "proxy")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Session.State]
        STOPPED: _ClassVar[Session.State]
        CONNECTING: _ClassVar[Session.State]
        QR_PENDING: _ClassVar[Session.State]
        PAIRING: _ClassVar[Session.State]
        CONNECTED: _ClassVar[Session.State]
        RECONNECTING: _ClassVar[Session.State]
        LOGGED_OUT: _ClassVar[Session.State]
        FAILED: _ClassVar[Session.State]
    STATE_UNSPECIFIED: Session.State
    STOPPED: Session.State
    CONNECTING: Session.State
    QR_PENDING: Session.State
    PAIRING: Session.State
    CONNECTED: Session.State
    RECONNECTING: Session.State
    LOGGED_OUT: Session.State
    FAILED: Session.State
    class RequiredAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REQUIRED_ACTION_UNSPECIFIED: _ClassVar[Session.RequiredAction]
        NONE: _ClassVar[Session.RequiredAction]
        WAIT: _ClassVar[Session.RequiredAction]
        SCAN_QR: _ClassVar[Session.RequiredAction]
        START_SESSION: _ClassVar[Session.RequiredAction]
        CHECK_NETWORK: _ClassVar[Session.RequiredAction]
        RESOLVE_CONFLICT: _ClassVar[Session.RequiredAction]
        CONTACT_SUPPORT: _ClassVar[Session.RequiredAction]
        UPDATE_CLIENT: _ClassVar[Session.RequiredAction]
    REQUIRED_ACTION_UNSPECIFIED: Session.RequiredAction
    NONE: Session.RequiredAction
    WAIT: Session.RequiredAction
    SCAN_QR: Session.RequiredAction
    START_SESSION: Session.RequiredAction
    CHECK_NETWORK: Session.RequiredAction
    RESOLVE_CONFLICT: Session.RequiredAction
    CONTACT_SUPPORT: Session.RequiredAction
    UPDATE_CLIENT: Session.RequiredAction
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_ACTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    HAS_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_TIME_FIELD_NUMBER: _ClassVar[int]
    PROXY_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: Session.State
    required_action: Session.RequiredAction
    status_message: str
    last_disconnect: Disconnect
    retry: RetryProgress
    has_credentials: bool
    account: Account
    labels: _containers.ScalarMap[str, str]
    engine: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    state_change_time: _timestamp_pb2.Timestamp
    last_activity_time: _timestamp_pb2.Timestamp
    proxy: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[Session.State, str]] = ..., required_action: _Optional[_Union[Session.RequiredAction, str]] = ..., status_message: _Optional[str] = ..., last_disconnect: _Optional[_Union[Disconnect, _Mapping]] = ..., retry: _Optional[_Union[RetryProgress, _Mapping]] = ..., has_credentials: _Optional[bool] = ..., account: _Optional[_Union[Account, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., engine: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_activity_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., proxy: _Optional[str] = ...) -> None: ...

class Disconnect(_message.Message):
    __slots__ = ("code", "reason", "message", "time")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    message: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RetryProgress(_message.Message):
    __slots__ = ("attempt", "max_attempts", "next_attempt_time")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    max_attempts: int
    next_attempt_time: _timestamp_pb2.Timestamp
    def __init__(self, attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("jid", "phone_number", "push_name")
    JID_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PUSH_NAME_FIELD_NUMBER: _ClassVar[int]
    jid: str
    phone_number: str
    push_name: str
    def __init__(self, jid: _Optional[str] = ..., phone_number: _Optional[str] = ..., push_name: _Optional[str] = ...) -> None: ...
