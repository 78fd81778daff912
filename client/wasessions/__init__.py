"""wa-sessions: the typed Python client of the wa-sessions gRPC service.

`SessionsClient` (asyncio) and `BlockingSessionsClient` wrap the generated stubs in
`wasessions.v1`; failed calls raise `WaSessionsError` subclasses (see `wasessions.errors`).
"""

from wasessions.blocking import BlockingSessionsClient
from wasessions.client import (
    EventKind,
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

__all__ = [
    "AlreadyExistsError",
    "BlockingSessionsClient",
    "EventKind",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
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
