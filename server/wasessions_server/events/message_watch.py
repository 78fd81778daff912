"""WatchMessages as plain items: started, events replayed from a token then live, resync,
heartbeats. Message resume tokens are their own kind: a WatchSessions token is not one."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from wasessions_server.events.message_journal import MessageJournal
from wasessions_server.events.tokens import ResumePoint
from wasessions_server.message_model import MessageEntry

_CHUNK = 200
_KIND = "m1"
_JOURNAL_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Started:
    seq: int


@dataclass(frozen=True, slots=True)
class Event:
    entry: MessageEntry

    @property
    def seq(self) -> int:
        return self.entry.seq


@dataclass(frozen=True, slots=True)
class MessageHeartbeat:
    seq: int
    time: float


@dataclass(frozen=True, slots=True)
class MessageResync:
    reason: str
    seq: int


MessageWatchItem = Started | Event | MessageHeartbeat | MessageResync


def format_message_token(journal_id: str, seq: int) -> str:
    raw = f"{_KIND}:{journal_id}:{seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_message_token(token: str) -> ResumePoint | None:
    """The point a WatchMessages token names, or None if it is not one."""
    if not token or len(token) > 128:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = raw.split(":")
    if len(parts) != 3 or parts[0] != _KIND or not _JOURNAL_ID.fullmatch(parts[1]):
        return None
    if not parts[2].isdigit() or len(parts[2]) > 18:
        return None
    return ResumePoint(parts[1], int(parts[2]))


async def watch_messages(
    journal: MessageJournal,
    session_id: str | None,
    resume: ResumePoint | None,
    heartbeat_s: float,
) -> AsyncGenerator[MessageWatchItem, None]:
    """Every item a watcher must see, in order; each carries the seq to resume after it.

    NOTE: the position is the watcher's own and every event is read from the durable journal
    after it, so a consumer is served at its own pace with a chunk of memory at most.
    """
    position = journal.head
    if resume is None:
        yield Started(position)
    elif resume.journal_id != journal.journal_id:
        yield MessageResync("TOKEN_FROM_OTHER_JOURNAL", position)
    elif resume.seq > position:
        yield MessageResync("TOKEN_AHEAD", position)
    else:
        position = resume.seq
    while True:
        upto = journal.head
        chunk = await journal.read_after(position, upto, _CHUNK, session_id)
        if chunk is None:
            position = journal.head
            yield MessageResync("TOKEN_EXPIRED", position)
            continue
        for entry in chunk:
            position = entry.seq
            yield Event(entry)
        if len(chunk) == _CHUNK:
            continue
        # NOTE: events of other sessions moved the head: the watcher has seen up to `upto`.
        position = max(position, upto)
        if not await journal.wait_beyond(position, heartbeat_s):
            yield MessageHeartbeat(position, time.time())
