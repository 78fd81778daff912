"""API keys: full and read-only keys, hashes, every RPC refused without a key (streams
included), open health and reflection, per-session health behind a key, loopback-only without
keys."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from wasessions.v1 import session_service_pb2 as svc
from wasessions_server.errors import ConfigError
from wasessions_server.security import Role, parse_api_keys

from tests.conftest import ServerFactory
from tests.helpers import S, error_info, next_message, spawn_server, write_config
from tests.security_helpers import (
    FULL_KEY,
    HASHED_KEY,
    READ_KEY,
    SIM_FAST,
    all_rpcs,
    bearer,
    call_raw,
    keyed,
    terminate,
    write_keys,
)

READ_ONLY_OK = {
    "GetSession",
    "ListSessions",
    "WatchSessions",
    "GetPolicy",
    "GetMessage",
    "ListMessages",
    "WatchMessages",
}


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    digest = hashlib.sha256(HASHED_KEY.encode()).hexdigest()
    return write_keys(
        tmp_path / "keys",
        "# operators",
        FULL_KEY,
        f"sha256:{digest}",
        "",
        f"read:{READ_KEY}",
    )


def test_key_file_lines_are_parsed_into_hashes() -> None:
    digest = hashlib.sha256(b"another-key-0123456789").hexdigest()
    keys = parse_api_keys(
        f"{FULL_KEY}\nread:sha256:{digest}\n# comment\n\nread:{READ_KEY}\n", "test"
    )
    assert [k.role for k in keys.keys] == [Role.FULL, Role.READ, Role.READ]
    assert all(len(k.digest) == 32 for k in keys.keys)
    # NOTE: only digests are kept: the key itself is nowhere in the parsed value.
    assert FULL_KEY not in repr(keys) and READ_KEY not in repr(keys)
    matched = keys.match("another-key-0123456789")
    assert matched is not None and matched.role is Role.READ
    assert keys.match(FULL_KEY) is not None
    assert keys.match(FULL_KEY + "x") is None
    assert keys.match("") is None


@pytest.mark.parametrize(
    "text", ["short\n", "sha256:abc\n", "read:sha256:zz\n", "# only comments\n\n"]
)
def test_bad_key_files_are_refused_without_echoing_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_api_keys(text, "keys")
    assert "short" not in str(raised.value)


async def test_every_rpc_needs_a_key(make_server: ServerFactory, keys_file: Path) -> None:
    running = await make_server({"api_keys_file": str(keys_file)})
    for rpc in all_rpcs():
        for metadata, reason in (
            ((), "API_KEY_MISSING"),
            (bearer("wrong-key-0123456789abcdef"), "API_KEY_INVALID"),
            ((("authorization", "Basic Zm9vOmJhcg=="),), "API_KEY_INVALID"),
            ((("authorization", f"Bearer {FULL_KEY[:-1]}"),), "API_KEY_INVALID"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call_raw(running.channel, rpc, b"", metadata)
            code, got, _ = error_info(raised.value)
            assert (rpc.method, code, got) == (rpc.method, grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_full_and_hashed_keys_work_read_keys_only_read(
    make_server: ServerFactory, keys_file: Path
) -> None:
    running = await make_server({"api_keys_file": str(keys_file)})
    full = keyed(running, FULL_KEY)
    hashed = keyed(running, HASHED_KEY)
    reader = keyed(running, READ_KEY)
    try:
        linked = await full.linked("alpha")
        assert linked.state == S.CONNECTED
        assert (await hashed.get("alpha")).state == S.CONNECTED
        assert (await reader.get("alpha")).name == "sessions/alpha"
        listed = await reader.sessions.ListSessions(svc.ListSessionsRequest())
        assert [s.name for s in listed.sessions] == ["sessions/alpha"]
        await reader.sessions.GetPolicy(svc.GetPolicyRequest())
        watch = reader.sessions.WatchSessions(svc.WatchSessionsRequest())
        first = await next_message(watch)
        assert first.snapshot.name == "sessions/alpha"
        watch.cancel()
        for rpc in all_rpcs():
            if rpc.method in READ_ONLY_OK:
                continue
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call_raw(running.channel, rpc, b"", bearer(READ_KEY))
            code, reason, _ = error_info(raised.value)
            assert (rpc.method, code, reason) == (
                rpc.method,
                grpc.StatusCode.PERMISSION_DENIED,
                "READ_ONLY_API_KEY",
            )
        # The refused calls changed nothing.
        after = await full.get("alpha")
        assert after.state == S.CONNECTED and after.has_credentials
        # A full key may do what the read key may not.
        stopped = await full.sessions.StopSession(svc.StopSessionRequest(name="sessions/alpha"))
        assert stopped.state == S.STOPPED
    finally:
        for r in (full, hashed, reader):
            await r.channel.close()


async def test_health_and_reflection_open_but_session_health_needs_a_key(
    make_server: ServerFactory, keys_file: Path
) -> None:
    running = await make_server({"api_keys_file": str(keys_file)})
    full = keyed(running, FULL_KEY)
    try:
        await full.linked("beta")
        health = health_pb2_grpc.HealthStub(running.channel)
        for name in ("", "wasessions.v1.SessionService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(running.channel)
        call = reflect.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        answer = await call.read()
        names = {s.name for s in answer.list_services_response.service}
        assert "wasessions.v1.SessionService" in names
        await call.done_writing()
        # Per-session names reveal session ids: a key is needed (known or unknown session).
        for name in ("sessions/beta", "sessions/nope"):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            watch = health.Watch(health_pb2.HealthCheckRequest(service=name))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await watch.read()
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await health.Check(
                health_pb2.HealthCheckRequest(service="sessions/beta"),
                metadata=bearer("wrong-key-0123456789abcdef"),
            )
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for key in (FULL_KEY, READ_KEY):
            reply = await health.Check(
                health_pb2.HealthCheckRequest(service="sessions/beta"), metadata=bearer(key)
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await full.channel.close()


async def test_closed_health_and_reflection_need_a_key(
    make_server: ServerFactory, keys_file: Path
) -> None:
    running = await make_server(
        {
            "api_keys_file": str(keys_file),
            "security": {"open_health": False, "open_reflection": False},
        }
    )
    health = health_pb2_grpc.HealthStub(running.channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""), metadata=bearer(READ_KEY))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    call = reflect.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    call = reflect.ServerReflectionInfo(metadata=bearer(FULL_KEY))
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    answer = await call.read()
    assert answer.list_services_response.service
    await call.done_writing()


async def test_without_keys_everything_is_open_on_loopback(make_server: ServerFactory) -> None:
    running = await make_server()
    session = await running.create("open", skip_start=True)
    assert session.state == S.STOPPED


def _run_server(data_dir: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    command = [sys.executable, "-m", "wasessions_server.main", "--data-dir", str(data_dir), *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2, result.stderr
    return result.stderr


def test_no_keys_means_loopback_only(tmp_path: Path) -> None:
    stderr = _run_server(tmp_path / "d", "--listen", "0.0.0.0:0")
    assert "loopback" in stderr and "api_keys_file" in stderr


def test_bad_keys_file_is_a_config_error(tmp_path: Path) -> None:
    stderr = _run_server(tmp_path / "d", "--api-keys-file", str(tmp_path / "missing"))
    assert "api_keys_file" in stderr


def test_server_says_at_start_whether_keys_are_needed(tmp_path: Path, keys_file: Path) -> None:
    config = write_config(tmp_path / "config.toml", SIM_FAST)
    open_server = spawn_server(tmp_path / "open", config)
    try:
        text = "".join(open_server.log)
        assert "no API keys configured" in text
    finally:
        assert terminate(open_server.process, open_server.target) == 0
    # Keys on a public address: allowed, and the key itself is never logged.
    keyed_server = spawn_server(
        tmp_path / "keyed", config, "--api-keys-file", str(keys_file), "--listen", "0.0.0.0:0"
    )
    port = keyed_server.target.rsplit(":", 1)[1]
    try:
        text = "".join(keyed_server.log)
        assert "API keys required: 3 keys (1 read-only)" in text
        assert FULL_KEY not in text and READ_KEY not in text
        assert keyed_server.target.startswith("0.0.0.0:")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            get: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/wasessions.v1.SessionService/GetPolicy"
            )
            with pytest.raises(grpc.RpcError) as raised:
                get(b"", timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            get(b"", metadata=bearer(FULL_KEY), timeout=10)
    finally:
        assert terminate(keyed_server.process, f"127.0.0.1:{port}") == 0


def test_keys_file_from_the_environment(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("WASESSIONS_")}
    env["WASESSIONS_API_KEYS_FILE"] = str(tmp_path / "no-such-keys")
    stderr = _run_server(tmp_path / "d", "--listen", "127.0.0.1:0", env=env)
    assert "api_keys_file" in stderr and "no-such-keys" in stderr
