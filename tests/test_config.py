"""Configuration: every key validated in one place, defaults from the dataclasses, one error
shape (the key first); and the server's start-up errors as one line on stderr."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wasessions.v1 import session_service_pb2 as svc
from wasessions_server.config import JournalSettings, ServerConfig, config_from_mapping, load_config
from wasessions_server.errors import ConfigError
from wasessions_server.policy import Action, Backoff, QrSchedule, default_policy
from wasessions_server.security import SecuritySettings
from wasessions_server.sessions import ManagerSettings

from tests.conftest import ServerFactory
from tests.helpers import spawn_server

SERVER = str(Path(sys.executable).with_name("wa-sessions-server"))

#: Makes python-magic's own loader fail as it does without Debian's libmagic1: no library
#: found, none loadable. The real import chain (neonize -> magic) then raises the real error.
NO_LIBMAGIC = """
import ctypes
import ctypes.util

_find_library = ctypes.util.find_library


class _CDLL(ctypes.CDLL):
    def __init__(self, name, *args, **kwargs):
        if name and "libmagic" in str(name):
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        super().__init__(name, *args, **kwargs)


ctypes.util.find_library = lambda name: None if name == "magic" else _find_library(name)
ctypes.CDLL = _CDLL
"""


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WASESSIONS_") and k != "GRPC_VERBOSITY"
    }
    return {**env, **extra}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SERVER, *args], capture_output=True, text=True, timeout=60, env=env or _env()
    )


def _error(mapping: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as error:
        config_from_mapping(mapping)
    return str(error.value)


# --- defaults and keys come from the dataclasses ---


def test_no_keys_give_every_dataclass_default() -> None:
    assert config_from_mapping({}) == ServerConfig()
    assert load_config() == ServerConfig()


def test_every_scalar_field_of_a_section_is_its_key() -> None:
    manager = {
        f.name: 7
        for f in dataclasses.fields(ManagerSettings)
        if f.type in ("int", "float", int, float)
    }
    qr = {f.name: 7 for f in dataclasses.fields(QrSchedule)}
    journal = {f.name: 7 for f in dataclasses.fields(JournalSettings)}
    config = config_from_mapping({"manager": manager, "qr": qr, "journal": journal})
    assert len(manager) >= 8
    for name in manager:
        assert getattr(config.manager, name) == 7, name
    assert config.manager.qr == QrSchedule(7, 7, 7)
    assert config.journal == JournalSettings(7, 7)
    assert isinstance(config.manager.connect_rate, float)
    section = config_from_mapping(
        {"security": {"open_health": False, "max_message_bytes": 8192}}
    ).security
    assert section == SecuritySettings(open_health=False, max_message_bytes=8192)


def test_environment_strings_are_read_as_their_type() -> None:
    config = load_config(
        None,
        {"allow_unauthenticated": "yes", "listen": "0.0.0.0:1", "engines": "sim, whatsmeow"},
    )
    assert config.security.allow_unauthenticated
    assert config.engines == ("sim", "whatsmeow")


def test_the_default_engine_is_the_server_configs_alone() -> None:
    config = config_from_mapping({"engine": "whatsmeow"})
    assert config.engine == "whatsmeow" and config.engines == ("whatsmeow",)
    assert config.manager == ManagerSettings(), "the engine is not copied into the manager's"


# --- the policy table says what applies ---


def test_515_bounds_restarts_in_a_row_at_5() -> None:
    rule = default_policy().rules[515]
    assert rule.action is Action.RESTART and rule.backoff.max_attempts == 5
    configured = config_from_mapping({"policy": {"codes": {"515": {"max_attempts": 2}}}})
    assert configured.manager.policy.rules[515].backoff.max_attempts == 2
    assert configured.manager.policy.rules[515].action is Action.RESTART


def test_code_rows_inherit_the_configured_default_timing() -> None:
    policy = config_from_mapping(
        {"policy": {"default": {"initial_delay_s": 3, "max_delay_s": 30, "max_attempts": 10}}}
    ).manager.policy
    assert policy.default.backoff == Backoff(3.0, 30.0, max_attempts=10)
    for code, rule in policy.rules.items():
        assert rule.backoff.initial_delay_s == 3.0 and rule.backoff.max_delay_s == 30.0, code
    # A row's own value is kept: 500 retries 3 times, 515 restarts 5 times in a row.
    assert policy.rules[500].backoff.max_attempts == 3
    assert policy.rules[515].backoff.max_attempts == 5
    assert policy.rules[408].backoff.max_attempts == 10


async def test_get_policy_shows_the_restart_bound(make_server: ServerFactory) -> None:
    srv = await make_server()
    rules = {r.code: r for r in (await srv.sessions.GetPolicy(svc.GetPolicyRequest())).rules}
    assert rules[515].max_attempts == 5
    assert rules[408].max_attempts == 3, "inherited from the tests' [policy.default]"
    configured = await make_server(
        {"policy": {"codes": {"515": {"max_attempts": 2, "max_delay_s": 0.25}}}},
        data_dir=srv.data_dir.parent / "other",
    )
    policy = await configured.sessions.GetPolicy(svc.GetPolicyRequest())
    rules = {r.code: r for r in policy.rules}
    assert rules[515].max_attempts == 2 and rules[515].max_delay.ToMilliseconds() == 250
    assert rules[515].initial_delay.ToMilliseconds() == 50, "inherited from [policy.default]"


# --- every error names its key ---


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ({"nonsense": 1}, "nonsense"),
        ({"listen": "nowhere"}, "listen"),
        ({"listen": "127.0.0.1:99999"}, "listen"),
        ({"listen": "10.1.2.3:50051"}, "listen"),
        ({"engine": "telegram"}, "engine"),
        ({"engine": 3}, "engine"),
        ({"engines": ["sim", "nope"]}, "engines"),
        ({"engine": "sim", "engines": ["whatsmeow"]}, "engines"),
        ({"engines": 5}, "engines"),
        ({"data_dir": ""}, "data_dir"),
        ({"shutdown_grace_s": -1}, "shutdown_grace_s"),
        ({"shutdown_grace_s": float("nan")}, "shutdown_grace_s"),
        ({"policy": 1}, "policy"),
        ({"policy": {"later": {}}}, "policy.later"),
        ({"policy": {"default": {"initial_delay_s": "soon"}}}, "policy.default.initial_delay_s"),
        ({"policy": {"default": {"multiplier": 0.5}}}, "policy.default.multiplier"),
        ({"policy": {"default": {"max_attempts": True}}}, "policy.default.max_attempts"),
        ({"policy": {"default": {"max_attempts": 1.5}}}, "policy.default.max_attempts"),
        ({"policy": {"default": {"jitter_s": -0.1}}}, "policy.default.jitter_s"),
        ({"policy": {"default": {"colour": "red"}}}, "policy.default.colour"),
        ({"policy": {"default": {"initial_delay_s": 9, "max_delay_s": 2}}},
         "policy.default.max_delay_s"),
        ({"policy": {"codes": {"440": {"action": "explode"}}}}, "policy.codes.440.action"),
        ({"policy": {"codes": {"440": {"required_action": "PRAY"}}}},
         "policy.codes.440.required_action"),
        ({"policy": {"codes": {"abc": {"action": "fail"}}}}, "policy.codes.abc"),
        ({"policy": {"codes": {"99": {"action": "fail"}}}}, "policy.codes.99"),
        ({"policy": {"codes": {"503": "fail"}}}, "policy.codes.503"),
        ({"policy": {"codes": {"503": {"initial_delay_s": 120}}}}, "policy.codes.503.max_delay_s"),
        ({"qr": {"max_codes": 0}}, "qr.max_codes"),
        ({"qr": {"timeout_s": True}}, "qr.timeout_s"),
        ({"qr": {"first": 1}}, "qr.first"),
        ({"manager": {"restore_concurrency": -1}}, "manager.restore_concurrency"),
        ({"manager": {"connect_rate": 0}}, "manager.connect_rate"),
        ({"manager": {"stable_after_s": -1}}, "manager.stable_after_s"),
        ({"manager": {"default_engine": "sim"}}, "manager.default_engine"),
        ({"manager": {"policy": {}}}, "manager.policy"),
        ({"journal": {"retention_events": "many"}}, "journal.retention_events"),
        ({"journal": {"size": 1}}, "journal.size"),
        ({"security": {"open_health": "maybe"}}, "security.open_health"),
        ({"security": {"max_message_bytes": 100}}, "security.max_message_bytes"),
        ({"security": {"allow_unauthenticated": True}}, "security.allow_unauthenticated"),
        ({"allow_unauthenticated": "perhaps"}, "allow_unauthenticated"),
        ({"metrics_listen": "nowhere"}, "metrics_listen"),
        ({"api_keys_file": 3}, "api_keys_file"),
        ({"api_keys_file": "/nonexistent/keys"}, "api_keys_file"),
        ({"tls_cert": "/nonexistent/cert.pem"}, "tls_cert"),
        ({"tls_client_ca": "/nonexistent/ca.pem"}, "tls_client_ca"),
    ],
)  # fmt: skip
def test_an_invalid_key_is_named_first(mapping: dict[str, Any], key: str) -> None:
    message = _error(mapping)
    assert message.startswith(f"{key}:") or message.startswith(f"{key} "), message
    assert "\n" not in message


def test_a_config_file_error_names_the_flag(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = \n")
    for path in (bad, tmp_path / "missing.toml"):
        with pytest.raises(ConfigError, match=r"^--config: "):
            load_config(path)


# --- through the real process: exit code, one line on stderr ---


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ('nonsense = 1\n', "nonsense"),
        ('[policy.codes.440]\naction = "explode"\n', "policy.codes.440.action"),
        ('[manager]\nconnect_rate = -1\n', "manager.connect_rate"),
        ('[qr]\nmax_codes = "six"\n', "qr.max_codes"),
        ('[security]\nmax_message_bytes = 10\n', "security.max_message_bytes"),
        ('api_keys_file = "/nonexistent/keys"\n', "api_keys_file"),
        ('listen = "10.1.2.3:50051"\n', "listen"),
        ('listen = \n', "--config"),
    ],
)  # fmt: skip
def test_the_server_exits_2_with_one_line(tmp_path: Path, content: str, key: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(content)
    data = tmp_path / "data"
    result = _run("--config", str(path), "--data-dir", str(data))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"wa-sessions-server: invalid configuration: {key}:"), lines
    assert not data.exists(), "nothing was started half-way"


@pytest.mark.parametrize(
    ("args", "env", "key"),
    [
        (("--log-level", "LOUD"), {}, "log_level"),
        ((), {"WASESSIONS_LOG_FORMAT": "xml"}, "log_format"),
        (("--engine", "telegram"), {}, "engine"),
        ((), {"WASESSIONS_METRICS_LISTEN": "everywhere"}, "metrics_listen"),
    ],
)
def test_a_flag_or_environment_value_is_named_by_its_key(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], key: str
) -> None:
    result = _run(*args, "--data-dir", str(tmp_path / "d"), env=_env(**env))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"wa-sessions-server: invalid configuration: {key}:"), lines


def test_an_environment_value_is_named_by_its_key(tmp_path: Path) -> None:
    result = _run(
        "--data-dir", str(tmp_path / "d"), env=_env(WASESSIONS_ALLOW_UNAUTHENTICATED="perhaps")
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "wa-sessions-server: invalid configuration: allow_unauthenticated: expected true or "
        "false, got 'perhaps'"
    ]


def test_without_libmagic_the_server_says_what_to_install(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_LIBMAGIC)
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = _env(PYTHONPATH=os.pathsep.join(paths))
    data = tmp_path / "data"
    result = _run("--listen", "127.0.0.1:0", "--data-dir", str(data), env=env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "whatsmeow engine cannot load: libmagic is missing" in lines[0]
    sudo = "" if os.geteuid() == 0 else "sudo "
    assert f"`{sudo}apt-get install libmagic1`" in lines[0]
    assert "--engine sim" in lines[0]
    assert not data.exists()
    # The simulation is faithful: the same environment fails python-magic's own import ...
    probe = subprocess.run(
        [sys.executable, "-c", "import magic"], capture_output=True, text=True, env=env
    )
    assert "ImportError: failed to find libmagic" in probe.stderr
    # ... and the sim engine needs nothing of it.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]
    try:
        server = spawn_server(tmp_path / "sim", None, "--engine", "sim")
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    server.process.terminate()
    assert server.process.wait(timeout=20) == 0


def test_a_taken_port_is_one_line_without_grpc_core_logs(tmp_path: Path) -> None:
    first = spawn_server(tmp_path / "first")
    try:
        args = ("--listen", first.target, "--engine", "whatsmeow")
        second = _run(*args, "--data-dir", str(tmp_path / "second"))
        assert second.returncode == 4
        assert second.stderr.splitlines() == [
            f"wa-sessions-server: cannot listen on {first.target}: Failed to bind to address "
            f"{first.target}; set GRPC_VERBOSITY=debug environment variable to see detailed "
            "error message."
        ]
        # A user's own GRPC_VERBOSITY is respected: the core's line is back.
        verbose = _run(
            *args, "--data-dir", str(tmp_path / "third"), env=_env(GRPC_VERBOSITY="ERROR")
        )
        assert verbose.returncode == 4
        assert "add_port" in verbose.stderr and len(verbose.stderr.splitlines()) == 2
        # The data directory's lock: one line too.
        locked = _run("--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "first"))
        assert locked.returncode == 3
        assert len(locked.stderr.splitlines()) == 1, locked.stderr
        assert "is in use by another wa-sessions server" in locked.stderr
    finally:
        first.process.terminate()
        assert first.process.wait(timeout=20) == 0


def test_the_journal_section_reaches_the_config() -> None:
    config = config_from_mapping({"journal": {"retention_events": 5}})
    assert config.journal == JournalSettings(retention_events=5)
    assert config.manager == ManagerSettings()


def test_a_data_directory_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    result = _run("--engine", "sim", "--listen", "127.0.0.1:0", "--data-dir", f"{tmp_path}/file/d")
    assert result.returncode == 5
    assert result.stderr.splitlines() == [
        f"wa-sessions-server: storage failed: Not a directory: {tmp_path}/file/d"
    ]
