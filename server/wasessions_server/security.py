"""Security and operability settings: API keys, TLS files, limits, metrics address.

Plain values only (no grpc): the api layer turns them into its RPC guard and credentials.
Keys are kept as SHA-256 digests and compared in constant time; the keys themselves are never
stored in memory longer than it takes to hash them, and never logged.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasessions_server.errors import ConfigError

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_MIN_KEY_LENGTH = 16


class Role(enum.Enum):
    FULL = "full"
    READ = "read"


@dataclass(frozen=True, slots=True)
class ApiKey:
    digest: bytes  # sha256 of the key
    role: Role

    @property
    def client_id(self) -> str:
        """A name for this key that reveals nothing about it (for limits and logs)."""
        return "key:" + hashlib.sha256(b"wasessions-client:" + self.digest).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ApiKeys:
    keys: tuple[ApiKey, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys)

    def match(self, presented: str) -> ApiKey | None:
        """The key `presented` is, or None. Every stored digest is compared (in constant time),
        so the time taken says nothing about which key, or how much of one, matched."""
        digest = hashlib.sha256(presented.encode()).digest()
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


def parse_api_keys(text: str, where: str) -> ApiKeys:
    """One key a line: `KEY`, `sha256:HEX`, `read:KEY` or `read:sha256:HEX`; blank lines and
    lines starting with `#` are skipped. Errors name the line, never the key."""
    keys: list[ApiKey] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        role = Role.FULL
        if line.startswith("read:"):
            role, line = Role.READ, line.removeprefix("read:")
        if line.startswith("sha256:"):
            hexdigest = line.removeprefix("sha256:")
            if not _HEX_DIGEST.fullmatch(hexdigest):
                raise ConfigError(f"{where}: line {number}: sha256: needs 64 hex digits")
            digest = bytes.fromhex(hexdigest)
        else:
            if len(line) < _MIN_KEY_LENGTH or not (line.isascii() and line.isprintable()):
                raise ConfigError(
                    f"{where}: line {number}: a key is at least {_MIN_KEY_LENGTH} printable "
                    "ASCII characters"
                )
            digest = hashlib.sha256(line.encode()).digest()
        keys.append(ApiKey(digest, role))
    if not keys:
        raise ConfigError(f"{where}: no keys in the file")
    return ApiKeys(tuple(keys))


def load_api_keys(path: Path) -> ApiKeys:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"api_keys_file: cannot read {path}: {error}") from None
    return parse_api_keys(text, f"api_keys_file {path}")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: bytes
    key: bytes
    client_ca: bytes | None = None  # set: clients must present a certificate it signed


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    api_keys: ApiKeys = field(default_factory=ApiKeys)
    tls: TlsFiles | None = None
    #: Overall health ("" and the service names) answers without a key.
    open_health: bool = True
    #: Reflection answers without a key.
    open_reflection: bool = True
    #: Without keys (or client certificates) the server listens on loopback only unless set.
    allow_unauthenticated: bool = False
    #: Streams (WatchSessions, WatchQrCodes, health Watch) one client may hold open at once.
    max_streams_per_client: int = 500
    #: Largest request message accepted, in bytes.
    max_message_bytes: int = 1024 * 1024
    #: host:port for Prometheus metrics over HTTP; None = off.
    metrics_listen: str | None = None

    @property
    def authenticates(self) -> bool:
        return bool(self.api_keys) or (self.tls is not None and self.tls.client_ca is not None)


TOP_KEYS = {
    "api_keys_file",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "metrics_listen",
    "allow_unauthenticated",
    "security",
}
_SECTION_KEYS = {"open_health", "open_reflection", "max_streams_per_client", "max_message_bytes"}


def security_from_mapping(data: Mapping[str, Any], listen: str) -> SecuritySettings:
    """The security settings from the top-level keys and the `[security]` table."""
    section = data.get("security", {})
    if not isinstance(section, Mapping):
        raise ConfigError("security: expected a table")
    for key in section:
        if key not in _SECTION_KEYS:
            raise ConfigError(
                f"security.{key}: unknown key (allowed: {', '.join(sorted(_SECTION_KEYS))})"
            )
    base = SecuritySettings()
    keys_file = _path(data.get("api_keys_file"), "api_keys_file")
    api_keys = load_api_keys(keys_file) if keys_file is not None else ApiKeys()
    settings = SecuritySettings(
        api_keys=api_keys,
        tls=_tls(data),
        open_health=_bool(section.get("open_health", base.open_health), "security.open_health"),
        open_reflection=_bool(
            section.get("open_reflection", base.open_reflection), "security.open_reflection"
        ),
        allow_unauthenticated=_bool(
            data.get("allow_unauthenticated", False), "allow_unauthenticated"
        ),
        max_streams_per_client=_int(
            section.get("max_streams_per_client", base.max_streams_per_client),
            "security.max_streams_per_client",
        ),
        max_message_bytes=_int(
            section.get("max_message_bytes", base.max_message_bytes),
            "security.max_message_bytes",
            minimum=4096,
        ),
        metrics_listen=_address(data.get("metrics_listen"), "metrics_listen"),
    )
    if (
        not settings.authenticates
        and not settings.allow_unauthenticated
        and not is_loopback(listen)
    ):
        raise ConfigError(
            f"listen: {listen} is not a loopback address, and no API keys (api_keys_file) or "
            "client certificates (tls_client_ca) are configured; without them the server "
            "listens on loopback only (set allow_unauthenticated to override)"
        )
    return settings


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(data: Mapping[str, Any]) -> TlsFiles | None:
    cert = _path(data.get("tls_cert"), "tls_cert")
    key = _path(data.get("tls_key"), "tls_key")
    client_ca = _path(data.get("tls_client_ca"), "tls_client_ca")
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError("tls_client_ca: needs tls_cert and tls_key")
        return None
    if cert is None or key is None:
        raise ConfigError("tls_cert and tls_key: give both or neither")
    return TlsFiles(
        cert=_read(cert, "tls_cert"),
        key=_read(key, "tls_key"),
        client_ca=_read(client_ca, "tls_client_ca") if client_ca is not None else None,
    )


def _read(path: Path, where: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {path}: {error.strerror}") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{where}: {path} is not a PEM file")
    return data


def _path(value: Any, where: str) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a file path, got {value!r}")
    return Path(value)


def _address(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{where}: expected host:port, got {value!r}")
    port = value.rsplit(":", 1)[1]
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{where}: expected host:port, got {value!r}")
    return value


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: expected an integer of at least {minimum}, got {value!r}")
    return value
