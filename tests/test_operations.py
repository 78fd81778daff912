"""Operations racing the supervisor: stop mid-backoff, logout and delete mid-QR, many at once."""

from __future__ import annotations

import asyncio
from typing import cast

import grpc
import pytest
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim

from tests.conftest import ServerFactory
from tests.helpers import Running, S, error_info, next_message


async def test_stop_during_backoff_stops_the_retries(make_server: ServerFactory) -> None:
    srv = await make_server(
        {"policy": {"default": {"initial_delay_s": 0.3, "max_delay_s": 0.3, "max_attempts": 8}}}
    )
    await srv.linked("s")
    await srv.sim.SetNetwork(sim.SetNetworkRequest(reachable=False))
    await srv.wait_state("s", S.RECONNECTING)
    stopped = await srv.sessions.StopSession(svc.StopSessionRequest(name="sessions/s"))
    assert stopped.state == S.STOPPED and stopped.has_credentials
    await srv.sim.SetNetwork(sim.SetNetworkRequest(reachable=True))
    await asyncio.sleep(0.8)
    assert (await srv.get("s")).state == S.STOPPED, "no retry after a stop"


async def test_logout_and_delete_during_the_qr_phase(srv: Running) -> None:
    await srv.create("a")
    await srv.create("b")
    await srv.wait_state("a", S.QR_PENDING)
    watch_a = srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/a"))
    watch_b = srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/b"))
    assert (await next_message(watch_a)).value and (await next_message(watch_b)).value
    out = await srv.sessions.LogoutSession(svc.LogoutSessionRequest(name="sessions/a"))
    assert out.state == S.LOGGED_OUT and out.required_action == S.SCAN_QR
    await srv.sessions.DeleteSession(svc.DeleteSessionRequest(name="sessions/b"))
    for stream in (watch_a, watch_b):
        last: svc.QrCode | None = None
        while (message := await stream.read()) is not grpc.aio.EOF:
            last = cast(svc.QrCode, message)
        assert last is not None and last.outcome == svc.QrCode.STOPPED


async def test_inject_needs_a_live_connection(srv: Running) -> None:
    await srv.create("s", skip_start=True)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await srv.inject("s", 503)
    assert error_info(error.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NO_ACTIVE_CONNECTION",
    )
    with pytest.raises(grpc.aio.AioRpcError) as scan:
        await srv.sim.ScanQrCode(sim.ScanQrCodeRequest(name="sessions/s"))
    assert scan.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_many_sessions_at_once(srv: Running) -> None:
    ids = [f"m{i:03d}" for i in range(60)]
    await asyncio.gather(*(srv.create(i) for i in ids))
    await asyncio.gather(*(srv.scan(i) for i in ids))
    sessions = await asyncio.gather(*(srv.wait_state(i, S.CONNECTED, timeout=15) for i in ids))
    assert len({s.account.jid for s in sessions}) == len(ids)
    # Every session changes at once and comes back.
    await srv.sim.SetNetwork(sim.SetNetworkRequest(reachable=False))
    await asyncio.gather(*(srv.wait_state(i, S.RECONNECTING) for i in ids))
    await srv.sim.SetNetwork(sim.SetNetworkRequest(reachable=True))
    await asyncio.gather(*(srv.wait_state(i, S.CONNECTED, timeout=15) for i in ids))
    page = await srv.sessions.ListSessions(
        svc.ListSessionsRequest(page_size=1000, states=[S.CONNECTED])
    )
    assert [s.name for s in page.sessions] == [f"sessions/{i}" for i in ids]


async def test_concurrent_creates_of_one_id_make_one_session(srv: Running) -> None:
    results = await asyncio.gather(
        *(srv.create("same", skip_start=True) for _ in range(10)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1 and len(refused) == 9
    assert all(r.code() == grpc.StatusCode.ALREADY_EXISTS for r in refused)
