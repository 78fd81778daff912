"""Errors that carry their status, so every layer can fail precisely without importing grpc.

The api layer turns a `ServiceError` into the canonical gRPC code with `google.rpc.ErrorInfo`
(reason, domain `wasessions`) and `google.rpc.BadRequest` field violations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

DOMAIN = "wasessions"


class Status(enum.Enum):
    """The canonical codes this service uses (names as in `grpc.StatusCode`)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


@dataclass(slots=True)
class ServiceError(Exception):
    """A failure a client should see: status, UPPER_SNAKE reason and a sentence for a person."""

    status: Status
    reason: str
    message: str
    violations: tuple[FieldViolation, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status.value} {self.reason}: {self.message}"


def invalid_argument(field_name: str, reason: str, message: str) -> ServiceError:
    return ServiceError(
        Status.INVALID_ARGUMENT, reason, message, (FieldViolation(field_name, message),)
    )


class StorageError(Exception):
    """The durable store could not do what was asked (disk full, I/O error)."""


class ConfigError(Exception):
    """Invalid configuration; the message names the key. The server refuses to start."""


class EngineUnavailable(ConfigError):
    """An enabled engine cannot load (a system library is missing); the message says what to
    install. The server refuses to start."""


def shutting_down() -> ServiceError:
    return ServiceError(
        Status.UNAVAILABLE,
        "SERVER_SHUTTING_DOWN",
        "the server is shutting down; reconnect (streams resume from their last token)",
    )
