"""wa-sessions: the typed Python client of the wa-sessions gRPC service.

`SessionsClient` (asyncio) and `BlockingSessionsClient` wrap the generated stubs in
`wasessions.v1`; failed calls raise `WaSessionsError` subclasses (see `wasessions.errors`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasessions.blocking import BlockingSessionsClient
    from wasessions.client import (
        EventKind,
        MessageEventKind,
        MessageWatch,
        MessageWatchEvent,
        QrCode,
        ReconnectPolicy,
        SessionsClient,
        SessionWatch,
        SimulatorClient,
        WatchEvent,
        session_id,
        session_name,
    )
    from wasessions.errors import (
        AlreadyExistsError,
        FailedPreconditionError,
        FieldViolation,
        InvalidArgumentError,
        NotFoundError,
        UnavailableError,
        WaitTimeoutError,
        WaSessionsError,
    )

# NOTE: imported on first use (PEP 562), so `import wasessions.v1...` (the server, the stubs
# alone) and the CLI (which must configure grpc before grpc is imported) stay light.
_MODULES = {
    "wasessions.blocking": ("BlockingSessionsClient",),
    "wasessions.client": (
        "EventKind",
        "MessageEventKind",
        "MessageWatch",
        "MessageWatchEvent",
        "QrCode",
        "ReconnectPolicy",
        "SessionWatch",
        "SessionsClient",
        "SimulatorClient",
        "WatchEvent",
        "session_id",
        "session_name",
    ),
    "wasessions.errors": (
        "AlreadyExistsError",
        "FailedPreconditionError",
        "FieldViolation",
        "InvalidArgumentError",
        "NotFoundError",
        "UnavailableError",
        "WaSessionsError",
        "WaitTimeoutError",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "AlreadyExistsError",
    "BlockingSessionsClient",
    "EventKind",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "MessageEventKind",
    "MessageWatch",
    "MessageWatchEvent",
    "NotFoundError",
    "QrCode",
    "ReconnectPolicy",
    "SessionWatch",
    "SessionsClient",
    "SimulatorClient",
    "UnavailableError",
    "WaSessionsError",
    "WaitTimeoutError",
    "WatchEvent",
    "session_id",
    "session_name",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wasessions' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
