"""The client is its own distribution, and the Makefile's libmagic1 check, as real processes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "client"
#: Distributions and packages of the server that the client must never pull in.
SERVER_ONLY = ("neonize", "prometheus", "wasessions_server", "wa-sessions-server")


def test_no_server_import_under_client() -> None:
    for path in CLIENT.rglob("*.py"):
        text = path.read_text()
        assert not re.search(
            r"^\s*(from|import)\s+(wasessions_server|neonize|prometheus)", text, re.M
        ), path


@pytest.mark.slow
def test_client_installs_alone_in_a_fresh_venv(tmp_path: Path) -> None:
    """`pip install ./client` into a new venv (pip's own configuration finds the wheels): the
    CLI and the library work there, and nothing of the server was installed."""
    source = tmp_path / "client"
    # NOTE: a copy, so the build leaves nothing in the repository's tree.
    shutil.copytree(
        CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr

    done = subprocess.run(
        [str(venv / "bin" / "wa-sessions"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: wa-sessions"), done.stderr
    probe = (
        "import importlib.metadata as m, importlib.util as u, json, wasessions, wasessions.cli;"
        "print(json.dumps({'requires': m.requires('wa-sessions-client'),"
        "'dists': sorted(d.metadata['Name'].lower() for d in m.distributions()),"
        "'server': u.find_spec('wasessions_server') is not None,"
        "'file': wasessions.__file__}))"
    )
    found = json.loads(
        subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    )
    names = {re.split(r"[<>=!~; ]", r, maxsplit=1)[0].lower() for r in found["requires"]}
    assert names == {"grpcio", "protobuf", "googleapis-common-protos", "tenacity", "segno"}
    assert not found["server"]
    assert not [d for d in found["dists"] if d.startswith(SERVER_ONLY)], found["dists"]
    assert found["file"].startswith(str(venv))  # the installed copy, not the repository's


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_makefile_libmagic_check() -> None:
    """The three paths of `make libmagic`, with dpkg/apt-get/id overridden (nothing installed)."""
    hint = (
        "the whatsmeow engine needs libmagic1: run "
        "`sudo apt-get update && sudo apt-get install -y libmagic1` "
        '(`make run ARGS="--engine sim"` needs nothing)'
    )
    present = make("libmagic", "DPKG=true")
    assert (present.returncode, present.stdout, present.stderr) == (0, "", "")

    missing = make("libmagic", "DPKG=false", "USER_ID=1000")
    assert missing.returncode != 0
    [line] = missing.stderr.splitlines()  # one line: make's own prefix, then the hint
    assert line.startswith("Makefile:") and line.endswith(f": *** {hint}.  Stop.")

    as_root = make("libmagic", "DPKG=false", "USER_ID=0", "APT_GET=echo apt-get")
    assert as_root.returncode == 0, as_root.stderr
    assert as_root.stdout.splitlines() == [
        "installing libmagic1 (the whatsmeow engine needs it)",
        "apt-get update -qq",
    ]
    # `make run` checks it, unless the engine is sim; `make run` never installs the test tools.
    dry = make("-n", "run", "DPKG=false", "USER_ID=1000")
    assert dry.returncode != 0 and hint in dry.stderr
    sim = make("-n", "run", "ARGS=--engine sim", "DPKG=false", "USER_ID=1000")
    assert sim.returncode == 0 and "wa-sessions-server --engine sim" in sim.stdout
    assert "[test]" not in sim.stdout
