"""A `SessionStore` and `MessageStore` in memory, for unit tests: the same contracts as
SQLite, nothing on disk."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from wasessions_server.errors import StorageError
from wasessions_server.message_model import Direction, MessageEntry, MessageRecord, MessageStatus
from wasessions_server.model import JournalEntry, SessionRecord


class MemoryStore:
    """Keeps the registry and the journal in dicts and lists. Set `fail_writes` to make every
    write fail as a full disk would (nothing written, `StorageError` raised)."""

    def __init__(self) -> None:
        self.journal_id = uuid.uuid4().hex
        self.fail_writes = False
        self._sessions: dict[str, SessionRecord] = {}
        self._journal: list[JournalEntry] = []
        self._head = 0
        self.message_journal_id = uuid.uuid4().hex
        self._messages: dict[tuple[str, str], tuple[int, MessageRecord]] = {}
        self._message_journal: list[MessageEntry] = []
        self._message_head = 0
        self._message_pruned = 0
        self._next_pos = 1

    async def load_sessions(self) -> list[SessionRecord]:
        return [self._sessions[sid] for sid in sorted(self._sessions)]

    async def bounds(self) -> tuple[int, int]:
        first = self._journal[0].seq if self._journal else self._head + 1
        return first, self._head

    async def write_batch(self, entries: Sequence[JournalEntry]) -> None:
        if self.fail_writes:
            raise StorageError("cannot write to the memory store: disk is full (simulated)")
        for entry in entries:
            # NOTE: stored as read back from a real store: without `before`.
            stored = dataclasses.replace(entry, before=None)
            if entry.record is None:
                self._sessions.pop(entry.session_id, None)
            else:
                self._sessions[entry.session_id] = entry.record
            self._journal.append(stored)
            self._head = entry.seq

    async def read_after(self, after: int, upto: int, limit: int) -> list[JournalEntry] | None:
        first, _ = await self.bounds()
        if after + 1 < first:
            return None
        return [e for e in self._journal if after < e.seq <= upto][:limit]

    async def prune(self, keep: int) -> None:
        self._journal = [e for e in self._journal if e.seq > self._head - keep]

    async def probe_writable(self) -> None:
        if self.fail_writes:
            raise StorageError("cannot write to the memory store: disk is full (simulated)")

    async def close(self) -> None:
        return None

    # The MessageStore protocol ----------------------------------------------------------------

    async def message_bounds(self) -> tuple[int, int]:
        return self._message_pruned, self._message_head

    async def write_messages(self, entries: Sequence[MessageEntry]) -> None:
        if self.fail_writes:
            raise StorageError("cannot write to the memory store: disk is full (simulated)")
        for entry in entries:
            key = (entry.record.session_id, entry.record.message_id)
            known = self._messages.get(key)
            if known is None:
                pos, self._next_pos = self._next_pos, self._next_pos + 1
            else:
                pos = known[0]
            self._messages[key] = (pos, entry.record)
            self._message_journal.append(entry)
            self._message_head = entry.seq

    async def read_messages_after(
        self, after: int, upto: int, limit: int, session_id: str | None
    ) -> list[MessageEntry] | None:
        if after < self._message_pruned:
            return None
        out = [
            e
            for e in self._message_journal
            if after < e.seq <= upto and (session_id is None or e.record.session_id == session_id)
        ]
        return out[:limit]

    async def get_message(self, session_id: str, message_id: str) -> MessageRecord | None:
        known = self._messages.get((session_id, message_id))
        return known[1] if known else None

    async def find_request(self, session_id: str, request_id: str) -> MessageRecord | None:
        for _, record in self._messages.values():
            if (
                record.session_id == session_id
                and record.request_id == request_id
                and record.direction is Direction.OUTBOUND
            ):
                return record
        return None

    async def find_whatsapp_ids(
        self, session_id: str, direction: Direction, chat: str, sender: str, ids: Sequence[str]
    ) -> list[MessageRecord]:
        wanted = set(ids)
        return [
            r
            for _, r in sorted(self._messages.values(), key=lambda item: item[0])
            if r.session_id == session_id
            and r.direction is direction
            and r.chat == chat
            and r.whatsapp_id in wanted
            and (direction is Direction.OUTBOUND or not sender or r.sender == sender)
        ]

    async def list_messages(
        self,
        session_id: str | None,
        chat: str | None,
        direction: Direction | None,
        statuses: frozenset[str],
        before: int | None,
        limit: int,
    ) -> list[tuple[int, MessageRecord]]:
        rows = sorted(self._messages.values(), key=lambda item: -item[0])
        out = [
            (pos, r)
            for pos, r in rows
            if (session_id is None or r.session_id == session_id)
            and (chat is None or r.chat == chat)
            and (direction is None or r.direction is direction)
            and (not statuses or r.status.value in statuses)
            and (before is None or pos < before)
        ]
        return out[:limit]

    async def pending_messages(self, session_id: str | None, limit: int) -> list[MessageRecord]:
        rows = sorted(self._messages.values(), key=lambda item: item[0])
        out = [
            r for _, r in rows if _pending(r) and (session_id is None or r.session_id == session_id)
        ]
        return out[:limit]

    async def expired_messages(self, now: float, limit: int) -> list[MessageRecord]:
        rows = sorted(self._messages.values(), key=lambda item: item[0])
        out = [
            r
            for _, r in rows
            if r.status is MessageStatus.QUEUED
            and r.expire_time is not None
            and r.expire_time <= now
        ]
        return out[:limit]

    async def delete_session_messages(self, session_id: str) -> None:
        if self.fail_writes:
            raise StorageError("cannot write to the memory store: disk is full (simulated)")
        self._messages = {k: v for k, v in self._messages.items() if k[0] != session_id}
        self._message_journal = [
            e for e in self._message_journal if e.record.session_id != session_id
        ]

    async def prune_messages(self, before: float) -> None:
        old = [e.seq for e in self._message_journal if e.time < before]
        if old:
            self._message_pruned = max(self._message_pruned, max(old))
            self._message_journal = [e for e in self._message_journal if e.seq > max(old)]
        self._messages = {
            k: (pos, r)
            for k, (pos, r) in self._messages.items()
            if _pending(r) or r.update_time >= before
        }


def _pending(record: MessageRecord) -> bool:
    return record.status in (MessageStatus.QUEUED, MessageStatus.SENDING) or record.read_requested
