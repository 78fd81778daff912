"""The README as a new user follows it: every code block, in order, exactly as pasted, against one
fresh server started the way the README says, and what the text says the output shows is checked.

Blocks are read from README.md (never copied here). A `<!-- readme-test: ... -->` line right above
a block says what it is: `skip: <reason>`, `server` (`make run ARGS=...`: the test starts that
server), `node` (run by tests/test_node.py) or a name (the block runs, and CHECKS holds what its
text claims). Unmarked blocks run by their info string: `sh` with bash (`-e`: every command must
succeed), `python` saved as a file and run with this venv's python, `toml` as the server's config
file, `json` parsed; `text` and unlabelled blocks are prose. Only the address changes: the
server listens on a free port, which replaces `127.0.0.1:50051` in the text and is the CLI's
`WASESSIONS_SERVER` (its default is that address); other `127.0.0.1:5005x` addresses get free
ports too. Blocks run in a scratch directory with `.venv/bin` first on PATH, as after
`. .venv/bin/activate`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ServerProcess, spawn_server
from tests.qr_decode import decode_png, decode_terminal

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ADDRESS = "127.0.0.1:50051"
BLOCK_TIMEOUT_S = 120
_MARKER = re.compile(r"<!-- readme-test: (.+?) -->")
_OTHER_ADDRESS = re.compile(r"127\.0\.0\.1:5005\d")
_PROSE = {"", "text"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    line: int  # where its fence is (1-based)
    lang: str  # the info string
    marker: str  # what its readme-test comment says ("" without one)
    text: str

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.marker or self.lang})"


def readme_blocks() -> list[Block]:
    """Every fenced block of README.md, in order, with its marker."""
    lines = README.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        lang = lines[i][3:].strip()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        previous = next((x for x in reversed(lines[:i]) if x.strip()), "")
        found = _MARKER.fullmatch(previous.strip())
        text = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(i + 1, lang, found.group(1) if found else "", text))
        i = end + 1
    return blocks


def blocks_marked(marker: str) -> list[Block]:
    return [b for b in readme_blocks() if b.marker == marker]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Terminal:
    """Where the blocks run: a scratch directory, the venv on PATH, the server's address."""

    def __init__(self, directory: Path, target: str) -> None:
        self.directory = directory
        self.target = target
        self._ports: dict[str, str] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WASESSIONS_")}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["WASESSIONS_SERVER"] = target

    def address(self, text: str) -> str:
        """`text` with the README's addresses replaced, and nothing else."""

        def other(match: re.Match[str]) -> str:
            found = match.group(0)
            return self._ports.setdefault(found, f"127.0.0.1:{free_port()}")

        return _OTHER_ADDRESS.sub(other, text.replace(ADDRESS, self.target))

    def run(self, argv: list[str], what: str) -> Output:
        """Runs a block to its end; a block that leaves something running fails (its streams
        must end by themselves)."""
        process = subprocess.Popen(
            argv,
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(
                f"{what}: still running after {BLOCK_TIMEOUT_S} s\n{stdout}\n{stderr}"
            ) from None
        output = Output(process.returncode, stdout, stderr, self.directory)
        assert process.returncode == 0, f"{what}: exit {process.returncode}\n{output}"
        return output


@dataclass(frozen=True)
class Output:
    rc: int
    stdout: str
    stderr: str
    cwd: Path

    def __str__(self) -> str:
        return f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"

    def docs(self) -> list[Any]:
        """The JSON documents grpcurl printed, in order."""
        return json_stream(self.stdout)


def json_stream(text: str) -> list[Any]:
    """The documents grpcurl printed (each starts with a line "{"), skipping other lines."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while (start := text.find("{\n", i)) >= 0:
        if start > 0 and text[start - 1] != "\n":
            i = start + 1
            continue
        try:
            doc, i = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        out.append(doc)
    return out


def in_order(items: list[str], wanted: list[str]) -> bool:
    it = iter(items)
    return all(w in it for w in wanted)


# What the README's text says each named block shows --------------------------------------------


def _quick_link(out: Output) -> None:
    docs = out.docs()
    assert docs[0]["name"] == "sessions/quick"
    assert any(str(d.get("value", "")).startswith("2@") for d in docs)  # a QR code
    assert docs[-1] == {"outcome": "PAIRED"}


def _changes(out: Output, name: str) -> list[dict[str, Any]]:
    return [
        d["change"]
        for d in out.docs()
        if d.get("change", {}).get("session", {}).get("name") == name
    ]


def _quick_disconnects(out: Output) -> None:
    docs = out.docs()
    assert docs[0]["snapshot"]["state"] == "CONNECTED"
    changes = [c["session"] for c in _changes(out, "sessions/quick")]
    states = [s["state"] for s in changes]
    assert in_order(states, ["RECONNECTING", "CONNECTED", "LOGGED_OUT"]), states
    retry = next(s for s in changes if s["state"] == "RECONNECTING")["retry"]
    assert retry["attempt"] == 1 and "next_attempt_time" in retry
    logged_out = changes[-1]
    assert logged_out["state"] == "LOGGED_OUT" and logged_out["required_action"] == "SCAN_QR"
    assert "has_credentials" not in logged_out  # false: grpcurl leaves it out
    assert "Code: DeadlineExceeded" in out.stderr


def _python_client(out: Output) -> None:
    lines = out.stdout.splitlines()
    qr = "\n".join(x for x in lines if x and set(x) <= set("\u2580\u2584\u2588 "))
    assert decode_terminal(qr)[0].startswith("2@")
    assert "QR phase over: PAIRED" in lines
    assert any(x.startswith("linked: +") for x in lines), lines
    events = lines[lines.index("QR phase over: PAIRED") + 2 :]
    assert events[0] == "SNAPSHOT sessions/py-demo CONNECTED " and events[1].startswith(
        "SNAPSHOT_COMPLETE"
    ), events
    assert "CHANGE sessions/py-demo RECONNECTING CLOSED" in events
    assert events[-1] == "CHANGE sessions/py-demo CONNECTED OPENED"


def _cli_walkthrough(out: Output) -> None:
    lines = out.stdout.splitlines()
    assert "cli-demo: linked; the session is connecting" in lines, lines
    states = [
        word
        for x in lines
        if "cli-demo" in x
        for word in x.split()
        if word in {"QR_PENDING", "PAIRING", "CONNECTED", "RECONNECTING", "LOGGED_OUT"}
    ]
    wanted = ["QR_PENDING", "PAIRING", "CONNECTED", "RECONNECTING", "CONNECTED", "LOGGED_OUT"]
    assert in_order(states, wanted), lines
    assert decode_png(out.cwd / "qr.png")[0].startswith("2@")


def _grpcurl_contract(out: Output) -> None:
    lines = out.stdout.splitlines()
    assert lines[:5] == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "wasessions.v1.MessageService",
        "wasessions.v1.SessionService",
        "wasessions.v1.SimulatorService",
    ]
    assert (
        "rpc WatchSessions ( .wasessions.v1.WatchSessionsRequest ) returns "
        "( stream .wasessions.v1.WatchSessionsResponse );" in out.stdout
    )
    # "describe shows the comments of the protos": the method's own comment, from the proto.
    assert proto_comment("rpc CreateSession(") in out.stdout
    assert "message Session {" in out.stdout and "QR_PENDING = 3;" in out.stdout
    assert out.docs() == [{"status": "SERVING"}]


def proto_comment(declaration: str) -> str:
    """The comment line right above `declaration` in the protos, as grpcurl prints it."""
    for proto in sorted((ROOT / "protos").rglob("*.proto")):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith(declaration):
                comment = lines[i - 1].strip()
                assert comment.startswith("// ")
                return comment
    raise AssertionError(f"{declaration} is not in the protos")


def _grpcurl_walkthrough(out: Output) -> None:
    docs = out.docs()
    walk = [d for d in docs if d.get("name") == "sessions/walk"]
    assert walk[0]["labels"] == {"team": "support"}  # CreateSession
    got = next(d for d in walk if d["state"] == "CONNECTED")  # GetSession
    assert got["has_credentials"] is True and got["account"]["phone_number"].startswith("+")
    causes = [c["cause"] for c in _changes(out, "sessions/walk")]
    assert in_order(causes, ["CREATED", "QR_SHOWN", "PAIRED", "OPENED", "CLOSED", "OPENED"]), causes
    states = [c["session"]["state"] for c in _changes(out, "sessions/walk")]
    assert in_order(states, ["CONNECTED", "RECONNECTING", "CONNECTED"]), states
    listed = next(d for d in docs if "sessions" in d)["sessions"]
    assert "sessions/walk" in [s["name"] for s in listed]
    assert {s["state"] for s in listed} == {"CONNECTED"}
    rules = next(d for d in docs if "rules" in d)["rules"]
    assert {r["code"] for r in rules} >= {401, 408, 428, 440, 515}
    assert {"outcome": "PAIRED"} in docs
    assert "grpcurl exited with 69" in out.stdout
    assert "Code: NotFound" in out.stderr and '"reason":"SESSION_NOT_FOUND"' in out.stderr


def _api_keys(out: Output) -> None:
    assert "API keys required: 3 keys (1 read-only)" in out.stderr, out
    assert out.docs() == [{}]
    assert "grpcurl exited with 80" in out.stdout  # 64 + UNAUTHENTICATED (16)
    assert "Code: Unauthenticated" in out.stderr and "API_KEY_MISSING" in out.stderr


def _session_health(out: Output) -> None:
    assert out.docs() == [{"status": "SERVING"}, {"status": "NOT_SERVING"}]


CHECKS: dict[str, Callable[[Output], None]] = {
    "quick-link": _quick_link,
    "quick-disconnects": _quick_disconnects,
    "python-client": _python_client,
    "cli-walkthrough": _cli_walkthrough,
    "grpcurl-contract": _grpcurl_contract,
    "grpcurl-walkthrough": _grpcurl_walkthrough,
    "api-keys": _api_keys,
    "session-health": _session_health,
}


# The run ---------------------------------------------------------------------------------------


def test_every_block_is_accounted_for() -> None:
    """Each block is runnable, prose, or skipped with a reason; each check names a block."""
    blocks = readme_blocks()
    markers = [b.marker for b in blocks if b.marker]
    for block in blocks:
        if block.marker.startswith("skip:"):
            assert block.marker[5:].strip(), f"{block.where}: a skip says why"
        elif block.lang in _PROSE:
            assert not block.marker, f"{block.where}: a marked block needs an info string"
        else:
            assert block.lang in {"sh", "python", "toml", "json"}, f"{block.where}: how to run?"
    named = [m for m in markers if not m.startswith("skip:") and m != "node"]
    assert len(set(named)) == len(named), named
    assert set(CHECKS) <= set(markers), set(CHECKS) - set(markers)
    assert [b.marker for b in blocks].count("server") == 1


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """The README's server block, `make run ARGS="..."`: the same server with those arguments."""
    (block,) = blocks_marked("server")
    command = shlex.split(block.text, comments=True)
    assert command[:2] == ["make", "run"] and len(command) <= 3, block.text
    args = shlex.split(command[2].removeprefix("ARGS=")) if len(command) == 3 else []
    running = spawn_server(tmp_path / "data", None, *args)
    yield running
    running.process.terminate()
    running.process.wait(timeout=30)


def test_readme_blocks_in_order_on_one_server(server: ServerProcess, tmp_path: Path) -> None:
    terminal_dir = tmp_path / "terminal"
    terminal_dir.mkdir()
    terminal = Terminal(terminal_dir, server.target)
    blocks = readme_blocks()
    started = [b.marker for b in blocks].index("server")
    ran: list[str] = []
    for index, block in enumerate(blocks):
        if block.lang in _PROSE or block.marker in {"server", "node"}:
            continue
        if block.marker.startswith("skip:"):
            continue
        assert index > started, f"{block.where} comes before the server is started"
        output = run_block(terminal, block, index)
        check = CHECKS.get(block.marker)
        if check is not None:
            try:
                check(output)
            except AssertionError as error:
                raise AssertionError(f"{block.where}: {error}\n{output}") from error
        ran.append(block.marker or block.lang)
    assert set(CHECKS) <= set(ran), ran


def run_block(terminal: Terminal, block: Block, index: int) -> Output:
    text = terminal.address(block.text)
    if block.lang == "sh":
        return terminal.run(["bash", "-e", "-c", text], block.where)
    if block.lang == "python":
        script = terminal.directory / f"readme_block_{index}.py"
        script.write_text(text)
        return terminal.run([sys.executable, script.name], block.where)
    if block.lang == "toml":
        return check_config(terminal, text, block.where)
    assert block.lang == "json", block.where
    for line in text.splitlines():
        json.loads(line)
    return Output(0, text, "", terminal.directory)


def check_config(terminal: Terminal, text: str, where: str) -> Output:
    """A configuration example is a file the server accepts: it starts with it (only the sim
    engine, so no library is needed; every key of the file is still validated)."""
    config = terminal.directory / "readme_config.toml"
    config.write_text(text)
    running = spawn_server(  # raises unless the server gets as far as listening
        terminal.directory / "config-data", config, "--engine", "sim", "--engines", "sim"
    )
    running.process.terminate()
    assert running.process.wait(timeout=30) == 0, f"{where}: {running.log}"
    return Output(0, "".join(running.log), "", terminal.directory)
