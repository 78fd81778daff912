"""buf on the contract: `buf lint` passes with the committed rules, and the rules (lint and
breaking) really catch what they are there for."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
BUF = ROOT / "tools" / "buf" / "node_modules" / ".bin" / "buf"


@pytest.fixture(scope="module")
def buf() -> Path:
    """Installs the pinned buf (npm ci in tools/buf) through the Makefile, once."""
    done = subprocess.run(
        ["make", "-s", "tools/buf/node_modules/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert BUF.exists()
    return BUF


def run(buf: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(buf), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of protos/ (with buf.yaml) to break on purpose."""
    target = tmp_path / "protos"
    shutil.copytree(PROTOS, target)
    return target


def test_buf_lint_passes_on_protos(buf: Path) -> None:
    done = run(buf, PROTOS, "lint")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = (PROTOS / "buf.yaml").read_text().splitlines()
    # The exceptions are exactly these, and each comes with its reason (a comment above it).
    block = lines[lines.index("  except:") + 1 :]
    block = block[: next(i for i, x in enumerate(block) if not x.startswith("    "))]
    rules = [x.strip()[2:] for x in block if x.strip().startswith("- ")]
    assert rules == [
        "ENUM_VALUE_PREFIX",
        "RPC_RESPONSE_STANDARD_NAME",
        "RPC_REQUEST_RESPONSE_UNIQUE",
    ]
    for i, line in enumerate(block):
        if line.strip().startswith("- "):
            assert block[i - 1].strip().startswith("#"), line


def test_buf_lint_catches_style_errors(buf: Path, copy: Path) -> None:
    service = copy / "wasessions" / "v1" / "session_service.proto"
    text = service.read_text()
    text = text.replace("message GetSessionRequest {", "message get_session_request {")
    text = text.replace("rpc GetSession(GetSessionRequest)", "rpc GetSession(get_session_request)")
    service.write_text(text + "\nenum Undocumented {\n  UNDOCUMENTED_UNSPECIFIED = 0;\n}\n")
    done = run(buf, copy, "lint")
    assert done.returncode != 0
    assert "get_session_request" in done.stdout and "PascalCase" in done.stdout
    assert 'Enum "Undocumented" should have a non-empty comment' in done.stdout


def test_buf_breaking_catches_a_removed_field(buf: Path, copy: Path) -> None:
    session = copy / "wasessions" / "v1" / "session.proto"
    text = session.read_text()
    assert "  bool has_credentials = 7;\n" in text
    session.write_text(text.replace("  bool has_credentials = 7;\n", ""))
    done = run(buf, copy, "breaking", "--against", str(PROTOS))
    assert done.returncode != 0
    assert "has_credentials" in done.stdout
    # And the unchanged contract is compatible with itself.
    same = run(buf, PROTOS, "breaking", "--against", str(PROTOS))
    assert same.returncode == 0, same.stdout + same.stderr


def breaking_script(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "tools/buf/breaking.sh", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_current_protos_pass_against_the_committed_baseline(buf: Path) -> None:
    done = breaking_script()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == (
        "buf breaking: no breaking change against tools/buf/baseline.binpb"
    )


def test_a_break_is_reported_against_the_baseline_not_the_previous_commit(
    buf: Path, copy: Path
) -> None:
    """The comparison is with the committed baseline image, so a break stays visible however
    many commits a submission has (no git involved: the copy is not even in a repository)."""
    session = copy / "wasessions" / "v1" / "session.proto"
    session.write_text(session.read_text().replace("  bool has_credentials = 7;\n", ""))
    done = breaking_script(str(copy))
    assert done.returncode != 0
    assert 'Previously present field "7" with name "has_credentials"' in done.stdout, done.stdout
    assert "no breaking change" not in done.stdout


def test_the_baseline_is_the_contract_as_buf_builds_it(buf: Path, tmp_path: Path) -> None:
    """`make buf-baseline` has been run for the current protos: the committed image is what
    `buf build` makes of them (a contract change comes with its new baseline)."""
    image = tmp_path / "image.binpb"
    done = run(buf, PROTOS, "build", "--exclude-source-info", "-o", str(image))
    assert done.returncode == 0, done.stdout + done.stderr
    baseline = ROOT / "tools" / "buf" / "baseline.binpb"
    assert image.read_bytes() == baseline.read_bytes(), "contract changed: make buf-baseline"
