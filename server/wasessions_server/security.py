"""Security and operability settings: API keys, TLS files, limits, metrics address.

Plain values only (no grpc): the api layer turns them into its RPC guard and credentials; the
config module reads the keys and files into them.
Keys are kept as SHA-256 digests and compared in constant time; the keys themselves are never
stored in memory longer than it takes to hash them, and never logged.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass, field

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
