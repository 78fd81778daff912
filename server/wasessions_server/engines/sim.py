"""`sim`: an embedded, honest stand-in for WhatsApp as Baileys sees it.

It paces QR codes like WhatsApp, pairs on a scan or a pairing code and then closes with 515,
rejects revoked credentials with 401, keeps banned accounts banned, fails connects while the
network is down, and closes live connections with any injected code. What the "server side"
must remember across restarts (a secret, revoked credentials, blocked accounts) is persisted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from wasessions_server.engines.base import (
    Closed,
    ConnectTarget,
    EngineEvent,
    Opened,
    PairSuccess,
    Qr,
    not_in_qr_phase,
    queued_events,
)
from wasessions_server.errors import ServiceError, Status, invalid_argument
from wasessions_server.model import Account
from wasessions_server.policy import QR_WINDOW_OVER_MESSAGE, QrSchedule
from wasessions_server.policy import codes as wa
from wasessions_server.rates import ConnectMeter
from wasessions_server.store import CredentialVault, FileCredentialVault

log = logging.getLogger(__name__)

CREDS_FILE = "creds.json"
CROCKFORD = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"

DEFAULT_MESSAGES = {
    wa.RESTART_REQUIRED: "Stream Errored (restart required)",
    wa.SERVICE_UNAVAILABLE: "Stream Errored (service unavailable)",
    wa.BAD_SESSION: "Stream Errored (bad session)",
    wa.CONNECTION_REPLACED: "Stream Errored (conflict: replaced)",
    wa.CONNECTION_CLOSED: "Connection Terminated by Server",
    wa.MULTIDEVICE_MISMATCH: "Multi-device mismatch",
    wa.CONNECTION_LOST: "Connection was lost",
    wa.BANNED: "Connection Failure (banned)",
    wa.CLIENT_OUTDATED: "Connection Failure (client outdated)",
    wa.FORBIDDEN: "Connection Failure (forbidden)",
    wa.TEMPORARILY_BANNED: "Connection Failure (temporarily banned)",
    wa.LOGGED_OUT: "Stream Errored (conflict: device_removed)",
}
_UNREACHABLE = "WebSocket Error (getaddrinfo ENOTFOUND web.whatsapp.com)"
_DROP_SLICE = 10  # connections SetNetwork(false) closes per event-loop iteration
_BLOCKING_CODES = (wa.TEMPORARILY_BANNED, wa.FORBIDDEN, wa.BANNED)
_REVOKING_CODES = (wa.LOGGED_OUT, wa.MULTIDEVICE_MISMATCH)


class SimWorld:
    """WhatsApp's side: which credentials are valid, which accounts are blocked, the network."""

    def __init__(self, state_dir: Path, qr: QrSchedule) -> None:
        self.qr = qr
        self.reachable = True
        self.connects = ConnectMeter()  # every connection attempt that reached "WhatsApp"
        self._vault = FileCredentialVault(state_dir)
        state = json.loads(self._vault.read("world.json") or b"{}")
        self._secret: str = state.get("secret") or secrets.token_hex(32)
        self._revoked: set[str] = set(state.get("revoked", []))
        self._blocked: dict[str, int] = dict(state.get("blocked", {}))
        self.live: dict[str, SimConnection] = {}
        if "secret" not in state:
            self._save()

    def _save(self) -> None:
        state = {"secret": self._secret, "revoked": sorted(self._revoked), "blocked": self._blocked}
        self._vault.write("world.json", json.dumps(state).encode())

    def sign(self, jid: str, nonce: str) -> str:
        return hmac.new(
            self._secret.encode(), f"{jid}:{nonce}".encode(), hashlib.sha256
        ).hexdigest()

    def verdict(self, creds: dict[str, Any]) -> tuple[int, str] | None:
        """Why WhatsApp would refuse these credentials, or None if they log in."""
        try:
            jid, nonce, token = creds["jid"], creds["nonce"], creds["token"]
        except (KeyError, TypeError):
            return wa.BAD_SESSION, "Stream Errored (bad session: unreadable credentials)"
        if not hmac.compare_digest(self.sign(jid, nonce), token) or token in self._revoked:
            return wa.LOGGED_OUT, "Connection Failure (logged out)"
        if jid in self._blocked:
            code = self._blocked[jid]
            return code, DEFAULT_MESSAGES[code]
        return None

    def revoke(self, creds: dict[str, Any] | None) -> None:
        if creds and "token" in creds:
            self._revoked.add(creds["token"])
            self._save()

    def block(self, jid: str, code: int) -> None:
        self._blocked[jid] = code
        self._save()


class SimConnection:
    """One simulated WebSocket: a QR phase without credentials, else an open connection."""

    def __init__(self, world: SimWorld, target: ConnectTarget) -> None:
        self.world = world
        self.target = target
        self.creds: dict[str, Any] | None = None
        self.phase = "connecting"  # -> qr | open | closed
        self._events: asyncio.Queue[EngineEvent | None] = asyncio.Queue()
        self._qr_timer: asyncio.TimerHandle | None = None
        self._qr_sent = 0
        self._pairing: tuple[str, str] | None = None  # (code, phone number)

    def start(self) -> None:
        world, session_id = self.world, self.target.session_id
        if not world.reachable:
            self._close(wa.CONNECTION_LOST, _UNREACHABLE)
            return
        previous = world.live.get(session_id)
        if previous is not None:
            previous._close(wa.CONNECTION_REPLACED, DEFAULT_MESSAGES[wa.CONNECTION_REPLACED])
        world.live[session_id] = self
        raw = self.target.vault.read(CREDS_FILE)
        if raw is None:
            self.phase = "qr"
            self._next_qr()
            return
        try:
            self.creds = json.loads(raw)
        except ValueError:
            self.creds = None
        refusal = world.verdict(self.creds or {})
        if refusal is not None:
            self._close(*refusal)
            return
        assert self.creds is not None
        self.phase = "open"
        self._events.put_nowait(Opened(_account(self.creds)))

    def _next_qr(self) -> None:
        if self.phase != "qr":
            return
        schedule = self.world.qr
        if self._qr_sent >= schedule.max_codes:
            self._close(wa.CONNECTION_LOST, QR_WINDOW_OVER_MESSAGE)
            return
        lifetime = schedule.lifetime_s(self._qr_sent)
        self._qr_sent += 1
        ref = secrets.token_urlsafe(24)
        keys = ",".join(secrets.token_urlsafe(32) for _ in range(3))
        self._events.put_nowait(Qr(f"2@{ref},{keys}", time.time() + lifetime, self._qr_sent))
        self._qr_timer = asyncio.get_running_loop().call_later(lifetime, self._next_qr)

    def pair(self, phone_number: str | None = None) -> None:
        """The phone scanned the code (or accepted the pairing code)."""
        if self.phase != "qr":
            raise not_in_qr_phase(self.target.session_id)
        digits = (phone_number or _phone_for(self.target.session_id)).lstrip("+")
        nonce = secrets.token_hex(8)
        jid = f"{digits}:{secrets.randbelow(90) + 10}@s.whatsapp.net"
        creds = {
            "jid": jid,
            "phone_number": "+" + digits,
            "push_name": f"Sim {self.target.session_id}",
            "nonce": nonce,
            "token": self.world.sign(jid, nonce),
        }
        self.target.vault.write(CREDS_FILE, json.dumps(creds).encode())
        self.creds = creds
        self.phase = "paired"
        self._cancel_qr()
        self._events.put_nowait(PairSuccess(_account(creds)))
        # NOTE: WhatsApp always restarts the stream right after pair-success.
        self._close(wa.RESTART_REQUIRED, DEFAULT_MESSAGES[wa.RESTART_REQUIRED])

    def enter_pairing_code(self, code: str) -> None:
        if self._pairing is None:
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "NO_PAIRING_CODE",
                f"no pairing code was requested for session {self.target.session_id}",
            )
        if code.replace("-", "").upper() != self._pairing[0]:
            raise invalid_argument("code", "PAIRING_CODE_MISMATCH", "the pairing code is wrong")
        self.pair(self._pairing[1])

    def inject(self, code: int, message: str) -> None:
        creds = self.creds
        if code in _REVOKING_CODES:
            self.world.revoke(creds)
        elif code in _BLOCKING_CODES and creds is not None:
            self.world.block(str(creds["jid"]), code)
        self._close(code, message or DEFAULT_MESSAGES.get(code, f"Stream Errored ({code})"))

    def _close(self, code: int, message: str) -> None:
        if self.phase == "closed":
            return
        self._end()
        self._events.put_nowait(Closed(code, message))

    def _end(self) -> None:
        self.phase = "closed"
        self._cancel_qr()
        if self.world.live.get(self.target.session_id) is self:
            del self.world.live[self.target.session_id]

    def _cancel_qr(self) -> None:
        if self._qr_timer is not None:
            self._qr_timer.cancel()
            self._qr_timer = None

    def events(self) -> AsyncGenerator[EngineEvent, None]:
        return queued_events(self._events)

    async def request_pairing_code(self, phone_number: str) -> str:
        if self.phase != "qr":
            raise not_in_qr_phase(self.target.session_id)
        code = "".join(secrets.choice(CROCKFORD) for _ in range(8))
        self._pairing = (code, phone_number)
        return code

    async def logout(self) -> None:
        self.world.revoke(self.creds)
        await self.close()

    async def close(self) -> None:
        if self.phase != "closed":
            self._end()
        self._events.put_nowait(None)


class SimEngine:
    """The `sim` engine over one `SimWorld`."""

    name = "sim"

    def __init__(self, state_dir: Path, qr: QrSchedule) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.world = SimWorld(state_dir, qr)

    async def connect(self, target: ConnectTarget) -> SimConnection:
        self.world.connects.started()
        connection = SimConnection(self.world, target)
        connection.start()
        return connection

    def has_credentials(self, vault: CredentialVault) -> bool:
        """Whether the vault holds a credentials file: one stat, so there is nothing to cache."""
        return vault.exists(CREDS_FILE)

    async def refresh_credentials(self, vault: CredentialVault) -> bool:
        # NOTE: the same stat as `has_credentials`, cheaper than a hop to a thread (the whole
        # registry is refreshed at load).
        return self.has_credentials(vault)

    async def logout_offline(self, vault: CredentialVault) -> None:
        raw = vault.read(CREDS_FILE)
        if raw is not None:
            try:
                self.world.revoke(json.loads(raw))
            except ValueError:
                log.warning("unreadable sim credentials in %s", vault.path)

    async def aclose(self) -> None:
        for connection in list(self.world.live.values()):
            await connection.close()

    # SimulatorService operations -------------------------------------------------------------

    def live_connection(self, session_id: str) -> SimConnection:
        connection = self.world.live.get(session_id)
        if connection is None:
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "NO_ACTIVE_CONNECTION",
                f"session {session_id} has no open connection to the simulated WhatsApp",
            )
        return connection

    def scan_qr(self, session_id: str) -> None:
        self.live_connection(session_id).pair()

    def enter_pairing_code(self, session_id: str, code: str) -> None:
        self.live_connection(session_id).enter_pairing_code(code)

    def inject_disconnect(self, session_id: str, code: int, message: str) -> None:
        self.live_connection(session_id).inject(code, message)

    def set_network(self, reachable: bool) -> None:
        self.world.reachable = reachable
        if not reachable:
            self._drop(list(self.world.live.values()))

    def network_stats(self, reset: bool) -> tuple[int, int]:
        """(connects, most connects within one second) since the start or the last reset."""
        meter = self.world.connects
        stats = (meter.total, meter.peak_per_second)
        if reset:
            self.world.connects = ConnectMeter()
        return stats

    def _drop(self, connections: list[SimConnection]) -> None:
        """Closes `connections` with 408, one slice now and one per loop iteration after.

        NOTE: a real network loss reaches each connection on its own; closing ten thousand in
        one call would hand the event loop all their close handling in a single iteration.
        """
        for connection in connections[:_DROP_SLICE]:
            connection._close(wa.CONNECTION_LOST, DEFAULT_MESSAGES[wa.CONNECTION_LOST])
        rest = connections[_DROP_SLICE:]
        if rest:
            asyncio.get_running_loop().call_soon(self._drop, rest)


def _account(creds: dict[str, Any]) -> Account:
    return Account(str(creds["jid"]), str(creds["phone_number"]), str(creds["push_name"]))


def _phone_for(session_id: str) -> str:
    """A stable, plausible phone number for a session scanned by the simulated phone."""
    digest = int(hashlib.sha256(session_id.encode()).hexdigest(), 16)
    return f"+1555{digest % 10_000_000:07d}"


__all__ = ["SimConnection", "SimEngine", "SimWorld"]
