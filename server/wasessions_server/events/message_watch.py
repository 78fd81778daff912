"""WatchMessages as plain items: started, events replayed from a token then live, resync,
heartbeats. Message resume tokens are their own kind: a WatchSessions token is not one."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from wasessions_server.events.message_journal import MessageJournal
from wasessions_server.events.tokens import (
    MESSAGES_KIND,
    ResumePoint,
    format_token,
    parse_token,
)
from wasessions_server.message_model import MessageEntry

_CHUNK = 200


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
    return format_token(journal_id, seq, MESSAGES_KIND)


def parse_message_token(token: str) -> ResumePoint | None:
    """The point a WatchMessages token names, or None if it is not one."""
    return parse_token(token, MESSAGES_KIND)


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
