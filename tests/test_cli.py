"""The `wa-sessions` console script, run as a real subprocess against a real server process."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest
from wasessions import BlockingSessionsClient, cli

from tests.helpers import FAST, ServerProcess, merge, spawn_server, write_config
from tests.qr_decode import decode_png, decode_terminal
from tests.security_helpers import make_pki

WA = str(Path(sys.executable).parent / "wa-sessions")
ROOT = Path(__file__).resolve().parent.parent
#: Long QR windows, so a code stays the current one while the test decodes it; and retries that
#: go on for a while, so a session stays RECONNECTING while the network is down.
CONFIG = merge(
    FAST,
    {
        "engine": "sim",
        "qr": {"first_timeout_s": 60.0, "timeout_s": 60.0},
        "policy": {"default": {"max_attempts": 200, "initial_delay_s": 0.1, "max_delay_s": 0.3}},
    },
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("cli")
    running = spawn_server(tmp / "data", write_config(tmp / "config.toml", CONFIG))
    yield running
    running.process.terminate()
    running.process.wait(timeout=30)


def env_for(target: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASESSIONS_")}
    env.update(WASESSIONS_SERVER=target, **extra)
    return env


def wa(
    server: ServerProcess,
    *args: str,
    rc: int = 0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [WA, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env or env_for(server.target),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == rc, f"wa-sessions {args}: rc {done.returncode}\n{done.stderr}"
    return done


class Follow:
    """A long-running `wa-sessions` subprocess whose stdout and stderr lines are collected."""

    def __init__(
        self, server: ServerProcess, *args: str, cwd: Path | None = None, target: str = ""
    ) -> None:
        self.process = subprocess.Popen(
            [WA, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_for(target or server.target),
            stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(pipe, into), daemon=True)
            for pipe, into in (
                (self.process.stdout, self.lines),
                (self.process.stderr, self.errors),
            )
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(pipe: IO[str], into: list[str]) -> None:
        for line in pipe:
            into.append(line.rstrip("\n"))

    def wait_for(self, predicate: Any, timeout: float = 20, stderr: bool = False) -> list[str]:
        lines = self.errors if stderr else self.lines
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(lines):
                return list(lines)
            if self.process.poll() is not None and not any(t.is_alive() for t in self._threads):
                break
            time.sleep(0.02)
        raise AssertionError(f"not seen; output so far: {self.lines}, stderr: {self.errors}")

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        rc = self.process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return rc, "".join(line + "\n" for line in self.errors)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.finish()


def current_qr(server: ServerProcess, session: str) -> str:
    with BlockingSessionsClient(server.target) as client:
        return next(client.qr_codes(session)).value


def qr_block(lines: list[str]) -> str:
    """The QR code `wa-sessions qr` printed: the lines between its caption and the note."""
    start = next(i for i, line in enumerate(lines) if ": QR code " in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("(also written to"))
    return "\n".join(lines[start + 1 : end])


def test_try_it_as_a_new_user(server: ServerProcess, tmp_path: Path) -> None:
    """A new user's walk (the README's own blocks are run by tests/test_readme.py): create, a
    scannable QR in the terminal (decoded back, as is the PNG), watch seeing the states change
    as the sim scans and disconnects."""
    commands = [
        ["wa-sessions", "create", "demo", "--label", "team=support"],
        ["wa-sessions", "qr", "demo", "--png", "qr.png"],
        ["wa-sessions", "watch"],
        ["wa-sessions", "sim", "scan", "demo"],
        ["wa-sessions", "sim", "disconnect", "demo", "428"],
    ]
    create, show_qr, follow, scan, disconnect = (c[1:] for c in commands)

    created = wa(server, *create, cwd=tmp_path).stdout
    assert created.startswith("demo  CONNECTING")
    qr = Follow(server, *show_qr, cwd=tmp_path)
    watch: Follow | None = None
    try:
        lines = qr.wait_for(lambda ls: any(x.startswith("(also written to") for x in ls))
        value = current_qr(server, "demo")
        # What the terminal showed, and the PNG, decode to the session's current QR value.
        assert decode_terminal(qr_block(lines)) == [value]
        assert decode_png(tmp_path / "qr.png") == [value]
        assert len(qr_block(lines).splitlines()[0]) <= 80  # fits a terminal, yet scannable

        watch = Follow(server, *follow, cwd=tmp_path)  # not a TTY: one line per change
        watch.wait_for(lambda ls: any("now following changes" in x for x in ls))
        assert wa(server, *scan, cwd=tmp_path).stdout == "demo  scanned\n"
        rc, _ = qr.finish()
        assert rc == 0 and qr.lines[-1] == "demo: linked; the session is connecting"
        watch.wait_for(lambda ls: any("demo  CONNECTED" in x for x in ls))

        assert wa(server, *disconnect, cwd=tmp_path).stdout == "demo  disconnected with 428\n"
        watch.wait_for(lambda ls: sum("demo  CONNECTED" in x for x in ls) >= 2)
    finally:
        qr.stop()
        if watch is not None:
            watch.stop()
    states = [x.split()[2] for x in watch.lines if "  demo  " in x]
    # The snapshot, then one line per change, in order: link, drop, reconnect.
    order = ["QR_PENDING", "PAIRING", "CONNECTED", "RECONNECTING", "CONNECTED"]
    it = iter(states)
    assert all(s in it for s in order), states
    assert any("[CLOSED]" in x for x in watch.lines)

    doc = json.loads(wa(server, "get", "demo", "--json").stdout)
    assert doc["state"] == "CONNECTED" and doc["labels"] == {"team": "support"}
    assert doc["account"]["phone_number"].startswith("+")
    assert doc["last_disconnect"]["code"] == 428
    names = [s["name"] for s in json.loads(wa(server, "--json", "list").stdout)["sessions"]]
    assert "sessions/demo" in names
    human = wa(server, "get", "demo").stdout
    assert "last disconnect  428 CONNECTION_CLOSED" in human


def test_lifecycle_commands_and_json_watch(server: ServerProcess) -> None:
    wa(server, "create", "life", "--no-start")
    assert json.loads(wa(server, "start", "life", "--json").stdout)["name"] == "sessions/life"
    wa(server, "wait", "life", "QR_PENDING")
    # `qr` ends with one error line and exit 1 when the session stops showing codes.
    qr = Follow(server, "qr", "life", "--json")
    first = json.loads(qr.wait_for(lambda ls: len(ls) >= 1)[0])
    assert first["value"].startswith("2@") and first["sequence"] == 1
    assert "STOPPED" in wa(server, "stop", "life").stdout
    rc, err = qr.finish()
    assert rc == 1 and json.loads(qr.lines[-1]) == {"outcome": "STOPPED"}
    assert err.count("\n") == 1 and "stopped showing QR codes" in err

    events = [
        json.loads(x)
        for x in wa(server, "watch", "life", "--json", "--until", "STOPPED").stdout.splitlines()
    ]
    assert events[0]["event"] == "snapshot" and events[0]["session"]["state"] == "STOPPED"
    assert events[0]["resume_token"]
    table = wa(server, "watch", "life", "--table", "--until", "STOPPED").stdout.splitlines()
    assert table[0].startswith("wa-sessions watch ")
    assert table[1].split() == ["SESSION", "STATE", "ACTION", "ACCOUNT", "STATUS"]
    assert table[2].split()[:3] == ["life", "STOPPED", "NONE"]

    wa(server, "start", "life")
    wa(server, "wait", "life", "QR_PENDING")
    logged_out = wa(server, "logout", "life", "--json").stdout
    assert json.loads(logged_out)["state"] == "LOGGED_OUT"
    assert wa(server, "delete", "life").stdout.strip() == "life  deleted"
    err = wa(server, "get", "life", rc=1).stderr
    assert err == "wa-sessions: error: NOT_FOUND SESSION_NOT_FOUND: session life does not exist\n"


def test_pairing_code_and_network(server: ServerProcess) -> None:
    wa(server, "create", "phone")
    wa(server, "wait", "phone", "QR_PENDING")
    code = json.loads(wa(server, "pair", "phone", "+15551234567", "--json").stdout)["code"]
    assert len(code) == 8
    human = wa(server, "pair", "phone", "+15551234567").stdout.strip()
    assert len(human) == 9 and human[4] == "-"
    wa(server, "sim", "pair", "phone", human)
    linked = json.loads(wa(server, "wait", "phone", "CONNECTED", "--json").stdout)
    assert linked["account"]["phone_number"] == "+15551234567"

    assert wa(server, "sim", "network", "down").stdout.strip() == "network down"
    try:
        down = json.loads(wa(server, "wait", "phone", "RECONNECTING", "--json").stdout)
        assert down["required_action"] == "CHECK_NETWORK"
    finally:
        wa(server, "sim", "network", "up")
    wa(server, "wait", "phone", "CONNECTED")


def test_policy_table_and_json(server: ServerProcess) -> None:
    table = wa(server, "policy").stdout.splitlines()
    assert table[0].split()[:4] == ["CODE", "REASON", "ACTION", "THEN"]
    row440 = next(x for x in table if x.startswith("440 "))
    assert "FAIL" in row440 and "RESOLVE_CONFLICT" in row440
    doc = json.loads(wa(server, "policy", "--json").stdout)
    assert {r["code"] for r in doc["rules"]} >= {401, 408, 440, 515}
    assert doc["qr"]["max_codes"] == FAST["qr"]["max_codes"]


def test_errors_are_one_line_and_non_zero(server: ServerProcess) -> None:
    bad = wa(server, "create", "Bad!", rc=1)
    assert bad.stderr.startswith("wa-sessions: error: INVALID_ARGUMENT INVALID_SESSION_ID: ")
    assert bad.stderr.count("\n") == 1 and bad.stdout == ""
    as_json = json.loads(wa(server, "create", "Bad!", "--json", rc=1).stdout)["error"]
    assert as_json["code"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in as_json["field_violations"]] == ["session_id"]

    wa(server, "create", "twice", "--no-start")
    dup = wa(server, "create", "twice", rc=1).stderr
    assert dup.startswith("wa-sessions: error: ALREADY_EXISTS ") and dup.count("\n") == 1

    down = wa(server, "list", env=env_for("127.0.0.1:1"), rc=1).stderr
    assert down.startswith("wa-sessions: error: cannot reach the server at 127.0.0.1:1 ")
    assert down.count("\n") == 1
    # --server wins over WASESSIONS_SERVER.
    wa(server, "list", "--server", server.target, env=env_for("127.0.0.1:1"))

    usage = wa(server, "wait", "x", "SLEEPING", rc=2).stderr
    assert "invalid choice: 'SLEEPING'" in usage


def test_api_key_from_flag_and_environment(tmp_path: Path) -> None:
    """Against a server that checks keys: `--api-key` and WASESSIONS_API_KEY both work, and
    without a key the error is one UNAUTHENTICATED line."""
    key = "cli-test-key-0123456789abcdef"
    (tmp_path / "keys").write_text(key + "\n")
    config = merge(CONFIG, {"api_keys_file": str(tmp_path / "keys")})
    keyed = spawn_server(tmp_path / "data", write_config(tmp_path / "config.toml", config))
    try:
        wa(keyed, "create", "k", "--no-start", "--api-key", key)
        listed = wa(keyed, "list", "--json", env=env_for(keyed.target, WASESSIONS_API_KEY=key))
        assert [s["name"] for s in json.loads(listed.stdout)["sessions"]] == ["sessions/k"]
        denied = wa(keyed, "list", rc=1).stderr
        assert denied.startswith("wa-sessions: error: UNAUTHENTICATED ") and denied.count("\n") == 1
        wrong = wa(keyed, "get", "k", "--api-key", "wrong-key-0123456789abcdef", rc=1).stderr
        assert wrong.startswith("wa-sessions: error: UNAUTHENTICATED ")
    finally:
        keyed.process.terminate()
        keyed.process.wait(timeout=30)


COMMANDS = [
    [],
    ["create"],
    ["list"],
    ["get"],
    ["start"],
    ["stop"],
    ["logout"],
    ["delete"],
    ["pair"],
    ["watch"],
    ["wait"],
    ["qr"],
    ["policy"],
    ["sim"],
    ["sim", "scan"],
    ["sim", "pair"],
    ["sim", "disconnect"],
    ["sim", "network"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "wa-sessions")
def test_help_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: wa-sessions {' '.join(command)}".rstrip())
    if command:  # the connection flags are on every parser, `sim` included
        assert "--server" in text


def test_help_runs_as_console_script() -> None:
    done = subprocess.run([WA, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for name in ("create", "qr", "watch", "policy", "sim"):
        assert name in done.stdout


@pytest.mark.parametrize(
    ("session", "line"),
    [
        ("pos1", "--server {t} --json sim scan {s}"),
        ("pos2", "sim --server {t} --json scan {s}"),
        ("pos3", "sim scan --server {t} {s} --json"),
        ("pos4", "--json sim scan {s} --server {t}"),
    ],
)
def test_global_flags_in_every_position(server: ServerProcess, session: str, line: str) -> None:
    """`--server`/`--json` before or after `sim` and `scan` (the environment points nowhere, so
    only the flag can reach the server)."""
    nowhere = env_for("127.0.0.1:1")
    wa(server, "create", session, "--server", server.target, env=nowhere)
    wa(server, "wait", session, "QR_PENDING")
    done = wa(server, *shlex.split(line.format(t=server.target, s=session)), env=nowhere)
    assert json.loads(done.stdout) == {"ok": True, "done": "scanned", "name": f"sessions/{session}"}
    wa(server, "wait", session, "CONNECTED")


@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("127.0.0.1", "127.0.0.1:50051"),
        ("localhost", "localhost:50051"),
        ("127.0.0.1:7000", "127.0.0.1:7000"),
        ("[::1]", "[::1]:50051"),
        ("[::1]:7000", "[::1]:7000"),
        ("::1", "[::1]:50051"),
        ("dns:///example.com:7000", "dns:///example.com:7000"),
        ("unix:/tmp/wa.sock", "unix:/tmp/wa.sock"),
    ],
)
def test_server_without_a_port_means_50051(given: str, target: str) -> None:
    assert cli.server_target(given) == target


def test_a_host_without_port_dials_50051(server: ServerProcess) -> None:
    """The CLI dials (and names) port 50051, not gRPC's 443."""
    done = subprocess.run(
        [WA, "list", "--server", "127.0.0.1", "--timeout", "3"],
        capture_output=True,
        text=True,
        env=env_for("127.0.0.1:1"),
        timeout=60,
    )
    assert "443" not in done.stderr
    if done.returncode != 0:  # NOTE: on a shared machine a server may listen on 50051
        assert done.stderr.startswith(
            "wa-sessions: error: cannot reach the server at 127.0.0.1:50051 "
        )
        assert "127.0.0.1:50051: " in done.stderr


def test_tls_mismatch_is_one_line_without_grpc_core_logs(tmp_path: Path) -> None:
    """Against a TLS server: a plaintext CLI, and a TLS CLI that does not trust the server's
    certificate, each print exactly one line (gRPC's C core stays quiet); a GRPC_VERBOSITY the
    user set is respected."""
    pki = make_pki(tmp_path / "pki")
    config = merge(CONFIG, {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)})
    tls = spawn_server(tmp_path / "data", write_config(tmp_path / "config.toml", config))
    env = {k: v for k, v in env_for(tls.target).items() if k != "GRPC_VERBOSITY"}
    try:
        for flags in ([], ["--tls"]):
            err = wa(tls, "list", "--timeout", "5", *flags, env=env, rc=1).stderr
            assert err.startswith(f"wa-sessions: error: cannot reach the server at {tls.target} ")
            assert err.count("\n") == 1, err
        loud = wa(
            tls, "list", "--tls", "--timeout", "5", env={**env, "GRPC_VERBOSITY": "INFO"}, rc=1
        )
        assert "Handshake failed" in loud.stderr and loud.stderr.count("\n") > 1
        assert wa(tls, "list", "--ca-file", str(pki.ca), env=env).stderr == "no sessions\n"
    finally:
        tls.process.terminate()
        tls.process.wait(timeout=30)


def test_qr_says_what_the_session_does_while_there_is_no_code(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Network down while `qr` waits: one line per retry with the close and the wait; back up,
    a new code; a 440 ends it with one error line naming the final state and its reason."""
    wa(server, "create", "offline")
    wa(server, "wait", "offline", "QR_PENDING")
    qr = Follow(server, "qr", "offline", "--png", "qr.png", "--no-terminal", cwd=tmp_path)
    try:
        qr.wait_for(lambda ls: "QR code 1 written to qr.png" in ls)
        wa(server, "sim", "network", "down")
        try:
            retrying = re.compile(
                r"^offline: RECONNECTING 408 CONNECTION_LOST: .+; retry 2/200 in 0\.\d s$"
            )
            qr.wait_for(lambda ls: any(retrying.match(x) for x in ls))
        finally:
            wa(server, "sim", "network", "up")
        qr.wait_for(lambda ls: ls[-1].startswith("QR code "))
        wa(server, "sim", "disconnect", "offline", "440", "--message", "replaced")
        rc, err = qr.finish()
    finally:
        qr.stop()
    assert rc == 1
    assert err.startswith(
        "wa-sessions: error: offline: the session stopped showing QR codes; "
        "it is FAILED 440 CONNECTION_REPLACED: replaced (Stopped after 440 "
    )
    assert err.count("\n") == 1
    assert "offline: RECONNECTING 408 CONNECTION_LOST: " in qr.lines[1]  # right after code 1


def test_watch_prints_each_change_at_its_own_time(server: ServerProcess) -> None:
    """Replayed with --resume-token, a change keeps the time it happened (`update_time`), not
    the time it is printed."""
    wa(server, "create", "stamp", "--no-start")
    snapshot = json.loads(wa(server, "watch", "stamp", "--json", "--until", "STOPPED").stdout)
    wa(server, "start", "stamp")
    wa(server, "wait", "stamp", "QR_PENDING")
    time.sleep(2.1)  # a replay now prints at another second than the changes happened
    replay = ["watch", "stamp", "--resume-token", snapshot["resume_token"]]
    until = ["--until", "QR_PENDING", "--changes-only"]
    changes = [json.loads(x) for x in wa(server, *replay, *until, "--json").stdout.splitlines()]
    lines = wa(server, *replay, *until, "--lines").stdout.splitlines()
    stamps = [c["session"]["update_time"] for c in changes if c["event"] == "change"]
    assert len(stamps) >= 2 and len(lines) == len(stamps)
    for line, stamp in zip(lines, stamps, strict=True):
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
        assert line.startswith(when.strftime("%H:%M:%S") + "  stamp  "), (line, stamp)


def test_watch_a_missing_session_is_not_found(server: ServerProcess) -> None:
    err = wa(server, "watch", "nobody", rc=1).stderr
    assert err == "wa-sessions: error: NOT_FOUND SESSION_NOT_FOUND: session nobody does not exist\n"


def test_watch_says_when_the_server_goes_and_comes_back(tmp_path: Path) -> None:
    """While the server is down `watch` says so on stderr, once per outage, and says when it is
    back; the lines on stdout go on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
    config = write_config(tmp_path / "config.toml", CONFIG)
    first = spawn_server(tmp_path / "data", config, "--listen", target)
    watch = Follow(first, "watch", "--lines")
    second: ServerProcess | None = None
    try:
        watch.wait_for(lambda ls: any("now following changes" in x for x in ls))
        first.process.terminate()
        first.process.wait(timeout=30)
        watch.wait_for(
            lambda ls: any("reconnecting to the server..." in x for x in ls), stderr=True
        )
        time.sleep(1.5)  # several attempts fail meanwhile; still one line
        second = spawn_server(tmp_path / "data", config, "--listen", target)
        watch.wait_for(lambda ls: "reconnected to the server" in ls, stderr=True, timeout=30)
        wa(second, "create", "back", "--no-start")
        watch.wait_for(lambda ls: any("  back  STOPPED" in x for x in ls))
    finally:
        watch.stop()
        for running in (first, second):
            if running is not None and running.process.poll() is None:
                running.process.terminate()
                running.process.wait(timeout=30)
    assert watch.errors == [
        "reconnecting to the server... (UNAVAILABLE)",
        "reconnected to the server",
    ]
