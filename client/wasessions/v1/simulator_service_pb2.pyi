from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

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
