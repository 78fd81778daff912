"""A scripted Engine for unit tests of sessions: each connect follows the next plan."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from wasessions_server.engines import (
    Closed,
    ConnectTarget,
    EngineEvent,
    Opened,
    PairSuccess,
    Qr,
)
from wasessions_server.engines.base import (
    OutgoingMessage,
    SendInterrupted,
    SendOutcomeUnknown,
    SendRefused,
    Sent,
    queued_events,
)
from wasessions_server.model import Account
from wasessions_server.store import CredentialVault

CREDS = "creds"
ACCOUNT = Account("1555@s.whatsapp.net", "+1555", "Fake")


@dataclass(frozen=True)
class Refuse:
    """The connect raises (a network error)."""

    message: str = "no route to host"


@dataclass(frozen=True)
class Hang:
    """The connect never finishes (until cancelled)."""


Step = EngineEvent | Refuse | Hang
#: What the next send does: None sends it; an exception is raised from `send` (a
#: SendInterrupted / SendOutcomeUnknown also closes the connection with 428).
SendScript = SendRefused | SendInterrupted | SendOutcomeUnknown | None
#: session id, connect number for it (from 1) -> what the connect does.
Plan = Callable[[str, int], list[Step]]


def stays_open(session_id: str, attempt: int) -> list[Step]:
    return [Opened(ACCOUNT)]


class FakeConnection:
    def __init__(self, engine: FakeEngine, target: ConnectTarget, steps: list[Step]) -> None:
        self.target = target
        self.closed = False
        self.logged_out = False
        self._engine = engine
        self._queue: asyncio.Queue[EngineEvent | None] = asyncio.Queue()
        for step in steps:
            assert not isinstance(step, Refuse | Hang)
            self.push(step)

    def push(self, event: EngineEvent) -> None:
        if isinstance(event, PairSuccess):
            self.target.vault.write(CREDS, b"linked")
        self._queue.put_nowait(event)

    def events(self) -> AsyncGenerator[EngineEvent, None]:
        return queued_events(self._queue)

    async def request_pairing_code(self, phone_number: str) -> str:
        return "ABCD1234"

    async def logout(self) -> None:
        self.logged_out = True
        self._engine.revoked.add(self.target.session_id)
        await self.close()

    async def close(self) -> None:
        self.closed = True
        self._queue.put_nowait(None)

    async def send(self, message: OutgoingMessage) -> Sent:
        if self.closed:
            raise SendInterrupted("closed")
        await self._engine.send_gate.wait()
        failure = self._engine.send_failures.pop(0) if self._engine.send_failures else None
        if isinstance(failure, SendInterrupted | SendOutcomeUnknown):
            if isinstance(failure, SendOutcomeUnknown):
                self._engine.sent.append((self.target.session_id, message))
            self.push(Closed(428, "connection lost (scripted)"))
            self.closed = True
            raise failure
        if failure is not None:
            raise failure
        self._engine.sent.append((self.target.session_id, message))
        whatsapp_id = message.whatsapp_id or f"ENGINE{len(self._engine.sent)}"
        return Sent(whatsapp_id, time.time())

    async def mark_read(self, chat: str, sender: str, whatsapp_ids: tuple[str, ...]) -> None:
        if self.closed:
            raise SendInterrupted("closed")
        self._engine.read.append((self.target.session_id, chat, sender, whatsapp_ids))


@dataclass
class FakeEngine:
    plan: Plan = stays_open
    name: str = "fake"
    connects: dict[str, int] = field(default_factory=dict)
    connections: list[FakeConnection] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    refreshes: int = 0
    #: True: the engine keeps the whatsapp_id the caller chose (like the sim).
    fixes_message_ids: bool = True
    #: Every message a connection took (session id, message), copies included.
    sent: list[tuple[str, OutgoingMessage]] = field(default_factory=list)
    #: Read receipts sent: (session id, chat, sender, whatsapp ids).
    read: list[tuple[str, str, str, tuple[str, ...]]] = field(default_factory=list)
    #: What the next sends do, in order (see SendScript).
    send_failures: list[SendScript] = field(default_factory=list)
    #: Cleared: sends wait (a slow WhatsApp).
    send_gate: asyncio.Event = field(default_factory=asyncio.Event)
    _known: dict[str, bool] = field(default_factory=dict)

    async def connect(self, target: ConnectTarget) -> FakeConnection:
        n = self.connects[target.session_id] = self.connects.get(target.session_id, 0) + 1
        steps = self.plan(target.session_id, n)
        if steps and isinstance(steps[0], Refuse):
            raise ConnectionError(steps[0].message)
        if steps and isinstance(steps[0], Hang):
            await asyncio.Event().wait()
        connection = FakeConnection(self, target, steps)
        self.connections.append(connection)
        return connection

    def __post_init__(self) -> None:
        self.send_gate.set()

    def live(self, session_id: str) -> FakeConnection:
        return [c for c in self.connections if c.target.session_id == session_id][-1]

    def has_credentials(self, vault: CredentialVault) -> bool:
        return self._known.get(str(vault.path), False)

    async def refresh_credentials(self, vault: CredentialVault) -> bool:
        self.refreshes += 1
        has = await asyncio.to_thread(vault.exists, CREDS)
        self._known[str(vault.path)] = has
        return has

    async def logout_offline(self, vault: CredentialVault) -> None:
        self.revoked.add(vault.path.name)

    async def aclose(self) -> None:
        return None


def qr(sequence: int = 1) -> Qr:
    return Qr(f"qr-{sequence}", 0.0, sequence)


def closed(code: int, message: str = "") -> Closed:
    return Closed(code, message or f"closed with {code}")
