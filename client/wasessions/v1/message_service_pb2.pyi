import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from wasessions.v1 import message_pb2 as _message_pb2
from wasessions.v1 import session_service_pb2 as _session_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SendMessageRequest(_message.Message):
    __slots__ = ("parent", "to", "reply_to", "request_id", "ttl", "text", "reaction")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REACTION_FIELD_NUMBER: _ClassVar[int]
    parent: str
    to: str
    reply_to: str
    request_id: str
    ttl: _duration_pb2.Duration
    text: str
    reaction: _message_pb2.Message.Reaction
    def __init__(self, parent: _Optional[str] = ..., to: _Optional[str] = ..., reply_to: _Optional[str] = ..., request_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., text: _Optional[str] = ..., reaction: _Optional[_Union[_message_pb2.Message.Reaction, _Mapping]] = ...) -> None: ...

class GetMessageRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListMessagesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "chat", "direction", "statuses")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    chat: str
    direction: _message_pb2.Message.Direction
    statuses: _containers.RepeatedScalarFieldContainer[_message_pb2.Message.Status]
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., chat: _Optional[str] = ..., direction: _Optional[_Union[_message_pb2.Message.Direction, str]] = ..., statuses: _Optional[_Iterable[_Union[_message_pb2.Message.Status, str]]] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_message_pb2.Message]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[_message_pb2.Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelMessageRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class MarkReadRequest(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, messages: _Optional[_Iterable[str]] = ...) -> None: ...

class MarkReadResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_message_pb2.Message]
    def __init__(self, messages: _Optional[_Iterable[_Union[_message_pb2.Message, _Mapping]]] = ...) -> None: ...

class WatchMessagesRequest(_message.Message):
    __slots__ = ("parent", "resume_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    resume_token: str
    def __init__(self, parent: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...

class WatchMessagesResponse(_message.Message):
    __slots__ = ("resume_token", "started", "event", "heartbeat", "resync")
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    resume_token: str
    started: WatchMessagesStarted
    event: MessageEvent
    heartbeat: _session_service_pb2.Heartbeat
    resync: _session_service_pb2.Resync
    def __init__(self, resume_token: _Optional[str] = ..., started: _Optional[_Union[WatchMessagesStarted, _Mapping]] = ..., event: _Optional[_Union[MessageEvent, _Mapping]] = ..., heartbeat: _Optional[_Union[_session_service_pb2.Heartbeat, _Mapping]] = ..., resync: _Optional[_Union[_session_service_pb2.Resync, _Mapping]] = ...) -> None: ...

class WatchMessagesStarted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MessageEvent(_message.Message):
    __slots__ = ("type", "message")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[MessageEvent.Type]
        RECEIVED: _ClassVar[MessageEvent.Type]
        QUEUED: _ClassVar[MessageEvent.Type]
        STATUS_CHANGED: _ClassVar[MessageEvent.Type]
    TYPE_UNSPECIFIED: MessageEvent.Type
    RECEIVED: MessageEvent.Type
    QUEUED: MessageEvent.Type
    STATUS_CHANGED: MessageEvent.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: MessageEvent.Type
    message: _message_pb2.Message
    def __init__(self, type: _Optional[_Union[MessageEvent.Type, str]] = ..., message: _Optional[_Union[_message_pb2.Message, _Mapping]] = ...) -> None: ...
