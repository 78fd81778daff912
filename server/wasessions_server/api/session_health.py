"""The standard health service, extended with one entry per session: `sessions/<id>`.

`Check` and `Watch` for `sessions/<id>` answer SERVING only while that session is CONNECTED and
NOT_SERVING otherwise; for an unknown session Check answers NOT_FOUND and Watch SERVICE_UNKNOWN
(and keeps watching: a session created later is reported). During a drain every entry reports
NOT_SERVING. The status follows the journal, so it is never ahead of what is durable.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from wasessions_server.api.status import Ctx
from wasessions_server.manager import SessionManager
from wasessions_server.model import NAME_PREFIX, JournalEntry, State

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def is_session_name(service: str) -> bool:
    return service.startswith(NAME_PREFIX)


class SessionHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._connected: dict[str, bool] = {}  # session id -> CONNECTED
        self._wakeups: dict[str, set[asyncio.Event]] = {}
        self._draining = False

    def attach(self, manager: SessionManager) -> None:
        """Follows `manager`'s sessions. Call right after `manager.start()`, before the event
        loop runs anything else, so no change falls between the seed and the listener."""
        for record in manager.snapshot(None):
            self._connected[record.session_id] = record.state is State.CONNECTED
        manager.journal.add_listener(self._on_entry)

    def _on_entry(self, entry: JournalEntry) -> None:
        sid = entry.session_id
        before = self._connected.get(sid)
        if entry.record is None:
            self._connected.pop(sid, None)
        else:
            self._connected[sid] = entry.record.state is State.CONNECTED
        if self._connected.get(sid) != before:
            self._wake(sid)

    def _wake(self, session_id: str) -> None:
        for event in self._wakeups.get(session_id, ()):
            event.set()

    def _status(self, session_id: str) -> Any:
        connected = self._connected.get(session_id)
        if connected is None:
            return None
        return SERVING if connected and not self._draining else NOT_SERVING

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Ctx) -> Any:
        service = request.service
        if not is_session_name(service):
            return await super().Check(request, context)
        status = self._status(service[len(NAME_PREFIX) :])
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown session {service[:80]!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Ctx) -> None:
        service = request.service
        if not is_session_name(service):
            await super().Watch(request, context)
            return
        session_id = service[len(NAME_PREFIX) :]
        event = asyncio.Event()
        self._wakeups.setdefault(session_id, set()).add(event)
        last = None
        try:
            while True:
                event.clear()
                status = self._status(session_id)
                if status is None:
                    status = SERVICE_UNKNOWN
                if status != last:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                await event.wait()
        finally:
            watchers = self._wakeups.get(session_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._wakeups[session_id]

    async def enter_graceful_shutdown(self) -> None:
        self._draining = True
        await super().enter_graceful_shutdown()
        for session_id in list(self._wakeups):
            self._wake(session_id)
