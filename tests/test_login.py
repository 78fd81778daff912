"""QR login, pairing-code login, the QR window ending, and WatchQrCodes."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import grpc
import pytest
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim

from tests.helpers import Running, S, error_info, next_message

QR = svc.QrCode


async def _read_all(call: grpc.aio.UnaryStreamCall[Any, svc.QrCode]) -> list[svc.QrCode]:
    out = []
    while (message := await call.read()) is not grpc.aio.EOF:
        out.append(cast(svc.QrCode, message))
    return out


async def test_qr_login_end_to_end(srv: Running) -> None:
    created = await srv.create("alice")
    assert created.state == S.CONNECTING
    assert not created.has_credentials
    stream = srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/alice"))
    first = await next_message(stream)
    assert first.value.startswith("2@") and first.sequence == 1
    assert first.expire_time.ToNanoseconds() > 0
    assert first.outcome == QR.OUTCOME_UNSPECIFIED
    session = await srv.get("alice")
    assert session.state == S.QR_PENDING and session.required_action == S.SCAN_QR

    await srv.sim.ScanQrCode(sim.ScanQrCodeRequest(name="sessions/alice"))
    rest = await _read_all(stream)
    assert rest[-1].outcome == QR.PAIRED and not rest[-1].value
    assert await stream.code() == grpc.StatusCode.OK

    session = await srv.wait_state("alice", S.CONNECTED)
    assert session.has_credentials
    assert session.account.jid.endswith("@s.whatsapp.net")
    assert session.account.phone_number.startswith("+")
    # The 515 that always follows pairing was handled as a restart, not a failure.
    assert session.last_disconnect.code == 515
    assert session.last_disconnect.reason == "RESTART_REQUIRED"
    assert session.retry.attempt == 0
    creds = srv.creds_dir("alice") / "creds.json"
    assert json.loads(creds.read_text())["jid"] == session.account.jid


async def test_watch_qr_codes_gives_the_current_code_at_once(srv: Running) -> None:
    await srv.create("bob")
    await srv.wait_state("bob", S.QR_PENDING)
    first = srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/bob"))
    a = await next_message(first)
    late = srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/bob"))
    b = await next_message(late)
    assert a.value == b.value and a.sequence == b.sequence == 1
    first.cancel()
    late.cancel()


async def test_qr_codes_refresh_then_the_window_ends_failed(srv: Running) -> None:
    await srv.create("carol")
    stream = srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/carol"))
    messages = await _read_all(stream)
    codes = [m for m in messages if m.value]
    # FAST: three codes, each different, then the window is over.
    assert [c.sequence for c in codes] == [1, 2, 3]
    assert len({c.value for c in codes}) == 3
    assert messages[-1].outcome == QR.EXPIRED
    session = await srv.wait_state("carol", S.FAILED)
    assert session.required_action == S.START_SESSION
    assert session.last_disconnect.code == 408
    assert session.last_disconnect.reason == "QR_WINDOW_OVER"
    assert session.last_disconnect.message == "QR refs attempts ended"
    # Not an endless QR loop: it stays FAILED.
    await asyncio.sleep(0.8)
    assert (await srv.get("carol")).state == S.FAILED
    # StartSession begins a new QR window.
    restarted = await srv.sessions.StartSession(svc.StartSessionRequest(name="sessions/carol"))
    assert restarted.state == S.CONNECTING
    await srv.wait_state("carol", S.QR_PENDING)


async def test_pairing_code_login(srv: Running) -> None:
    await srv.create("dave")
    await srv.wait_state("dave", S.QR_PENDING)
    response = await srv.sessions.RequestPairingCode(
        svc.RequestPairingCodeRequest(name="sessions/dave", phone_number="+4915112345678")
    )
    assert len(response.code) == 8 and "-" not in response.code
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await srv.sim.EnterPairingCode(
            sim.EnterPairingCodeRequest(name="sessions/dave", code="0000-0000")
        )
    assert error_info(wrong.value)[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PAIRING_CODE_MISMATCH",
    )
    hyphenated = f"{response.code[:4]}-{response.code[4:]}".lower()
    await srv.sim.EnterPairingCode(
        sim.EnterPairingCodeRequest(name="sessions/dave", code=hyphenated)
    )
    session = await srv.wait_state("dave", S.CONNECTED)
    assert session.account.phone_number == "+4915112345678"


async def test_pairing_code_and_qr_refused_for_a_linked_session(srv: Running) -> None:
    await srv.linked("erin")
    with pytest.raises(grpc.aio.AioRpcError) as pairing:
        await srv.sessions.RequestPairingCode(
            svc.RequestPairingCodeRequest(name="sessions/erin", phone_number="+15551234567")
        )
    assert error_info(pairing.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SESSION_ALREADY_LINKED",
    )
    with pytest.raises(grpc.aio.AioRpcError) as qr:
        await _read_all(srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/erin")))
    assert error_info(qr.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SESSION_ALREADY_LINKED",
    )


async def test_bad_phone_number_wins_over_state(srv: Running) -> None:
    await srv.linked("fay")
    for phone in (
        "",
        "15551234567",
        "+0123456789",
        "+12",
        "+1555123456789012",
        "+1555 123 4567",
        "+١٢٣٤٥٦٧٨",
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await srv.sessions.RequestPairingCode(
                svc.RequestPairingCodeRequest(name="sessions/fay", phone_number=phone)
            )
        code, reason, fields = error_info(error.value)
        assert (code, reason, fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PHONE_NUMBER",
            ["phone_number"],
        ), phone


async def test_qr_stream_ends_stopped_when_the_session_stops(srv: Running) -> None:
    await srv.create("gus")
    stream = srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/gus"))
    await stream.read()
    await srv.sessions.StopSession(svc.StopSessionRequest(name="sessions/gus"))
    rest = await _read_all(stream)
    assert rest[-1].outcome == QR.STOPPED
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await _read_all(srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/gus")))
    assert error_info(error.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SESSION_NOT_RUNNING",
    )


async def test_relink_discards_credentials_and_starts_a_new_qr_login(srv: Running) -> None:
    await srv.linked("hal")
    assert srv.creds_dir("hal").exists()
    session = await srv.sessions.StartSession(
        svc.StartSessionRequest(name="sessions/hal", relink=True)
    )
    assert session.state == S.CONNECTING and not session.has_credentials
    assert not srv.creds_dir("hal").exists()
    await srv.wait_state("hal", S.QR_PENDING)
