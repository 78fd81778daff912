"""Processes under test: the wa-sessions server and the bare grpc.aio echo baseline, each a
real child process, measured from /proc (resident memory and CPU time of the process)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LISTENING = re.compile(r"listening on (\S+)")
_PROBING = re.compile(r"probing (\S+)")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """A child process that printed the address it listens on."""

    process: subprocess.Popen[str]
    target: str
    started: float  # time.monotonic() at spawn
    listening: float  # time.monotonic() when the address was printed
    log: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait (bounded), SIGKILL as the last resort; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def self_cpu_seconds() -> float:
    return cpu_seconds(os.getpid())


def _clean_env() -> dict[str, str]:
    """This environment without WASESSIONS_* settings, with the project root importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASESSIONS_")}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _spawn(
    command: list[str], what: str, timeout: float = 60.0, ready: re.Pattern[str] = _LISTENING
) -> Proc:
    """Starts `command` and returns once it printed `ready` (its group 1 is the target)."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_clean_env()
    )
    assert process.stderr is not None
    log: list[str] = []
    deadline = started + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        log.append(line)
        if match := ready.search(line):
            proc = Proc(process, match.group(1), started, time.monotonic(), log)
            _pump(proc)
            return proc
    process.kill()
    process.wait(10)
    raise RuntimeError(f"{what} did not start:\n" + "".join(log[-30:]))


def _pump(proc: Proc) -> None:
    """Keeps reading stderr so the child never blocks on a full pipe (keeps the tail)."""

    def pump() -> None:
        stream = proc.process.stderr
        assert stream is not None
        for line in stream:
            proc.log.append(line)
            if len(proc.log) > 2000:
                del proc.log[:1000]

    threading.Thread(target=pump, daemon=True).start()


def spawn_server(data_dir: Path, config: Mapping[str, Any]) -> Proc:
    """`python -m wasessions_server.main` over `data_dir` with `config` written as TOML."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config_file = data_dir.parent / f"{data_dir.name}.toml"
    config_file.write_text(to_toml(config))
    command = [
        sys.executable, "-m", "wasessions_server.main",
        "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
        "--config", str(config_file), "--log-level", "INFO",
    ]  # fmt: skip
    return _spawn(command, "wa-sessions-server")


def spawn_journal_server(data_dir: Path, config: Mapping[str, Any], **load: Any) -> Proc:
    """`python -m bench.journal_server`: the server plus an in-process journal load."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config_file = data_dir.parent / f"{data_dir.name}.toml"
    config_file.write_text(to_toml(config))
    command = [
        sys.executable, "-m", "bench.journal_server", "--data-dir", str(data_dir),
        "--config", str(config_file),
        *(f"--{k}={v}" for k, v in load.items()),
    ]  # fmt: skip
    return _spawn(command, "journal harness")


def spawn_probe(target: str, names_file: Path, out_file: Path, interval: float) -> Proc:
    """`python -m bench.probe`: GetSession on `target`, from a process of its own."""
    command = [
        sys.executable, "-m", "bench.probe", target, str(interval), str(names_file), str(out_file),
    ]  # fmt: skip
    return _spawn(command, "GetSession prober", ready=_PROBING)


def spawn_echo() -> Proc:
    """The bare grpc.aio baseline (bench/echo.py)."""
    return _spawn([sys.executable, "-m", "bench.echo"], "echo server")


def to_toml(config: Mapping[str, Any]) -> str:
    """The small TOML subset a server config needs (tables, strings, numbers, booleans)."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {_value(value)}")
        for key, value in table.items():
            if isinstance(value, Mapping):
                emit(value, f"{prefix}.{key}" if prefix else key)

    emit(config, "")
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value)
