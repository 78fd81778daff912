"""Exceptions of the wa-sessions client: a failed call as the service reported it.

Every error the server sends carries a canonical gRPC code, a `google.rpc.ErrorInfo` (domain
`wasessions`, an UPPER_SNAKE reason such as `SESSION_NOT_FOUND`) and, for bad arguments,
`google.rpc.BadRequest` field violations. `WaSessionsError` carries all of them, and a subclass
per code lets callers catch what they can handle (`except NotFoundError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "wasessions"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: its path (e.g. `session_id`) and why."""

    field: str
    description: str


class WaSessionsError(Exception):
    """A call failed: the gRPC code, the ErrorInfo reason and the field violations."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.field_violations = field_violations

    @property
    def code_name(self) -> str:
        """The code as in the gRPC docs: `NOT_FOUND`, `INVALID_ARGUMENT`, ..."""
        return str(self.code.name)

    def __str__(self) -> str:
        head = self.code_name + (f" {self.reason}" if self.reason else "")
        text = f"{head}: {self.message}" if self.message else head
        fields = [v.field for v in self.field_violations if v.field]
        if fields and not any(f in self.message for f in fields):
            text += f" (fields: {', '.join(fields)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the CLI prints it with `--json`)."""
        return {
            "code": self.code_name,
            "reason": self.reason,
            "message": self.message,
            "field_violations": [
                {"field": v.field, "description": v.description} for v in self.field_violations
            ],
        }


class InvalidArgumentError(WaSessionsError):
    """INVALID_ARGUMENT: the request is wrong; `field_violations` say where."""


class NotFoundError(WaSessionsError):
    """NOT_FOUND: no such session."""


class AlreadyExistsError(WaSessionsError):
    """ALREADY_EXISTS: a session with this id exists."""


class FailedPreconditionError(WaSessionsError):
    """FAILED_PRECONDITION: the session is not in a state that allows this."""


class UnauthenticatedError(WaSessionsError):
    """UNAUTHENTICATED: no or a wrong API key."""


class PermissionDeniedError(WaSessionsError):
    """PERMISSION_DENIED: the API key may not do this."""


class ResourceExhaustedError(WaSessionsError):
    """RESOURCE_EXHAUSTED: a limit was reached."""


class UnavailableError(WaSessionsError):
    """UNAVAILABLE: the server is down, restarting or shutting down; retry later."""


class DeadlineExceededError(WaSessionsError):
    """DEADLINE_EXCEEDED: the call took longer than its timeout."""


class InternalError(WaSessionsError):
    """INTERNAL: a server bug; see the server log."""


class WaitTimeoutError(WaSessionsError, TimeoutError):
    """`wait_for_state` gave up: the session did not reach the state in time."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.DEADLINE_EXCEEDED, message, reason="WAIT_TIMEOUT")


_BY_CODE: dict[grpc.StatusCode, type[WaSessionsError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.INTERNAL: InternalError,
}

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def from_rpc_error(error: grpc.RpcError) -> WaSessionsError:
    """The exception for a failed call, with the rich status details unpacked."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    reason, domain, metadata = "", "", {}
    violations: list[FieldViolation] = []
    status = _rich_status(error)
    if status is not None:
        message = status.message or message
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
    cls = _BY_CODE.get(code, WaSessionsError)
    return cls(
        code,
        message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=tuple(violations),
    )


def _rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The `google.rpc.Status` in the trailers, if the server sent one."""
    try:
        trailers: Any = error.trailing_metadata()
    except Exception:  # a channel-level failure may carry no call at all
        return None
    for key, value in trailers or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:
                return None
            return status
    return None
