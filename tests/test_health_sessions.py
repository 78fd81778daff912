"""Per-session health through the standard health service, and overall health on drain."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wasessions.v1 import session_service_pb2 as svc

from tests.conftest import ServerFactory
from tests.helpers import Running, S

H = health_pb2.HealthCheckResponse


def _health(running: Running) -> Any:
    return health_pb2_grpc.HealthStub(running.channel)


async def _check(running: Running, service: str) -> int:
    reply = await _health(running).Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def _next(watch: Any, timeout: float = 10.0) -> int:
    reply = await asyncio.wait_for(watch.read(), timeout)
    assert reply is not grpc.aio.EOF
    return int(reply.status)


async def test_check_follows_the_session_state(srv: Running) -> None:
    for name in ("sessions/ghost", "sessions/", "sessions/BAD ID"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _check(srv, name)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    await srv.create("quiet", skip_start=True)
    assert await _check(srv, "sessions/quiet") == H.NOT_SERVING
    await srv.linked("alive")
    assert await _check(srv, "sessions/alive") == H.SERVING
    assert await _check(srv, "") == H.SERVING
    await srv.sessions.StopSession(svc.StopSessionRequest(name="sessions/alive"))
    assert await _check(srv, "sessions/alive") == H.NOT_SERVING
    await srv.sessions.DeleteSession(svc.DeleteSessionRequest(name="sessions/alive"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _check(srv, "sessions/alive")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_reports_every_change_of_serving(srv: Running) -> None:
    watch = _health(srv).Watch(health_pb2.HealthCheckRequest(service="sessions/w1"))
    assert await _next(watch) == H.SERVICE_UNKNOWN
    await srv.create("w1")
    assert await _next(watch) == H.NOT_SERVING
    await srv.scan("w1")
    assert await _next(watch) == H.SERVING
    await srv.inject("w1", 428)
    assert await _next(watch) == H.NOT_SERVING
    assert await _next(watch) == H.SERVING  # reconnected by the policy
    await srv.wait_state("w1", S.CONNECTED)
    await srv.inject("w1", 401)  # logged out from the phone
    assert await _next(watch) == H.NOT_SERVING
    await srv.wait_state("w1", S.LOGGED_OUT)
    await srv.sessions.DeleteSession(svc.DeleteSessionRequest(name="sessions/w1"))
    assert await _next(watch) == H.SERVICE_UNKNOWN
    watch.cancel()


async def test_overall_health_turns_not_serving_on_drain(make_server: ServerFactory) -> None:
    running = await make_server({"shutdown_grace_s": 0.5})
    await running.linked("d1")
    overall = _health(running).Watch(health_pb2.HealthCheckRequest(service=""))
    session = _health(running).Watch(health_pb2.HealthCheckRequest(service="sessions/d1"))
    assert await _next(overall) == H.SERVING
    assert await _next(session) == H.SERVING
    stopping = asyncio.create_task(running.server.stop())
    assert await _next(overall) == H.NOT_SERVING
    assert await _next(session) == H.NOT_SERVING
    await stopping
