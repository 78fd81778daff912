"""Plain typed values of messages, shared by every layer: a message's record and its journal
entry. They mirror `wasessions.v1.Message` but carry no gRPC or protobuf."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from wasessions_server.model import NAME_PREFIX

MESSAGES_SEGMENT = "/messages/"


class Direction(enum.Enum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class MessageStatus(enum.Enum):
    QUEUED = "QUEUED"
    SENDING = "SENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"
    PLAYED = "PLAYED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    RECEIVED = "RECEIVED"

    @property
    def is_final(self) -> bool:
        """Nothing will change it again but receipts (which a prune may then miss)."""
        return self not in (MessageStatus.QUEUED, MessageStatus.SENDING)


#: How far an outbound message has come; a receipt only ever moves it up this ladder.
RECEIPT_RANK = {
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.PLAYED: 4,
}


class EventType(enum.Enum):
    RECEIVED = "RECEIVED"
    QUEUED = "QUEUED"
    STATUS_CHANGED = "STATUS_CHANGED"


@dataclass(frozen=True, slots=True)
class MessageError:
    code: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message (either direction) as last made durable."""

    session_id: str
    message_id: str
    direction: Direction
    status: MessageStatus
    chat: str
    sender: str = ""
    whatsapp_id: str = ""
    #: NOTE: never in a repr: a record that reaches a log line must not carry the text.
    text: str = field(default="", repr=False)
    #: A reaction: the message name reacted to, and the emoji ('' when not a reaction).
    reaction_to: str = ""
    reaction: str = ""
    #: The message name replied to ('' for none).
    reply_to: str = ""
    request_id: str = ""
    #: The ttl asked for (seconds; 0 = the default), kept to compare idempotent retries.
    ttl_s: float = 0.0
    attempts: int = 0
    error: MessageError | None = None
    create_time: float = 0.0
    update_time: float = 0.0
    sent_time: float | None = None
    delivered_time: float | None = None
    read_time: float | None = None
    expire_time: float | None = None
    #: INBOUND: MarkRead asked for a read receipt that has not gone out yet.
    read_requested: bool = False

    @property
    def name(self) -> str:
        return f"{NAME_PREFIX}{self.session_id}{MESSAGES_SEGMENT}{self.message_id}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            name: getattr(self, name)
            for name in self.__slots__
            if name not in ("direction", "status", "error")
        }
        data["direction"] = self.direction.value
        data["status"] = self.status.value
        if self.error is not None:
            err = self.error
            data["error"] = {"code": err.code, "reason": err.reason, "message": err.message}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageRecord:
        values = dict(data)
        values["direction"] = Direction(values["direction"])
        values["status"] = MessageStatus(values["status"])
        error = values.pop("error", None)
        values["error"] = MessageError(**error) if error else None
        return cls(**values)


@dataclass(frozen=True, slots=True)
class MessageEntry:
    """One durable message event: the message as it was right after it."""

    seq: int
    type: EventType
    record: MessageRecord
    time: float
