"""The `Engine` protocol: the one seam between the manager and WhatsApp (real or simulated)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from wasessions_server.errors import ServiceError, Status
from wasessions_server.model import Account
from wasessions_server.store import CredentialVault


@dataclass(frozen=True, slots=True)
class Qr:
    """A QR code to show; `sequence` counts from 1 within one QR phase."""

    value: str
    expire_time: float
    sequence: int


@dataclass(frozen=True, slots=True)
class PairSuccess:
    """The phone linked the device; credentials are stored. WhatsApp closes with 515 next."""

    account: Account


@dataclass(frozen=True, slots=True)
class Opened:
    account: Account


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection ended with WhatsApp's code; always the last event of a connection."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Activity:
    time: float


EngineEvent = Qr | PairSuccess | Opened | Closed | Activity


@dataclass(frozen=True, slots=True)
class ConnectTarget:
    session_id: str
    vault: CredentialVault
    #: The session's proxy URL ('' for a direct connection).
    proxy: str = ""


class Connection(Protocol):
    """One connection attempt and, if it opens, its life."""

    def events(self) -> AsyncGenerator[EngineEvent, None]:
        """Every event of the connection; the last one is `Closed`. The caller closes the
        generator (`aclose`) when it stops reading early."""
        ...

    async def request_pairing_code(self, phone_number: str) -> str:
        """An 8-character code for phone-number linking; only during the QR phase."""
        ...

    async def logout(self) -> None:
        """Unlinks the device on WhatsApp's side and ends the connection (no `Closed`)."""
        ...

    async def close(self) -> None:
        """Ends the connection WITHOUT logging out; the credentials stay valid."""
        ...


class Engine(Protocol):
    name: str

    async def connect(self, target: ConnectTarget) -> Connection:
        """Starts connecting. Failure to connect is reported as a `Closed` event or raised
        (the manager treats a raise as a 408 with the error's text)."""
        ...

    def has_credentials(self, vault: CredentialVault) -> bool:
        """Whether the vault holds credentials this engine can log in with. Cheap and never
        blocking: it may answer from what the engine last learned (see `refresh_credentials`)."""
        ...

    async def refresh_credentials(self, vault: CredentialVault) -> bool:
        """Checks what is really stored, off the event loop, and returns it; `has_credentials`
        answers the same from then on. Called at load, after a wipe, on PairSuccess and on a
        Closed the policy does not retry."""
        ...

    async def logout_offline(self, vault: CredentialVault) -> None:
        """Best effort: unlink the device when no connection is open."""
        ...

    async def aclose(self) -> None: ...


async def queued_events(
    queue: asyncio.Queue[EngineEvent | None],
) -> AsyncGenerator[EngineEvent, None]:
    """A connection's events from its queue, ending after `Closed` (or at None: closed by us)."""
    while True:
        event = await queue.get()
        if event is None:
            return
        yield event
        if isinstance(event, Closed):
            return


def not_in_qr_phase(session_id: str) -> ServiceError:
    return ServiceError(
        Status.FAILED_PRECONDITION,
        "NOT_IN_QR_PHASE",
        f"session {session_id} is not showing QR codes",
    )
