"""Maps errors onto the standard gRPC error model (code, ErrorInfo, BadRequest)."""

from __future__ import annotations

import errno
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from wasessions_server.errors import DOMAIN, ServiceError, Status, StorageError

log = logging.getLogger(__name__)

#: OS errors of a full or failing disk (e.g. writing credentials): UNAVAILABLE, not INTERNAL.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})

Ctx = grpc.aio.ServicerContext[Any, Any]
S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def malformed() -> ServiceError:
    return ServiceError(
        Status.INVALID_ARGUMENT,
        "MALFORMED_REQUEST",
        "the request message could not be parsed (wrong message type or corrupt bytes)",
    )


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that turns bytes that do not parse into a `Malformed` request, so the
    caller gets INVALID_ARGUMENT from us instead of grpcio's UNKNOWN."""
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as error:
            return Malformed(error)

    return deserialize


def checks_malformed(behavior: Callable[..., Any]) -> bool:
    """Whether `behavior` (a servicer method) answers a `Malformed` request itself."""
    return bool(getattr(behavior, "checks_malformed", False))


def to_grpc_status(error: ServiceError) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    )
    details = [detail]
    if error.violations:
        bad_request = any_pb2.Any()
        bad_request.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
        details.append(bad_request)
    status = status_pb2.Status(
        code=getattr(code_pb2, error.status.value), message=error.message, details=details
    )
    return cast(grpc.Status, rpc_status.to_status(status))


def _service_error(error: Exception, method: str) -> ServiceError:
    if isinstance(error, ServiceError):
        return error
    if isinstance(error, StorageError) or (
        isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS
    ):
        log.error("%s: storage failed: %s", method, error)
        return ServiceError(
            Status.UNAVAILABLE,
            "STORAGE_UNAVAILABLE",
            "the service could not store the change (disk full or I/O error); nothing was "
            "changed, retry later",
        )
    log.exception("%s: unexpected error", method)
    return ServiceError(Status.INTERNAL, "INTERNAL", "internal error; see the server log")


def unary(
    fn: Callable[[S, Req, Ctx], Awaitable[Resp]],
) -> Callable[[S, Req, Ctx], Awaitable[Resp]]:
    """Turns every failure of a unary handler into a proper gRPC status."""

    async def handler(self: S, request: Req, context: Ctx) -> Resp:
        try:
            if isinstance(request, Malformed):
                raise malformed()
            return await fn(self, request, context)
        except Exception as error:
            await context.abort_with_status(to_grpc_status(_service_error(error, fn.__name__)))
            raise  # unreachable: abort raises

    handler.__name__ = fn.__name__
    handler.checks_malformed = True  # type: ignore[attr-defined]
    return handler


def streaming(
    fn: Callable[[S, Req, Ctx], AsyncIterator[Resp]],
) -> Callable[[S, Req, Ctx], AsyncIterator[Resp]]:
    """The same for server-streaming handlers."""
    assert inspect.isasyncgenfunction(fn)

    async def handler(self: S, request: Req, context: Ctx) -> AsyncIterator[Resp]:
        try:
            async for item in fn(self, request, context):
                yield item
        except Exception as error:
            await context.abort_with_status(to_grpc_status(_service_error(error, fn.__name__)))

    handler.__name__ = fn.__name__
    return handler
