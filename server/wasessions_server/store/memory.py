"""A `SessionStore` in memory, for unit tests: the same contract as SQLite, nothing on disk."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from wasessions_server.errors import StorageError
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
