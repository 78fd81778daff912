"""What a session says across a restart and a shutdown: credentials as really stored, and
health streams that end at once on SIGTERM."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc

from tests.conftest import ServerFactory
from tests.helpers import FAST, S, error_info, merge, spawn_server, write_config


async def test_has_credentials_says_what_is_stored_after_a_restart(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = await make_server(data_dir=data)
    await first.linked("gone")
    await first.linked("kept")
    for sid in ("gone", "kept"):
        stopped = await first.sessions.StopSession(svc.StopSessionRequest(name=f"sessions/{sid}"))
        assert stopped.has_credentials
    await first.server.stop()
    await first.channel.close()
    shutil.rmtree(first.creds_dir("gone"))

    second = await make_server(data_dir=data)
    gone = await second.get("gone")
    assert gone.state == S.STOPPED
    assert not gone.has_credentials, "the record loaded at start still claims the credentials"
    listed = await second.sessions.ListSessions(svc.ListSessionsRequest())
    assert [(s.name, s.has_credentials) for s in listed.sessions] == [
        ("sessions/gone", False),
        ("sessions/kept", True),
    ]
    # Started, it shows QR codes: there is nothing to log in with.
    await second.sessions.StartSession(svc.StartSessionRequest(name="sessions/gone"))
    await second.wait_state("gone", S.QR_PENDING)


def test_health_watches_end_at_once_on_sigterm(tmp_path: Path) -> None:
    # A long grace period: a stream left open would be cut only at its end.
    config = write_config(tmp_path / "config.toml", merge(FAST, {"shutdown_grace_s": 20.0}))
    server = spawn_server(tmp_path / "data", config)
    channel = grpc.insecure_channel(server.target)
    try:
        stub = svc_grpc.SessionServiceStub(channel)
        stub.CreateSession(svc.CreateSessionRequest(session_id="h1", skip_start=True))
        health = health_pb2_grpc.HealthStub(channel)
        services = ("", "wasessions.v1.SessionService", "sessions/h1", "sessions/nobody")
        streams = [health.Watch(health_pb2.HealthCheckRequest(service=s)) for s in services]
        for stream in streams:
            next(stream)  # each is open and has said where it stands
        ended: list[tuple[str, float, grpc.StatusCode, str]] = []

        def follow(service: str, stream: grpc.Call) -> None:
            try:
                for _ in stream:  # type: ignore[attr-defined]
                    pass
            except grpc.RpcError as error:
                code, reason, _ = error_info(error)  # type: ignore[arg-type]
                ended.append((service, time.monotonic(), code, reason))

        threads = [
            threading.Thread(target=follow, args=(s, st), daemon=True)
            for s, st in zip(services, streams, strict=True)
        ]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(15)
        assert sorted(e[0] for e in ended) == sorted(services), ended
        for service, when, code, reason in ended:
            assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "SERVER_SHUTTING_DOWN"), service
            assert when - began < 10, f"{service} stayed open for most of the grace period"
        assert server.process.wait(timeout=30) == 0
    finally:
        channel.close()
        if server.process.poll() is None:
            server.process.kill()
    assert "Cancelling all calls" not in "".join(server.log)
