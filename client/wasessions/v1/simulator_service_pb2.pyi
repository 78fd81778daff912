from wasessions.v1 import message_pb2 as _message_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScanQrCodeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ScanQrCodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EnterPairingCodeRequest(_message.Message):
    __slots__ = ("name", "code")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    code: str
    def __init__(self, name: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class EnterPairingCodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InjectDisconnectRequest(_message.Message):
    __slots__ = ("name", "code", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    code: int
    message: str
    def __init__(self, name: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class InjectDisconnectResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetNetworkRequest(_message.Message):
    __slots__ = ("reachable",)
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    reachable: bool
    def __init__(self, reachable: _Optional[bool] = ...) -> None: ...

class SetNetworkResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetNetworkStatsRequest(_message.Message):
    __slots__ = ("reset",)
    RESET_FIELD_NUMBER: _ClassVar[int]
    reset: bool
    def __init__(self, reset: _Optional[bool] = ...) -> None: ...

class GetNetworkStatsResponse(_message.Message):
    __slots__ = ("connects", "peak_connects_per_second")
    CONNECTS_FIELD_NUMBER: _ClassVar[int]
    PEAK_CONNECTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    connects: int
    peak_connects_per_second: int
    def __init__(self, connects: _Optional[int] = ..., peak_connects_per_second: _Optional[int] = ...) -> None: ...

class ReceiveMessageRequest(_message.Message):
    __slots__ = ("name", "sender", "text", "whatsapp_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    WHATSAPP_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    sender: str
    text: str
    whatsapp_id: str
    def __init__(self, name: _Optional[str] = ..., sender: _Optional[str] = ..., text: _Optional[str] = ..., whatsapp_id: _Optional[str] = ...) -> None: ...

class ReceiveMessageResponse(_message.Message):
    __slots__ = ("whatsapp_id",)
    WHATSAPP_ID_FIELD_NUMBER: _ClassVar[int]
    whatsapp_id: str
    def __init__(self, whatsapp_id: _Optional[str] = ...) -> None: ...

class AcknowledgeMessageRequest(_message.Message):
    __slots__ = ("name", "status")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: _message_pb2.Message.Status
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[_message_pb2.Message.Status, str]] = ...) -> None: ...

class AcknowledgeMessageResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InjectSendFailureRequest(_message.Message):
    __slots__ = ("name", "kind", "message", "count")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[InjectSendFailureRequest.Kind]
        REJECT: _ClassVar[InjectSendFailureRequest.Kind]
        DROP_CONNECTION: _ClassVar[InjectSendFailureRequest.Kind]
        DROP_AFTER_ACCEPT: _ClassVar[InjectSendFailureRequest.Kind]
    KIND_UNSPECIFIED: InjectSendFailureRequest.Kind
    REJECT: InjectSendFailureRequest.Kind
    DROP_CONNECTION: InjectSendFailureRequest.Kind
    DROP_AFTER_ACCEPT: InjectSendFailureRequest.Kind
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: InjectSendFailureRequest.Kind
    message: str
    count: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[InjectSendFailureRequest.Kind, str]] = ..., message: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class InjectSendFailureResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDeliveredRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListDeliveredResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[DeliveredMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[DeliveredMessage, _Mapping]]] = ...) -> None: ...

class DeliveredMessage(_message.Message):
    __slots__ = ("whatsapp_id", "chat", "text")
    WHATSAPP_ID_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    whatsapp_id: str
    chat: str
    text: str
    def __init__(self, whatsapp_id: _Optional[str] = ..., chat: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...
