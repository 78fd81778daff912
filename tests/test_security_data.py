"""Credentials and the database stay private; no secret reaches logs, errors, events or
GetSession; limits on sessions, streams, message sizes and labels."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

from tests.conftest import ServerFactory
from tests.helpers import S, error_info, next_message, spawn_server, write_config
from tests.security_helpers import FULL_KEY, SIM_FAST, bearer, keyed, terminate, write_keys

PROXY_PASSWORD = "pr0xy-s3cret-pass"
PROXY = f"socks5://proxyuser:{PROXY_PASSWORD}@proxy.example:1080"
AUTH = bearer(FULL_KEY)


class SyncClient:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.sessions = svc_grpc.SessionServiceStub(self.channel)
        self.sim = sim_grpc.SimulatorServiceStub(self.channel)

    def get(self, session_id: str) -> Any:
        return self.sessions.GetSession(
            svc.GetSessionRequest(name=f"sessions/{session_id}"), metadata=AUTH, timeout=10
        )

    def wait_state(self, session_id: str, state: int, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            session = self.get(session_id)
            if session.state == state:
                return session
            assert time.monotonic() < deadline, f"{session_id}: {session}"
            time.sleep(0.02)

    def link(self, session_id: str, **fields: Any) -> Any:
        self.sessions.CreateSession(
            svc.CreateSessionRequest(session_id=session_id, **fields), metadata=AUTH, timeout=10
        )
        self.wait_state(session_id, S.QR_PENDING)
        self.sim.ScanQrCode(
            sim.ScanQrCodeRequest(name=f"sessions/{session_id}"), metadata=AUTH, timeout=10
        )
        return self.wait_state(session_id, S.CONNECTED)


def _private(data_dir: Path) -> list[str]:
    """Every path under data_dir that a group or other user could read, write or enter."""
    leaks = []
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            leaks.append(f"{path} {oct(stat.S_IMODE(mode))}")
        if path.is_dir() and stat.S_IMODE(mode) != 0o700:
            leaks.append(f"{path} is a folder with mode {oct(stat.S_IMODE(mode))}")
    return leaks


def test_data_private_and_no_secret_anywhere(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    keys = write_keys(tmp_path / "keys", FULL_KEY)
    config = write_config(tmp_path / "config.toml", SIM_FAST)
    server = spawn_server(
        data_dir,
        config,
        "--api-keys-file",
        str(keys),
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
    )
    seen: list[str] = []
    try:
        client = SyncClient(server.target)
        watch = client.sessions.WatchSessions(svc.WatchSessionsRequest(), metadata=AUTH)
        linked = client.link("secretive", proxy=PROXY, labels={"team": "ops"})
        assert linked.proxy == "socks5://***@proxy.example:1080"
        assert linked.has_credentials
        # Disconnects and reconnects produce events and log lines too.
        client.sim.InjectDisconnect(
            sim.InjectDisconnectRequest(name="sessions/secretive", code=428),
            metadata=AUTH,
            timeout=10,
        )
        client.wait_state("secretive", S.CONNECTED)
        seen.append(str(client.get("secretive")))
        seen.append(
            str(client.sessions.ListSessions(svc.ListSessionsRequest(), metadata=AUTH, timeout=10))
        )
        # Errors that involve the proxy do not echo it.
        for request in (
            svc.CreateSessionRequest(session_id="secretive", proxy=PROXY),
            svc.CreateSessionRequest(session_id="other", proxy=PROXY.replace(":1080", "")),
            svc.CreateSessionRequest(session_id="other", proxy=PROXY.replace("socks5", "ftp")),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                client.sessions.CreateSession(request, metadata=AUTH, timeout=10)
            seen.append(str(raised.value))
        for _ in range(12):
            seen.append(str(next(watch)))
        watch.cancel()
        health_pb2_grpc.HealthStub(client.channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        client.channel.close()
    finally:
        assert terminate(server.process) == 0
    creds = json.loads((data_dir / "credentials" / "secretive" / "creds.json").read_bytes())
    secrets = [PROXY_PASSWORD, "proxyuser", FULL_KEY, creds["token"], creds["nonce"]]
    world = json.loads((data_dir / "engines" / "sim" / "world.json").read_bytes())
    secrets.append(world["secret"])
    log_text = "".join(server.log)
    assert '"state": "CONNECTED"' in log_text  # the JSON state-change lines are there
    everything = log_text + "\n".join(seen)
    for secret in secrets:
        assert secret not in everything, f"a secret leaked ({secret[:4]}...)"
    assert _private(data_dir) == []
    assert (data_dir / "wasessions.db").exists()


async def test_max_sessions_is_resource_exhausted(make_server: ServerFactory) -> None:
    running = await make_server({"manager": {"max_sessions": 2}})
    await running.create("one", skip_start=True)
    await running.create("two", skip_start=True)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.create("three", skip_start=True)
    code, reason, _ = error_info(raised.value)
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_SESSIONS")
    assert "at most 2" in (raised.value.details() or "")
    await running.sessions.DeleteSession(svc.DeleteSessionRequest(name="sessions/one"))
    assert (await running.create("three", skip_start=True)).name == "sessions/three"


def test_default_limits_are_generous() -> None:
    from wasessions_server.config import config_from_mapping

    config = config_from_mapping({})
    assert config.manager.max_sessions >= 10_000
    assert config.security.max_streams_per_client >= 100
    assert config.security.max_message_bytes >= 64 * 1024


async def test_streams_per_client_are_limited(make_server: ServerFactory, tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys", FULL_KEY, "other-key-0123456789abcdef")
    running = await make_server(
        {"api_keys_file": str(keys), "security": {"max_streams_per_client": 3}}
    )
    client = keyed(running, FULL_KEY)
    other = keyed(running, "other-key-0123456789abcdef")
    try:
        streams = [client.sessions.WatchSessions(svc.WatchSessionsRequest()) for _ in range(3)]
        for stream in streams:
            assert (await next_message(stream)).HasField("snapshot_complete")
        extra = client.sessions.WatchSessions(svc.WatchSessionsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await extra.read()
        code, reason, _ = error_info(raised.value)
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS")
        # Health watches count too; another client is not affected.
        health = health_pb2_grpc.HealthStub(client.channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await watch.read()
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        theirs = other.sessions.WatchSessions(svc.WatchSessionsRequest())
        assert (await next_message(theirs)).HasField("snapshot_complete")
        theirs.cancel()
        # Unary calls are not streams.
        await client.sessions.GetPolicy(svc.GetPolicyRequest())
        # Closing one frees a place.
        streams[0].cancel()
        deadline = time.monotonic() + 10
        while True:
            again = client.sessions.WatchSessions(svc.WatchSessionsRequest())
            try:
                assert (await next_message(again)).HasField("snapshot_complete")
                break
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        again.cancel()
        for stream in streams[1:]:
            stream.cancel()
    finally:
        await client.channel.close()
        await other.channel.close()


async def test_messages_above_the_limit_are_refused(make_server: ServerFactory) -> None:
    running = await make_server({"security": {"max_message_bytes": 8192}})
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.create("big", skip_start=True, request_id="x" * 10_000)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server is fine and the session was not made.
    assert (await running.create("small", skip_start=True)).state == S.STOPPED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.get("big")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_labels_are_bounded(srv: Any) -> None:
    too_many = {f"k{i}": "v" for i in range(65)}
    too_long = {"k": "v" * 257}
    bad_key = {"Bad Key": "v"}
    for labels in (too_many, too_long, bad_key):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await srv.create("labelled", skip_start=True, labels=labels)
        code, reason, _ = error_info(raised.value)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_LABELS")
    most = {f"k{i}": "v" * 256 for i in range(64)}
    assert len((await srv.create("labelled", skip_start=True, labels=most)).labels) == 64
