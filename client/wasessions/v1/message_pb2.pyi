import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("name", "whatsapp_id", "chat", "sender", "direction", "status", "reply_to", "attempts", "error", "text", "reaction", "create_time", "update_time", "sent_time", "delivered_time", "read_time", "expire_time")
    class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DIRECTION_UNSPECIFIED: _ClassVar[Message.Direction]
        INBOUND: _ClassVar[Message.Direction]
        OUTBOUND: _ClassVar[Message.Direction]
    DIRECTION_UNSPECIFIED: Message.Direction
    INBOUND: Message.Direction
    OUTBOUND: Message.Direction
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Message.Status]
        QUEUED: _ClassVar[Message.Status]
        SENDING: _ClassVar[Message.Status]
        SENT: _ClassVar[Message.Status]
        DELIVERED: _ClassVar[Message.Status]
        READ: _ClassVar[Message.Status]
        PLAYED: _ClassVar[Message.Status]
        FAILED: _ClassVar[Message.Status]
        EXPIRED: _ClassVar[Message.Status]
        CANCELLED: _ClassVar[Message.Status]
        RECEIVED: _ClassVar[Message.Status]
    STATUS_UNSPECIFIED: Message.Status
    QUEUED: Message.Status
    SENDING: Message.Status
    SENT: Message.Status
    DELIVERED: Message.Status
    READ: Message.Status
    PLAYED: Message.Status
    FAILED: Message.Status
    EXPIRED: Message.Status
    CANCELLED: Message.Status
    RECEIVED: Message.Status
    class Error(_message.Message):
        __slots__ = ("code", "reason", "message")
        CODE_FIELD_NUMBER: _ClassVar[int]
        REASON_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_FIELD_NUMBER: _ClassVar[int]
        code: int
        reason: str
        message: str
        def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
    class Reaction(_message.Message):
        __slots__ = ("message", "emoji")
        MESSAGE_FIELD_NUMBER: _ClassVar[int]
        EMOJI_FIELD_NUMBER: _ClassVar[int]
        message: str
        emoji: str
        def __init__(self, message: _Optional[str] = ..., emoji: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    WHATSAPP_ID_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REACTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SENT_TIME_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_TIME_FIELD_NUMBER: _ClassVar[int]
    READ_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    whatsapp_id: str
    chat: str
    sender: str
    direction: Message.Direction
    status: Message.Status
    reply_to: str
    attempts: int
    error: Message.Error
    text: str
    reaction: Message.Reaction
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    sent_time: _timestamp_pb2.Timestamp
    delivered_time: _timestamp_pb2.Timestamp
    read_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., whatsapp_id: _Optional[str] = ..., chat: _Optional[str] = ..., sender: _Optional[str] = ..., direction: _Optional[_Union[Message.Direction, str]] = ..., status: _Optional[_Union[Message.Status, str]] = ..., reply_to: _Optional[str] = ..., attempts: _Optional[int] = ..., error: _Optional[_Union[Message.Error, _Mapping]] = ..., text: _Optional[str] = ..., reaction: _Optional[_Union[Message.Reaction, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., read_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
