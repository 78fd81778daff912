"""The standard health service, extended with one entry per session: `sessions/<id>`.

`Check` and `Watch` for `sessions/<id>` answer SERVING only while that session is CONNECTED and
NOT_SERVING otherwise; for an unknown session Check answers NOT_FOUND and Watch SERVICE_UNKNOWN
(and keeps watching: a session created later is reported). During a drain every entry reports
NOT_SERVING, and then every Watch ends with UNAVAILABLE `SERVER_SHUTTING_DOWN` like the other
streams. The status follows the journal, so it is never ahead of what is durable.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wasessions_server.api.status import Ctx, to_grpc_status
from wasessions_server.errors import shutting_down
from wasessions_server.model import NAME_PREFIX
from wasessions_server.sessions import SessionRegistry

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def is_session_name(service: str) -> bool:
    return service.startswith(NAME_PREFIX)


class SessionHealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self._services: dict[str, Any] = {"": SERVING}  # the non-session entries, as set
        self._sessions: SessionRegistry | None = None
        self._wakeups: dict[str, set[asyncio.Event]] = {}
        self._draining = False

    def attach(self, sessions: SessionRegistry) -> None:
        """Reports `sessions`' sessions (as stored) from now on."""
        self._sessions = sessions
        sessions.observe(self._session_changed)

    async def set(self, service: str, status: Any) -> None:
        """Sets a non-session entry (ignored once the drain began)."""
        if self._draining:
            return
        self._services[service] = status
        self._wake(service)

    async def enter_graceful_shutdown(self) -> None:
        """Every entry NOT_SERVING; every Watch says so, then ends with UNAVAILABLE."""
        self._draining = True
        for service in self._services:
            self._services[service] = NOT_SERVING
        for service in list(self._wakeups):
            self._wake(service)

    def _session_changed(self, session_id: str) -> None:
        # NOTE: only wakes the session's watchers (if any); each reads the status again and
        # writes only a status that differs from the one it sent last.
        self._wake(NAME_PREFIX + session_id)

    def _wake(self, service: str) -> None:
        for event in self._wakeups.get(service, ()):
            event.set()

    def _status(self, service: str) -> Any:
        """The entry's status; None when there is no such entry."""
        if not is_session_name(service):
            return self._services.get(service)
        serving = (
            None if self._sessions is None else self._sessions.serving(service[len(NAME_PREFIX) :])
        )
        if serving is None:
            return None
        return SERVING if serving and not self._draining else NOT_SERVING

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Ctx) -> Any:
        status = self._status(request.service)
        if status is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"unknown service {request.service[:80]!r}"
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Ctx) -> None:
        service = request.service
        event = asyncio.Event()
        self._wakeups.setdefault(service, set()).add(event)
        last = None
        try:
            while True:
                event.clear()
                status = self._status(service)
                if status is None:
                    status = SERVICE_UNKNOWN
                if status != last:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                if self._draining:
                    # NOTE: at once, not when grpcio cancels what is left at the end of the
                    # grace period: a client learns to go elsewhere like on every other stream.
                    await context.abort_with_status(to_grpc_status(shutting_down()))
                await event.wait()
        finally:
            watchers = self._wakeups.get(service)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._wakeups[service]
