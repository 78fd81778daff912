"""WatchSessions as plain items: snapshot, changes, resume from a token, resync, heartbeats."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from wasessions_server.events.journal import EventJournal, FellBehind
from wasessions_server.events.tokens import ResumePoint
from wasessions_server.model import JournalEntry, SessionRecord

_REPLAY_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Snapshot:
    record: SessionRecord
    seq: int


@dataclass(frozen=True, slots=True)
class SnapshotComplete:
    seq: int


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change; `entry.record` is None when the session was deleted."""

    entry: JournalEntry

    @property
    def seq(self) -> int:
        return self.entry.seq


@dataclass(frozen=True, slots=True)
class Heartbeat:
    seq: int
    time: float


@dataclass(frozen=True, slots=True)
class Resync:
    reason: str
    seq: int


WatchItem = Snapshot | SnapshotComplete | Change | Heartbeat | Resync
SnapshotSource = Callable[[frozenset[str] | None], Iterable[SessionRecord]]


async def watch(
    journal: EventJournal,
    snapshot: SnapshotSource,
    session_ids: frozenset[str] | None,
    resume: ResumePoint | None,
    heartbeat_s: float,
) -> AsyncIterator[WatchItem]:
    """Every item a watcher must see, in order; each carries the seq to resume after it.

    `snapshot` must return the committed records of the watched sessions: the journal's
    listeners keep that view in step with `journal.head`, so no change falls between the two.
    """
    subscription = journal.subscribe(session_ids)
    try:
        head = journal.head
        start = _resume_verdict(journal, resume, head)
        if start is None:
            if resume is not None:
                yield Resync(_resync_reason(journal, resume, head), head)
            for item in _snapshot(snapshot, session_ids, head):
                yield item
        else:
            replayed = await _replay(journal, session_ids, start, head)
            if replayed is None:
                yield Resync("TOKEN_EXPIRED", head)
                for item in _snapshot(snapshot, session_ids, head):
                    yield item
            else:
                for entry in replayed:
                    yield Change(entry)
        while True:
            try:
                latest = await subscription.next(heartbeat_s)
            except FellBehind:
                head = journal.head
                yield Resync("STREAM_FELL_BEHIND", head)
                for item in _snapshot(snapshot, session_ids, head):
                    yield item
                continue
            if latest is None:
                yield Heartbeat(journal.head, time.time())
            elif latest.seq > head:
                yield Change(latest)
    finally:
        subscription.close()


def _resume_verdict(journal: EventJournal, resume: ResumePoint | None, head: int) -> int | None:
    """The seq to replay after, or None when a (new) snapshot is needed."""
    if resume is None or resume.journal_id != journal.journal_id or resume.seq > head:
        return None
    return resume.seq


def _resync_reason(journal: EventJournal, resume: ResumePoint, head: int) -> str:
    if resume.journal_id != journal.journal_id:
        return "TOKEN_FROM_OTHER_JOURNAL"
    return "TOKEN_AHEAD" if resume.seq > head else "TOKEN_EXPIRED"


def _snapshot(
    snapshot: SnapshotSource, session_ids: frozenset[str] | None, head: int
) -> Iterable[WatchItem]:
    for record in snapshot(session_ids):
        yield Snapshot(record, head)
    yield SnapshotComplete(head)


async def _replay(
    journal: EventJournal, session_ids: frozenset[str] | None, after: int, upto: int
) -> list[JournalEntry] | None:
    """The entries after `after` up to `upto` for the watched sessions; None if pruned."""
    out: list[JournalEntry] = []
    while after < upto:
        chunk = await journal.read_after(after, upto, _REPLAY_CHUNK)
        if chunk is None:
            return None
        if not chunk:
            break
        out.extend(e for e in chunk if session_ids is None or e.session_id in session_ids)
        after = chunk[-1].seq
    return out
