"""Shared test helpers: a real in-process grpc.aio server on port 0 with real clients, and the
same server as a real subprocess."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from wasessions.v1 import session_pb2 as pb
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc
from wasessions_server.api.server import WaSessionsServer
from wasessions_server.config import config_from_mapping

from bench.procs import to_toml

S = pb.Session

#: Fast timings so scenarios take milliseconds; every key is a real configuration key.
FAST: dict[str, Any] = {
    "qr": {"first_timeout_s": 0.6, "timeout_s": 0.3, "max_codes": 3},
    "policy": {
        "default": {
            "initial_delay_s": 0.05,
            "max_delay_s": 0.4,
            "multiplier": 2.0,
            "jitter_s": 0.01,
            "max_attempts": 3,
        }
    },
    "manager": {
        "stable_after_s": 0.5,
        "restore_jitter_s": 0.0,
        "heartbeat_interval_s": 1.0,
        "connect_rate": 10_000.0,
    },
}


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Running:
    server: WaSessionsServer
    channel: grpc.aio.Channel
    sessions: svc_grpc.SessionServiceAsyncStub
    sim: sim_grpc.SimulatorServiceAsyncStub
    data_dir: Path

    async def get(self, session_id: str) -> pb.Session:
        return await self.sessions.GetSession(svc.GetSessionRequest(name=f"sessions/{session_id}"))

    async def create(self, session_id: str, **fields: Any) -> pb.Session:
        request = svc.CreateSessionRequest(session_id=session_id, **fields)
        return await self.sessions.CreateSession(request)

    async def wait_state(
        self, session_id: str, state: int, timeout: float = 5.0, **where: Any
    ) -> pb.Session:
        """Polls GetSession until the session is in `state` (and matches `where`)."""
        deadline = time.monotonic() + timeout
        while True:
            session = await self.get(session_id)
            if session.state == state and all(_field(session, k) == v for k, v in where.items()):
                return session
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{session_id} is {S.State.Name(session.state)} "
                    f"(wanted {S.State.Name(state)} {where}): {session}"
                )
            await asyncio.sleep(0.01)

    async def scan(self, session_id: str) -> None:
        """Waits for the QR phase, then scans as the phone would."""
        await self.wait_state(session_id, S.QR_PENDING)
        await self.sim.ScanQrCode(sim.ScanQrCodeRequest(name=f"sessions/{session_id}"))

    async def linked(self, session_id: str) -> pb.Session:
        """Creates a session, scans it and waits until CONNECTED."""
        await self.create(session_id)
        await self.scan(session_id)
        return await self.wait_state(session_id, S.CONNECTED)

    async def inject(self, session_id: str, code: int, message: str = "") -> None:
        await self.sim.InjectDisconnect(
            sim.InjectDisconnectRequest(name=f"sessions/{session_id}", code=code, message=message)
        )

    def creds_dir(self, session_id: str) -> Path:
        return self.data_dir / "credentials" / session_id


def _field(message: Any, dotted: str) -> Any:
    for part in dotted.split("__"):
        message = getattr(message, part)
    return message


async def start_server(data_dir: Path, config: Mapping[str, Any] | None = None) -> Running:
    mapping = merge(FAST, config or {})
    mapping.setdefault("engine", "sim")
    mapping.update(listen="127.0.0.1:0", data_dir=str(data_dir))
    server = WaSessionsServer(config_from_mapping(mapping))
    await server.start()
    channel = grpc.aio.insecure_channel(server.target)
    return Running(
        server,
        channel,
        svc_grpc.SessionServiceStub(channel),
        sim_grpc.SimulatorServiceStub(channel),
        data_dir,
    )


async def stop_server(running: Running) -> None:
    await running.channel.close()
    await running.server.stop()


_Response = TypeVar("_Response")


async def next_message(call: grpc.aio.UnaryStreamCall[Any, _Response]) -> _Response:
    """The next message of a stream, typed (`call.read()` may return EOF); fails at the end."""
    message = await call.read()
    assert message is not grpc.aio.EOF, "the stream ended"
    return cast(_Response, message)


def error_info(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    """(code, ErrorInfo reason, BadRequest fields) of a failed call."""
    status = rpc_status.from_call(error)
    reason, fields = "", []
    assert status is not None, f"no rich status on {error}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "wasessions"
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return error.code(), reason, fields


# A real server process --------------------------------------------------------------------------

_LISTENING = re.compile(r"listening on (\S+)")


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    target: str
    log: list[str]


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Writes `config` as TOML (the small subset the tests need)."""
    text = to_toml(config)
    tomllib.loads(text)  # the test's own check that it wrote valid TOML
    path.write_text(text)
    return path


def spawn_server(
    data_dir: Path, config_file: Path | None = None, *extra: str, wait: bool = True
) -> ServerProcess:
    """Starts `wa-sessions-server` as a real process on port 0 and waits until it listens."""
    command = [
        sys.executable, "-m", "wasessions_server.main",
        "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *extra,
    ]  # fmt: skip
    if config_file is not None:
        command += ["--config", str(config_file)]
    # NOTE: like start_server: the sim engine unless the test names one (the default is whatsmeow).
    named = config_file is not None and "engine" in tomllib.loads(config_file.read_text())
    if not named and "--engine" not in extra:
        command += ["--engine", "sim"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASESSIONS_")}
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    log: list[str] = []
    if not wait:
        return ServerProcess(process, "", log)
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        log.append(line)
        if match := _LISTENING.search(line):
            _drain(process, log)
            return ServerProcess(process, match.group(1), log)
    process.kill()
    raise AssertionError("server did not start:\n" + "".join(log))


def _drain(process: subprocess.Popen[str], log: list[str]) -> None:
    """Keeps reading the server's stderr so it never blocks on a full pipe."""
    import threading

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)

    threading.Thread(target=pump, daemon=True).start()
