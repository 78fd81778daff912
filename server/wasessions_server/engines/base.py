"""The `Engine` protocol: the one seam between the sessions layer and WhatsApp."""

from __future__ import annotations

import asyncio
import enum
import secrets
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


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message someone sent to the session (text, or a reaction to one of its messages).

    NOTE: the engine acknowledges it to WhatsApp only when the consumer asks for the next event:
    the consumer stores it durably before it reads on, so WhatsApp's delivery receipt follows
    durability. A redelivery (same chat, sender and whatsapp_id) may come again after a crash.
    """

    whatsapp_id: str
    #: The chat's JID (the sender's for a one-to-one chat, the group's for a group).
    chat: str
    #: The sender's JID.
    sender: str
    #: When WhatsApp says it was sent (seconds since the epoch).
    time: float
    text: str = ""
    #: For a reaction: the whatsapp_id of the message reacted to, and the emoji.
    reaction_to: str = ""
    reaction: str = ""
    #: The whatsapp_id of the message this one quotes ('' for none).
    reply_to: str = ""


class ReceiptKind(enum.Enum):
    DELIVERED = "DELIVERED"
    READ = "READ"
    PLAYED = "PLAYED"


@dataclass(frozen=True, slots=True)
class Receipt:
    """The recipient's device reports messages of the session delivered, read or played."""

    chat: str
    whatsapp_ids: tuple[str, ...]
    kind: ReceiptKind
    time: float


EngineEvent = Qr | PairSuccess | Opened | Closed | Activity | MessageReceived | Receipt


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to hand to WhatsApp. Exactly one of `text` and `reaction` is set."""

    #: The id to send it under ('' lets the engine choose; see `Engine.fixes_message_ids`).
    whatsapp_id: str
    #: The chat's JID.
    chat: str
    text: str = ""
    #: For a reaction: the whatsapp_id (and chat) of the message reacted to, and the emoji.
    reaction_to: str = ""
    reaction: str = ""
    #: The whatsapp_id of the message quoted ('' for none).
    reply_to: str = ""


@dataclass(frozen=True, slots=True)
class Sent:
    """WhatsApp's server took the message."""

    whatsapp_id: str
    time: float


class SendRefused(Exception):
    """WhatsApp refused the message for good (not on WhatsApp, blocked, too large...): the
    message is FAILED with this reason. `code` is WhatsApp's numeric code, or 0."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class SendInterrupted(Exception):
    """The connection went before WhatsApp took the message: it is safe to send it again (the
    connection's `Closed` follows on the event stream)."""


class SendOutcomeUnknown(Exception):
    """The connection went after the message left and before WhatsApp's answer arrived: it may
    or may not have been taken. Sent again only under the same whatsapp_id (where the engine
    fixes ids), never blindly."""


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

    async def send(self, message: OutgoingMessage) -> Sent:
        """Hands one message to WhatsApp and returns once WhatsApp's server took it. Raises
        `SendRefused`, `SendInterrupted` or `SendOutcomeUnknown`; only while open."""
        ...

    async def mark_read(self, chat: str, sender: str, whatsapp_ids: tuple[str, ...]) -> None:
        """Sends read receipts for received messages of one chat and sender. Raises
        `SendInterrupted` when the connection went first."""
        ...


class Engine(Protocol):
    name: str
    #: True when a message sent under a whatsapp_id chosen by the caller keeps it, so a resend
    #: after an interrupted attempt reaches the recipient as the same message.
    fixes_message_ids: bool

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


def new_message_id() -> str:
    """A fresh whatsapp_id in WhatsApp's own shape for ids a client chooses (3EB0 + hex)."""
    return "3EB0" + secrets.token_hex(10).upper()


def not_in_qr_phase(session_id: str) -> ServiceError:
    return ServiceError(
        Status.FAILED_PRECONDITION,
        "NOT_IN_QR_PHASE",
        f"session {session_id} is not showing QR codes",
    )
