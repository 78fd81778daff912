"""WatchSessions: snapshot, live changes, resume tokens, resync, filters, slow consumers."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from wasessions.v1 import session_service_pb2 as svc

from tests.conftest import ServerFactory
from tests.helpers import Running, S, error_info, next_message

Msg = svc.WatchSessionsResponse


async def _read_until(
    call: grpc.aio.UnaryStreamCall[Any, Msg],
    done: Callable[[Msg, list[Msg]], bool],
    timeout: float = 5.0,
) -> list[Msg]:
    out: list[Msg] = []
    async with asyncio.timeout(timeout):
        while True:
            read = await call.read()
            assert read is not grpc.aio.EOF, f"stream ended early after {out}"
            message = cast(Msg, read)
            if message.WhichOneof("event") != "heartbeat":
                out.append(message)
            if done(message, out):
                return out


def _kind(message: Msg) -> str:
    return str(message.WhichOneof("event"))


async def test_snapshot_then_changes(srv: Running) -> None:
    await srv.create("a", skip_start=True)
    await srv.create("b", skip_start=True)
    call = srv.sessions.WatchSessions(svc.WatchSessionsRequest())
    first = await _read_until(call, lambda m, _: _kind(m) == "snapshot_complete")
    assert [_kind(m) for m in first] == ["snapshot", "snapshot", "snapshot_complete"]
    assert [m.snapshot.name for m in first[:2]] == ["sessions/a", "sessions/b"]
    assert all(m.resume_token for m in first)
    await srv.sessions.StartSession(svc.StartSessionRequest(name="sessions/a"))
    changes = await _read_until(
        call, lambda m, _: _kind(m) == "change" and m.change.session.state == S.QR_PENDING
    )
    assert [m.change.cause for m in changes][:2] == [
        svc.SessionChange.STARTED,
        svc.SessionChange.QR_SHOWN,
    ]
    assert all(m.change.session.name == "sessions/a" for m in changes)
    call.cancel()


async def test_empty_server_still_completes_the_snapshot(srv: Running) -> None:
    call = srv.sessions.WatchSessions(svc.WatchSessionsRequest())
    messages = await _read_until(call, lambda m, _: _kind(m) == "snapshot_complete")
    assert [_kind(m) for m in messages] == ["snapshot_complete"]
    call.cancel()


async def test_resume_with_a_live_token_replays_only_what_was_missed(srv: Running) -> None:
    await srv.create("a", skip_start=True)
    call = srv.sessions.WatchSessions(svc.WatchSessionsRequest())
    snapshot = await _read_until(call, lambda m, _: _kind(m) == "snapshot_complete")
    token = snapshot[-1].resume_token
    call.cancel()
    # Missed while disconnected:
    await srv.sessions.UpdateSession(
        svc.UpdateSessionRequest(name="sessions/a", labels={"team": "x"})
    )
    await srv.create("b", skip_start=True)
    await srv.sessions.DeleteSession(svc.DeleteSessionRequest(name="sessions/b"))
    resumed = srv.sessions.WatchSessions(svc.WatchSessionsRequest(resume_token=token))
    messages = await _read_until(resumed, lambda m, _: _kind(m) == "deleted")
    assert [_kind(m) for m in messages] == ["change", "change", "deleted"]
    assert messages[0].change.cause == svc.SessionChange.LABELS_UPDATED
    assert messages[0].change.session.labels == {"team": "x"}
    assert messages[1].change.cause == svc.SessionChange.CREATED
    assert messages[2].deleted.name == "sessions/b"
    # Then live changes follow on the same stream.
    await srv.sessions.UpdateSession(
        svc.UpdateSessionRequest(name="sessions/a", labels={"team": "y"})
    )
    live = await _read_until(resumed, lambda m, _: _kind(m) == "change")
    assert live[-1].change.session.labels == {"team": "y"}
    resumed.cancel()


async def test_expired_token_gets_resync_then_snapshot(make_server: ServerFactory) -> None:
    srv = await make_server({"journal": {"retention_events": 5}})
    await srv.create("a", skip_start=True)
    call = srv.sessions.WatchSessions(svc.WatchSessionsRequest())
    token = (await _read_until(call, lambda m, _: _kind(m) == "snapshot_complete"))[-1].resume_token
    call.cancel()
    # Enough changes that the journal prunes past the token (pruning runs every 1000 commits).
    for i in range(1100):
        await srv.sessions.UpdateSession(
            svc.UpdateSessionRequest(name="sessions/a", labels={"n": str(i)})
        )
    resumed = srv.sessions.WatchSessions(svc.WatchSessionsRequest(resume_token=token))
    messages = await _read_until(resumed, lambda m, _: _kind(m) == "snapshot_complete")
    assert [_kind(m) for m in messages] == ["resync", "snapshot", "snapshot_complete"]
    assert messages[0].resync.reason == "TOKEN_EXPIRED"
    assert messages[1].snapshot.labels == {"n": "1099"}
    resumed.cancel()


async def test_token_from_another_journal_or_ahead_resyncs(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    one = await make_server(data_dir=tmp_path / "one")
    two = await make_server(data_dir=tmp_path / "two")
    await one.create("a", skip_start=True)
    call = one.sessions.WatchSessions(svc.WatchSessionsRequest())
    token = (await _read_until(call, lambda m, _: _kind(m) == "snapshot_complete"))[-1].resume_token
    call.cancel()
    other = two.sessions.WatchSessions(svc.WatchSessionsRequest(resume_token=token))
    messages = await _read_until(other, lambda m, _: _kind(m) == "snapshot_complete")
    assert messages[0].resync.reason == "TOKEN_FROM_OTHER_JOURNAL"
    other.cancel()
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    version, journal, seq = raw.split(":")
    ahead = base64.urlsafe_b64encode(f"{version}:{journal}:{int(seq) + 100}".encode()).decode()
    call = one.sessions.WatchSessions(svc.WatchSessionsRequest(resume_token=ahead.rstrip("=")))
    messages = await _read_until(call, lambda m, _: _kind(m) == "snapshot_complete")
    assert [_kind(m) for m in messages] == ["resync", "snapshot", "snapshot_complete"]
    assert messages[0].resync.reason == "TOKEN_AHEAD"
    call.cancel()


@pytest.mark.parametrize("token", ["garbage", "!!!", "MTpub3Q6YQ", "x" * 500])
async def test_malformed_token_is_invalid_argument(srv: Running, token: str) -> None:
    call = srv.sessions.WatchSessions(svc.WatchSessionsRequest(resume_token=token))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call.read()
    assert error_info(error.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_RESUME_TOKEN",
        ["resume_token"],
    )


async def test_names_filter(srv: Running) -> None:
    await srv.create("a", skip_start=True)
    await srv.create("b", skip_start=True)
    call = srv.sessions.WatchSessions(svc.WatchSessionsRequest(names=["sessions/b", "sessions/zz"]))
    snap = await _read_until(call, lambda m, _: _kind(m) == "snapshot_complete")
    assert [m.snapshot.name for m in snap if _kind(m) == "snapshot"] == ["sessions/b"]
    await srv.sessions.UpdateSession(svc.UpdateSessionRequest(name="sessions/a", labels={"k": "1"}))
    await srv.sessions.UpdateSession(svc.UpdateSessionRequest(name="sessions/b", labels={"k": "2"}))
    await srv.create("zz", skip_start=True)
    changes = await _read_until(call, lambda m, out: len(out) == 2)
    assert [m.change.session.name for m in changes] == ["sessions/b", "sessions/zz"]
    call.cancel()
    bad = srv.sessions.WatchSessions(svc.WatchSessionsRequest(names=["sessions/A"]))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await bad.read()
    assert error_info(error.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_SESSION_NAME",
        ["names[0]"],
    )


async def test_heartbeats_carry_a_current_token(srv: Running) -> None:
    await srv.create("a", skip_start=True)
    call = srv.sessions.WatchSessions(svc.WatchSessionsRequest())
    snap = await _read_until(call, lambda m, _: _kind(m) == "snapshot_complete")
    async with asyncio.timeout(5):
        beat = await next_message(call)
    assert _kind(beat) == "heartbeat"
    assert beat.resume_token == snap[-1].resume_token
    call.cancel()


async def test_a_consumer_that_never_reads_does_not_hurt_the_server(
    make_server: ServerFactory,
) -> None:
    srv = await make_server({"journal": {"subscriber_queue_size": 16}})
    await srv.create("a", skip_start=True)
    stalled = srv.sessions.WatchSessions(svc.WatchSessionsRequest())
    await stalled.read()  # the stream is open; now it never reads again
    # ~10 KB a change, 600 changes: far more than HTTP/2 flow control lets through unread.
    pad = {f"pad{k}": "v" * 250 for k in range(40)}
    for i in range(600):
        await srv.sessions.UpdateSession(
            svc.UpdateSessionRequest(name="sessions/a", labels={"n": str(i), **pad})
        )
    # The server is fine, and a fresh watcher sees the latest state.
    assert (await srv.get("a")).labels["n"] == "599"
    fresh = srv.sessions.WatchSessions(svc.WatchSessionsRequest())
    snap = await _read_until(fresh, lambda m, _: _kind(m) == "snapshot_complete")
    assert snap[0].snapshot.labels["n"] == "599"
    fresh.cancel()
    # The stalled stream, when it reads at last, is told it fell behind and resyncs: no
    # silent gap.
    messages = await _read_until(
        stalled,
        lambda m, out: _kind(m) == "snapshot_complete" and any(_kind(o) == "resync" for o in out),
        timeout=10,
    )
    kinds = [_kind(m) for m in messages]
    assert "resync" in kinds
    resync = messages[kinds.index("resync")]
    assert resync.resync.reason == "STREAM_FELL_BEHIND"
    assert messages[-2].snapshot.labels["n"] == "599"
    # Every change before the resync arrived in order, without a gap.
    before = [int(m.change.session.labels["n"]) for m in messages if _kind(m) == "change"]
    assert before == list(range(before[0], before[0] + len(before))) if before else True
    stalled.cancel()
