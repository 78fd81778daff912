"""The Node example (examples/node, @grpc/grpc-js + @grpc/proto-loader) against a real server
process, scanned through SimulatorService: the README's Node block as pasted, the QR codes it
draws (decoded back), its usage text; and its TypeScript types from `make stubs`."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasessions import BlockingSessionsClient

from tests.helpers import FAST, ServerProcess, merge, spawn_server, write_config
from tests.qr_decode import decode_terminal
from tests.test_readme import Terminal, blocks_marked

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "node"
CONFIG = merge(FAST, {"engine": "sim", "qr": {"first_timeout_s": 60.0, "timeout_s": 60.0}})


@pytest.fixture(scope="module")
def node_example() -> Path:
    """`make stubs`: installs the example's locked npm packages and generates its types."""
    assert shutil.which("node") and shutil.which("npm"), "Node.js and npm are needed"
    done = subprocess.run(
        ["make", "-s", "stubs"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (EXAMPLE / "types" / "session_service.ts").is_file()
    return EXAMPLE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("node")
    running = spawn_server(tmp / "data", write_config(tmp / "config.toml", CONFIG))
    yield running
    running.process.terminate()
    running.process.wait(timeout=30)


class NodeRun:
    def __init__(self, example: Path, server: ServerProcess, session: str) -> None:
        self.process = subprocess.Popen(
            ["node", "index.js", "--server", server.target, "--session", session],
            cwd=example,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def qr_after(self, header: str) -> str:
        """The QR code drawn below the line `header`."""
        return qr_below(self.lines, self.lines.index(header))

    def wait_for(self, prefix: str) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            if self.process.poll() is not None and not self._pump.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {prefix!r} line in {self.lines}")

    def finish(self) -> int:
        try:
            rc = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._pump.join(timeout=10)
        return rc


def qr_below(lines: list[str], header: int) -> str:
    """The half-block lines right after line `header`."""
    block = []
    for line in lines[header + 1 :]:
        if not line or not set(line) <= set("\u2580\u2584\u2588 "):
            break
        block.append(line)
    return "\n".join(block)


def test_node_example_draws_each_qr_code_and_follows_the_state(
    node_example: Path, server: ServerProcess
) -> None:
    run = NodeRun(node_example, server, "node-qr")
    header = run.wait_for("qr 1: ")
    with BlockingSessionsClient(server.target) as client:
        value = next(client.qr_codes("node-qr")).value
        # What Node drew is the session's current QR code, read back by a real decoder (once
        # all of its lines have been read).
        deadline = time.monotonic() + 10
        while not (drawn := run.qr_after(header)) or decode_terminal(drawn) != [value]:
            assert time.monotonic() < deadline, f"{value!r} not drawn: {run.lines}"
            time.sleep(0.05)
        assert len(run.qr_after(header).splitlines()[0]) <= 80  # fits a terminal
        client.sim_scan("node-qr")
        assert run.finish() == 0, run.lines
        account = client.get_session("node-qr").account
    lines = run.lines
    assert lines[0].startswith("created sessions/node-qr ")
    assert header == "qr 1: scan it with WhatsApp (Linked devices > Link a device)"
    # Each stream in its order (the QR_PENDING line is a snapshot or a QR_SHOWN change, as
    # timing has it); "connected" last, once the QR stream ended.
    states = [x for x in lines if x.startswith("state ")]
    it = iter(states)
    for want in ("state QR_PENDING SCAN_QR", "state PAIRING WAIT PAIRED", "state CONNECTING"):
        assert any(x.startswith(want) for x in it), lines
    assert states[-1] == "state CONNECTED NONE OPENED"
    assert [x for x in lines if x.startswith("qr")] == [header, "qr-outcome PAIRED"]
    assert lines[-1] == f"connected {account.phone_number} {account.jid}"


def test_readme_node_block_as_pasted(node_example: Path, server: ServerProcess) -> None:
    """The README's Node block, verbatim, from the repository's root (only the address is the
    test server's); what the text after it says it prints."""
    (block,) = blocks_marked("node")
    terminal = Terminal(ROOT, server.target)
    out = terminal.run(["bash", "-e", "-c", terminal.address(block.text)], block.where)
    lines = out.stdout.splitlines()
    lines = lines[lines.index("created sessions/node-demo CONNECTING") :]  # after npm ci's
    assert any(x.startswith("state ") for x in lines)
    header = lines.index("qr 1: scan it with WhatsApp (Linked devices > Link a device)")
    assert decode_terminal(qr_below(lines, header))[0].startswith("2@")
    assert "qr-outcome PAIRED" in lines
    assert lines[-1].startswith("connected +"), lines


def test_node_example_help(node_example: Path) -> None:
    done = subprocess.run(
        ["node", "index.js", "--help"], cwd=node_example, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: node index.js [--server HOST:PORT] [--session ID]")
    for flag in ("--server", "--session", "--api-key", "--timeout", "--help"):
        assert f"\n  {flag} " in done.stdout, flag
    wrong = subprocess.run(
        ["node", "index.js", "--nope"], cwd=node_example, capture_output=True, text=True
    )
    assert wrong.returncode == 1
    assert wrong.stdout == "error unknown option --nope (see --help)\n"


def test_node_example_reacts_to_a_state_that_needs_a_person(
    node_example: Path, server: ServerProcess
) -> None:
    with BlockingSessionsClient(server.target) as client:
        client.create_session("node-conflict")
        client.wait_for_state("node-conflict", "QR_PENDING", timeout=20)
        client.sim_scan("node-conflict")
        client.wait_for_state("node-conflict", "CONNECTED", timeout=20)
        client.sim_inject_disconnect("node-conflict", 440)
        client.wait_for_state("node-conflict", "FAILED", timeout=20)
    run = NodeRun(node_example, server, "node-conflict")
    assert run.finish() == 1
    assert run.lines[0] == "exists sessions/node-conflict"
    assert run.lines[1] == "state FAILED RESOLVE_CONFLICT"
    assert run.lines[2].startswith("needs-action RESOLVE_CONFLICT: ")


def test_node_example_type_checks_against_generated_types(node_example: Path) -> None:
    done = subprocess.run(
        ["npm", "run", "--silent", "typecheck"],
        cwd=node_example,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The types really are the contract's: a field of Session, typed.
    session_ts = (node_example / "types" / "wasessions" / "v1" / "Session.ts").read_text()
    assert "'required_action': (_wasessions_v1_Session_RequiredAction__Output);" in session_ts
