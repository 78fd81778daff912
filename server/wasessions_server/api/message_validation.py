"""Argument checks of MessageService (and the simulator's message RPCs).

Like `validation`, they run before any state is looked at (argument errors win) and raise
`invalid_argument(field, REASON, sentence)`. Enum filters come back as value names (`"QUEUED"`,
`"INBOUND"`), so the layers below need not know the generated code.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from wasessions.v1 import message_pb2, simulator_service_pb2

from wasessions_server.api.validation import PHONE_NUMBER, _shown, page_size, request_id
from wasessions_server.errors import ServiceError, invalid_argument
from wasessions_server.model import NAME_PREFIX, SESSION_ID_PATTERN

__all__ = [
    "ALL_SESSIONS",
    "MessageFilter",
    "MessageName",
    "chat_filter",
    "contact",
    "direction",
    "emoji",
    "failure_count",
    "failure_kind",
    "format_page_token",
    "message_id",
    "message_name",
    "message_names",
    "no_content",
    "page_size",
    "page_token",
    "parent",
    "receipt",
    "recipient",
    "request_id",
    "same_session_message",
    "statuses",
    "text",
    "ttl",
    "whatsapp_id",
]

ALL_SESSIONS = "sessions/-"
MESSAGES_SEGMENT = "/messages/"
MESSAGE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
# NOTE: WhatsApp's own message ids are upper-case hex today, but other clients use other
# alphabets; the sim and redeliveries only need them bounded and printable.
WHATSAPP_ID_PATTERN = MESSAGE_ID_PATTERN
USER_SERVER = "@s.whatsapp.net"
GROUP_SERVER = "@g.us"
USER_JID = re.compile(r"([1-9][0-9]{6,14})@s\.whatsapp\.net")
# Old groups are `{creator}-{timestamp}@g.us`, newer ones `120363...@g.us`.
GROUP_JID = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?@g\.us")
MAX_TEXT = 65_536
MAX_EMOJI = 32
MAX_MARK_READ = 1000
MAX_CURSOR = 512

_MESSAGE_ID_RULE = "1 to 128 characters of A-Z, a-z, 0-9, '_' and '-'"
_CONTACT_RULE = (
    "an E.164 phone number ('+', then 7 to 15 digits with no leading 0, e.g. +15551234567) "
    "or a WhatsApp JID (15551234567@s.whatsapp.net)"
)
_RECIPIENT_RULE = _CONTACT_RULE + ", or a group JID (...@g.us)"


class MessageName(NamedTuple):
    session_id: str
    message_id: str

    def __str__(self) -> str:
        return f"{NAME_PREFIX}{self.session_id}{MESSAGES_SEGMENT}{self.message_id}"


def message_id(value: str, field: str = "message_id") -> str:
    if not MESSAGE_ID_PATTERN.fullmatch(value):
        raise invalid_argument(
            field,
            "INVALID_MESSAGE_NAME",
            f"{field} must be {_MESSAGE_ID_RULE}; got {_shown(value)}",
        )
    return value


def message_name(value: str, field: str = "name") -> MessageName:
    """`sessions/{session_id}/messages/{message_id}`, split."""
    if not value:
        raise invalid_argument(field, "INVALID_MESSAGE_NAME", f"{field} is required")
    session, sep, message = value.removeprefix(NAME_PREFIX).partition(MESSAGES_SEGMENT)
    if (
        not value.startswith(NAME_PREFIX)
        or not sep
        or not SESSION_ID_PATTERN.fullmatch(session)
        or not MESSAGE_ID_PATTERN.fullmatch(message)
    ):
        raise invalid_argument(
            field,
            "INVALID_MESSAGE_NAME",
            f"{field} must be 'sessions/{{session_id}}/messages/{{message_id}}' with a message id "
            f"of {_MESSAGE_ID_RULE}; got {_shown(value)}",
        )
    return MessageName(session, message)


def message_names(values: Iterable[str], field: str = "messages") -> list[MessageName]:
    """1 to 1000 message names, all of one session (MarkRead); duplicates are kept once."""
    names = [message_name(v, f"{field}[{i}]") for i, v in enumerate(values)]
    if not names:
        raise invalid_argument(field, "INVALID_MESSAGE_NAME", f"{field} needs at least one name")
    if len(names) > MAX_MARK_READ:
        raise invalid_argument(field, "INVALID_MESSAGE_NAME", f"at most {MAX_MARK_READ} names")
    for i, name in enumerate(names):
        if name.session_id != names[0].session_id:
            raise invalid_argument(
                f"{field}[{i}]",
                "MESSAGES_OF_SEVERAL_SESSIONS",
                f"all {field} must be of one session ({names[0].session_id!r}); "
                f"{field}[{i}] is of {name.session_id!r}",
            )
    return list(dict.fromkeys(names))


def same_session_message(value: str, session_id: str, field: str) -> MessageName:
    """A message name (`reply_to`, `reaction.message`) of the sending session."""
    name = message_name(value, field)
    if name.session_id != session_id:
        raise invalid_argument(
            field,
            "MESSAGE_OF_ANOTHER_SESSION",
            f"{field} must be a message of sessions/{session_id}; got one of "
            f"sessions/{name.session_id}",
        )
    return name


def parent(value: str, field: str = "parent", *, allow_all: bool = True) -> str | None:
    """The session id of `sessions/{session_id}`, or None for `sessions/-` (every session)."""
    if value == ALL_SESSIONS and allow_all:
        return None
    rule = "'sessions/' followed by a session id" + (" or 'sessions/-'" if allow_all else "")
    if not value:
        raise invalid_argument(field, "INVALID_SESSION_NAME", f"{field} is required")
    session = value.removeprefix(NAME_PREFIX)
    if not value.startswith(NAME_PREFIX) or not SESSION_ID_PATTERN.fullmatch(session):
        raise invalid_argument(
            field, "INVALID_SESSION_NAME", f"{field} must be {rule}; got {_shown(value)}"
        )
    return session


def recipient(value: str, field: str = "to", *, allow_group: bool = True) -> str:
    """An E.164 number or a JID, as the chat's JID (`15551234567@s.whatsapp.net`, `...@g.us`)."""
    if PHONE_NUMBER.fullmatch(value):
        return value[1:] + USER_SERVER
    if USER_JID.fullmatch(value) or (allow_group and GROUP_JID.fullmatch(value)):
        return value
    if not value:
        raise invalid_argument(field, "INVALID_RECIPIENT", f"{field} is required")
    rule = _RECIPIENT_RULE if allow_group else _CONTACT_RULE
    raise invalid_argument(
        field, "INVALID_RECIPIENT", f"{field} must be {rule}; got {_shown(value)}"
    )


def contact(value: str, field: str = "sender") -> str:
    """A person (not a group) as a JID: the simulator's ReceiveMessage sender."""
    return recipient(value, field, allow_group=False)


def chat_filter(value: str, field: str = "chat") -> str | None:
    """ListMessages' `chat`: None (all chats) when empty, else the JID."""
    return recipient(value, field) if value else None


def text(value: str, field: str = "text") -> str:
    """1 to 65,536 Unicode code points (Python's len of a str)."""
    if not value:
        raise invalid_argument(field, "INVALID_TEXT", f"{field} must not be empty")
    if len(value) > MAX_TEXT:
        raise invalid_argument(
            field,
            "INVALID_TEXT",
            f"{field} is at most {MAX_TEXT:,} Unicode code points; got {len(value):,}",
        )
    return value


def no_content(field: str = "text") -> ServiceError:
    """The error of a SendMessageRequest with no content set (raise it)."""
    return invalid_argument(field, "MISSING_CONTENT", "a message needs a content: text or reaction")


_ZWJ = "\u200d"
_KEYCAP = "\u20e3"
_KEYCAP_BASES = frozenset("#*0123456789")


def _continues_cluster(ch: str) -> bool:
    """A code point that extends the grapheme before it (the emoji subset of UAX #29)."""
    cp = ord(ch)
    return (
        ch in ("\ufe0e", "\ufe0f", _KEYCAP)  # variation selectors, keycap
        or 0x1F3FB <= cp <= 0x1F3FF  # skin tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # tag sequences (subdivision flags)
        or unicodedata.category(ch) in ("Mn", "Me")
    )


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _one_emoji(value: str) -> bool:
    first = value[0]
    if first in _KEYCAP_BASES:
        return value in (first + _KEYCAP, first + "\ufe0f" + _KEYCAP)
    if first.isascii() or unicodedata.category(first) not in ("So", "Sm", "Po", "Sk"):
        return False
    if _is_regional(first):
        return len(value) == 2 and _is_regional(value[1])
    after_zwj = False
    for ch in value[1:]:
        if after_zwj:
            if unicodedata.category(ch) not in ("So", "Sm", "Po", "Sk") or _is_regional(ch):
                return False
            after_zwj = False
        elif ch == _ZWJ:
            after_zwj = True
        elif not _continues_cluster(ch):
            return False
    return not after_zwj


def emoji(value: str, field: str = "reaction.emoji") -> str:
    """One emoji: a single grapheme (ZWJ sequences, skin tones, flags, keycaps), bounded."""
    if not value:
        raise invalid_argument(field, "INVALID_EMOJI", f"{field} is required")
    if len(value) > MAX_EMOJI or not _one_emoji(value):
        raise invalid_argument(
            field,
            "INVALID_EMOJI",
            f"{field} must be one emoji (a single grapheme of at most {MAX_EMOJI} code points); "
            f"got {_shown(value)}",
        )
    return value


def whatsapp_id(value: str, field: str = "whatsapp_id") -> str | None:
    """The simulator's ReceiveMessage id: None (make a fresh one) when empty."""
    if not value:
        return None
    if not WHATSAPP_ID_PATTERN.fullmatch(value):
        raise invalid_argument(
            field, "INVALID_WHATSAPP_ID", f"{field} must be {_MESSAGE_ID_RULE}; got {_shown(value)}"
        )
    return value


def ttl(value: timedelta | None, retention: timedelta, field: str = "ttl") -> timedelta | None:
    """None (the configured default) when unset; else positive and at most the retention."""
    if value is None:
        return None
    if value <= timedelta(0):
        raise invalid_argument(field, "INVALID_TTL", f"{field} must be positive")
    if value > retention:
        raise invalid_argument(
            field,
            "INVALID_TTL",
            f"{field} is at most the message retention ({retention.total_seconds():g} s); "
            f"got {value.total_seconds():g} s",
        )
    return value


_DIRECTION_NAMES = {
    v: n
    for n, v in message_pb2.Message.Direction.items()
    if v != message_pb2.Message.DIRECTION_UNSPECIFIED
}
_STATUS_NAMES = {
    v: n
    for n, v in message_pb2.Message.Status.items()
    if v != message_pb2.Message.STATUS_UNSPECIFIED
}


def direction(value: int, field: str = "direction") -> str | None:
    """ListMessages' `direction`: None (both) when unspecified, else `INBOUND` or `OUTBOUND`."""
    if value == message_pb2.Message.DIRECTION_UNSPECIFIED:
        return None
    name = _DIRECTION_NAMES.get(value)
    if name is None:
        raise invalid_argument(field, "INVALID_DIRECTION", f"{field} is not a message direction")
    return name


def statuses(values: Iterable[int], field: str = "statuses") -> frozenset[str]:
    """Status names; empty means all."""
    out = set()
    for i, value in enumerate(values):
        name = _STATUS_NAMES.get(value)
        if name is None:
            raise invalid_argument(
                f"{field}[{i}]", "INVALID_STATUS", f"{field}[{i}] is not a message status"
            )
        out.add(name)
    return frozenset(out)


RECEIPTS = frozenset({"DELIVERED", "READ", "PLAYED"})
_FAILURE_KINDS = {
    v: n
    for n, v in simulator_service_pb2.InjectSendFailureRequest.Kind.items()
    if v != simulator_service_pb2.InjectSendFailureRequest.KIND_UNSPECIFIED
}
MAX_FAILURE_COUNT = 1000


def receipt(value: int, field: str = "status") -> str:
    """The simulator's AcknowledgeMessage status: DELIVERED, READ or PLAYED."""
    name = _STATUS_NAMES.get(value)
    if name not in RECEIPTS:
        raise invalid_argument(
            field, "INVALID_STATUS", f"{field} must be DELIVERED, READ or PLAYED (a receipt)"
        )
    return name


def failure_kind(value: int, field: str = "kind") -> str:
    """REJECT, DROP_CONNECTION or DROP_AFTER_ACCEPT."""
    name = _FAILURE_KINDS.get(value)
    if name is None:
        raise invalid_argument(
            field,
            "INVALID_FAILURE_KIND",
            f"{field} must be REJECT, DROP_CONNECTION or DROP_AFTER_ACCEPT",
        )
    return name


def failure_count(value: int, field: str = "count") -> int:
    """How many sends fail: 1 to 1000; 0 means 1."""
    if not 0 <= value <= MAX_FAILURE_COUNT:
        raise invalid_argument(
            field, "INVALID_COUNT", f"{field} must be 1 to {MAX_FAILURE_COUNT} (0 means 1)"
        )
    return value or 1


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """What a ListMessages page token was made for: a token only continues the same listing."""

    session_id: str | None
    chat: str | None
    direction: str | None
    statuses: frozenset[str]

    def key(self) -> dict[str, object]:
        return {
            "parent": self.session_id,
            "chat": self.chat,
            "direction": self.direction,
            "statuses": sorted(self.statuses),
        }


_TOKEN_KIND = "messages"


def format_page_token(after: str, listing: MessageFilter) -> str:
    """An opaque token; `after` is the store's position of the last message of the page."""
    raw = json.dumps({"v": 1, "k": _TOKEN_KIND, "after": after, "filter": listing.key()})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def page_token(value: str, listing: MessageFilter, field: str = "page_token") -> str:
    """The position a page continues after ('' for the first page)."""
    if not value:
        return ""
    bad = invalid_argument(field, "INVALID_PAGE_TOKEN", f"{field} is not a token from ListMessages")
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("v") != 1 or data.get("k") != _TOKEN_KIND:
        raise bad
    after = data.get("after")
    if (
        not isinstance(after, str)
        or not after
        or len(after) > MAX_CURSOR
        or not (after.isascii() and after.isprintable())
    ):
        raise bad
    if data.get("filter") != listing.key():
        raise invalid_argument(
            field,
            "INVALID_PAGE_TOKEN",
            f"{field} was made for a different parent or filter; list again from the first page",
        )
    return after
