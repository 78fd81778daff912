"""Restart, shutdown, crashes, the data-directory lock, permissions and configuration errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc
from wasessions_server.store import FileCredentialVault

from tests.conftest import ServerFactory
from tests.helpers import (
    FAST,
    Running,
    S,
    next_message,
    spawn_server,
    stop_server,
    write_config,
)


async def test_restart_restores_what_was_running(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = await make_server(data_dir=data)
    linked = await first.linked("linked")
    await first.create("waiting")
    await first.wait_state("waiting", S.QR_PENDING)
    await first.linked("stopped")
    await first.sessions.StopSession(svc.StopSessionRequest(name="sessions/stopped"))
    await first.linked("banned")
    await first.inject("banned", 403)
    await first.wait_state("banned", S.FAILED)
    watch = first.sessions.WatchSessions(svc.WatchSessionsRequest())
    token = ""
    while True:
        message = await next_message(watch)
        token = message.resume_token
        if message.WhichOneof("event") == "snapshot_complete":
            break
    watch.cancel()
    await stop_server(first)
    assert (first.creds_dir("linked") / "creds.json").exists(), "shutdown never logs out"

    second = await make_server(data_dir=data)
    restored = await second.wait_state("linked", S.CONNECTED)
    assert restored.account.jid == linked.account.jid
    waiting = await second.wait_state("waiting", S.STOPPED)
    assert waiting.required_action == S.START_SESSION, "no QR storm after a restart"
    stopped = await second.get("stopped")
    assert stopped.state == S.STOPPED and stopped.has_credentials
    banned = await second.get("banned")
    assert banned.state == S.FAILED and banned.required_action == S.CONTACT_SUPPORT
    # The account stays banned across the restart.
    await second.sessions.StartSession(svc.StartSessionRequest(name="sessions/banned"))
    await second.wait_state("banned", S.FAILED, last_disconnect__code=403)

    # A resume token from before the restart still resumes, without a snapshot.
    resumed = second.sessions.WatchSessions(svc.WatchSessionsRequest(resume_token=token))
    kinds, causes = [], []
    async with asyncio.timeout(5):
        while (
            svc.SessionChange.RESTORED not in causes or svc.SessionChange.QR_ABANDONED not in causes
        ):
            message = await next_message(resumed)
            kinds.append(message.WhichOneof("event"))
            causes.append(message.change.cause)
    assert "snapshot" not in kinds and "resync" not in kinds
    resumed.cancel()


def _stubs(
    target: str,
) -> tuple[grpc.Channel, svc_grpc.SessionServiceStub, sim_grpc.SimulatorServiceStub]:
    channel = grpc.insecure_channel(target)
    return channel, svc_grpc.SessionServiceStub(channel), sim_grpc.SimulatorServiceStub(channel)


def _wait(
    sessions: svc_grpc.SessionServiceStub, sid: str, state: int, timeout: float = 10
) -> svc.Session:  # type: ignore[name-defined]
    import time

    deadline = time.monotonic() + timeout
    while True:
        session = sessions.GetSession(svc.GetSessionRequest(name=f"sessions/{sid}"))
        if session.state == state:
            return session
        assert time.monotonic() < deadline, f"{sid}: {session}"
        time.sleep(0.02)


def _link(
    sessions: svc_grpc.SessionServiceStub, simulator: sim_grpc.SimulatorServiceStub, sid: str
) -> None:
    sessions.CreateSession(svc.CreateSessionRequest(session_id=sid))
    _wait(sessions, sid, S.QR_PENDING)
    simulator.ScanQrCode(sim.ScanQrCodeRequest(name=f"sessions/{sid}"))
    _wait(sessions, sid, S.CONNECTED)


def test_sigterm_drains_and_keeps_credentials(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "config.toml", FAST)
    proc = spawn_server(data, config)
    channel, sessions, simulator = _stubs(proc.target)
    _link(sessions, simulator, "keep")
    stream = sessions.WatchSessions(svc.WatchSessionsRequest())
    next(stream)
    proc.process.send_signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError) as ended:
        for _ in stream:
            pass
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert proc.process.wait(timeout=20) == 0
    channel.close()
    assert "logout" not in "".join(proc.log).lower()
    creds = json.loads((data / "credentials" / "keep" / "creds.json").read_text())
    assert creds["jid"]

    again = spawn_server(data, config)
    channel, sessions, _ = _stubs(again.target)
    restored = _wait(sessions, "keep", S.CONNECTED)
    assert restored.account.jid == creds["jid"], "the device was not unlinked by the shutdown"
    channel.close()
    again.process.terminate()
    assert again.process.wait(timeout=20) == 0


def test_kill_9_during_activity_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "config.toml", FAST)
    linked: set[str] = set()
    for round_ in range(3):
        proc = spawn_server(data, config)
        channel, sessions, simulator = _stubs(proc.target)
        for sid in sorted(linked):
            _wait(sessions, sid, S.CONNECTED)
        for i in range(3):
            sid = f"r{round_}-{i}"
            _link(sessions, simulator, sid)
            linked.add(sid)
        # Churn: disconnects and label updates in flight when the process dies.
        for sid in sorted(linked):
            simulator.InjectDisconnect(
                sim.InjectDisconnectRequest(name=f"sessions/{sid}", code=428)
            )
            sessions.UpdateSession(
                svc.UpdateSessionRequest(name=f"sessions/{sid}", labels={"r": str(round_)})
            )
        proc.process.send_signal(signal.SIGKILL)
        proc.process.wait(timeout=10)
        channel.close()
        db = sqlite3.connect(data / "wasessions.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [r[0] for r in db.execute("SELECT seq FROM journal ORDER BY seq")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap in the journal"
        db.close()
        for sid in linked:
            folder = data / "credentials" / sid
            assert json.loads((folder / "creds.json").read_text())["token"]
            assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    final = spawn_server(data, config)
    channel, sessions, _ = _stubs(final.target)
    for sid in linked:
        _wait(sessions, sid, S.CONNECTED)
    channel.close()
    final.process.terminate()
    assert final.process.wait(timeout=20) == 0


def test_second_server_on_one_data_dir_exits_with_a_clear_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = spawn_server(data)
    second = subprocess.run(
        [sys.executable, "-m", "wasessions_server.main", "--listen", "127.0.0.1:0",
         "--data-dir", str(data)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert second.returncode != 0
    assert "in use by another wa-sessions server" in second.stderr
    assert "listening" not in second.stderr, "the lock is taken before the port is bound"
    # The same port, another data directory: the port is not shared.
    third = subprocess.run(
        [sys.executable, "-m", "wasessions_server.main", "--listen", first.target,
         "--data-dir", str(tmp_path / "other")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert third.returncode != 0
    assert "cannot listen on" in third.stderr
    first.process.terminate()
    assert first.process.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"policy": {"default": {"initial_delay_s": "soon"}}}, "policy.default.initial_delay_s"),
        ({"policy": {"codes": {"440": {"action": "explode"}}}}, "policy.codes.440.action"),
        ({"policy": {"codes": {"abc": {"action": "fail"}}}}, "policy.codes.abc"),
        ({"qr": {"max_codes": 0}}, "qr.max_codes"),
        ({"manager": {"restore_concurrency": -1}}, "manager.restore_concurrency"),
        ({"nonsense": 1}, "nonsense"),
        ({"policy": {"default": {"max_attempts": True}}}, "policy.default.max_attempts"),
    ],
)
def test_invalid_configuration_stops_the_server(tmp_path: Path, config: dict, key: str) -> None:  # type: ignore[type-arg]
    path = write_config(tmp_path / "bad.toml", config)
    result = subprocess.run(
        [sys.executable, "-m", "wasessions_server.main", "--listen", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data"), "--config", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert key in result.stderr
    assert not (tmp_path / "data").exists(), "nothing was started half-way"


async def test_data_directory_is_private(srv: Running) -> None:
    await srv.linked("p")

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(srv.data_dir) == 0o700
    assert mode(srv.data_dir / "credentials") == 0o700
    assert mode(srv.creds_dir("p")) == 0o700
    for path in [*srv.creds_dir("p").iterdir(), *srv.data_dir.glob("wasessions.db*")]:
        assert mode(path) & 0o077 == 0, path


def test_credential_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vault = FileCredentialVault(tmp_path / "v")
    vault.write("creds.json", b"old")

    def crash(*_: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        vault.write("creds.json", b"new" * 1000)
    assert vault.read("creds.json") == b"old"
    assert [p.name for p in vault.path.iterdir()] == ["creds.json"]


async def test_shutdown_ends_qr_streams_unavailable(srv: Running) -> None:
    import grpc as _grpc

    await srv.create("q")
    stream = srv.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/q"))
    assert (await next_message(stream)).sequence == 1
    stopping = asyncio.create_task(srv.server.stop())
    with pytest.raises(_grpc.aio.AioRpcError) as ended:
        while await stream.read() is not _grpc.aio.EOF:
            pass
    assert ended.value.code() == _grpc.StatusCode.UNAVAILABLE
    await stopping


async def test_a_deleted_session_never_comes_back(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = await make_server(data_dir=data)
    await first.linked("gone")
    await first.sessions.UpdateSession(
        svc.UpdateSessionRequest(name="sessions/gone", labels={"a": "b"})
    )
    await first.sessions.DeleteSession(svc.DeleteSessionRequest(name="sessions/gone"))
    await stop_server(first)
    second = await make_server(data_dir=data)
    listed = await second.sessions.ListSessions(svc.ListSessionsRequest())
    assert list(listed.sessions) == []
    assert not (data / "credentials" / "gone").exists()


async def test_stop_before_the_restore_reaches_a_session(
    make_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    first = await make_server(data_dir=data)
    await first.linked("late")
    await stop_server(first)
    # The whole restore jitter, every time: the session waits 3 s for its turn.
    monkeypatch.setattr("wasessions_server.sessions.registry.random.uniform", lambda a, b: b)
    second = await make_server({"manager": {"restore_jitter_s": 3.0}}, data_dir=data)
    waiting = await second.get("late")
    assert waiting.state == S.CONNECTING
    stopped = await second.sessions.StopSession(svc.StopSessionRequest(name="sessions/late"))
    assert stopped.state == S.STOPPED
    await asyncio.sleep(3.3)
    assert (await second.get("late")).state == S.STOPPED, "the restore left it alone"
