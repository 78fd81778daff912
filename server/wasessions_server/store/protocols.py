"""The store seam: what the rest of the service may ask of durable storage.

Two protocols, one per kind of data. `SessionStore` holds the session registry (one record per
session) and the event journal (every change, numbered), written together in one transaction;
`CredentialStore` holds each session's credentials. The embedded implementations are SQLite
(`SqliteStore`) and private folders (`FileCredentialStore`); `MemoryStore` serves unit tests. A
PostgreSQL store (cluster mode) slots in behind the same protocols.

NOTE: every `SessionStore` method is a coroutine, so an implementation chooses how it waits on
I/O (a thread of its own for SQLite, an async driver for PostgreSQL) and nothing above it knows.
Nothing here assumes one process sees every session forever: records are read when asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from wasessions_server.message_model import Direction, MessageEntry, MessageRecord
from wasessions_server.model import JournalEntry, SessionRecord


class SessionStore(Protocol):
    """The registry and the journal. Every error is raised as `StorageError`."""

    #: Identifies this journal: resume tokens from another journal are not honoured.
    journal_id: str

    async def load_sessions(self) -> list[SessionRecord]:
        """Every stored session record, ordered by session id."""
        ...

    async def bounds(self) -> tuple[int, int]:
        """(first, last) sequence numbers still in the journal; (last + 1, last) when empty.
        `last` never goes back, not even when every entry was pruned."""
        ...

    async def write_batch(self, entries: Sequence[JournalEntry]) -> None:
        """Appends the entries to the journal and applies them to the registry (a None record
        deletes the session), all or nothing: when it raises, nothing was written."""
        ...

    async def read_after(self, after: int, upto: int, limit: int) -> list[JournalEntry] | None:
        """Up to `limit` entries with after < seq <= upto in order, or None if some of them
        were already pruned."""
        ...

    async def prune(self, keep: int) -> None:
        """Drops all but the newest `keep` journal entries."""
        ...

    async def probe_writable(self) -> None:
        """Makes one small durable write that changes nothing else; raises `StorageError` if
        the store cannot be written now (the journal asks while commits are failing)."""
        ...

    async def close(self) -> None: ...


class MessageStore(Protocol):
    """Every message and the message journal (numbered apart from the session journal). Every
    error is raised as `StorageError`."""

    #: Identifies the message journal: resume tokens from another one are not honoured.
    message_journal_id: str

    async def message_bounds(self) -> tuple[int, int]:
        """(pruned, last): entries with seq <= pruned may be gone; `last` never goes back."""
        ...

    async def write_messages(self, entries: Sequence[MessageEntry]) -> None:
        """Appends the entries to the message journal and stores each one's record, all or
        nothing."""
        ...

    async def read_messages_after(
        self, after: int, upto: int, limit: int, session_id: str | None
    ) -> list[MessageEntry] | None:
        """Up to `limit` entries with after < seq <= upto (of one session, or all) in order, or
        None if entries after `after` were pruned."""
        ...

    async def get_message(self, session_id: str, message_id: str) -> MessageRecord | None: ...

    async def find_request(self, session_id: str, request_id: str) -> MessageRecord | None:
        """The outbound message sent with this request_id."""
        ...

    async def find_whatsapp_ids(
        self, session_id: str, direction: Direction, chat: str, sender: str, ids: Sequence[str]
    ) -> list[MessageRecord]:
        """The messages of one chat with these whatsapp_ids (INBOUND: of `sender` too, when
        given)."""
        ...

    async def list_messages(
        self,
        session_id: str | None,
        chat: str | None,
        direction: Direction | None,
        statuses: frozenset[str],
        before: int | None,
        limit: int,
    ) -> list[tuple[int, MessageRecord]]:
        """Newest first, each with its position (for the next page: `before`)."""
        ...

    async def pending_messages(self, session_id: str | None, limit: int) -> list[MessageRecord]:
        """Messages with work left (QUEUED, SENDING, or a read receipt to send), in queue
        order."""
        ...

    async def expired_messages(self, now: float, limit: int) -> list[MessageRecord]:
        """QUEUED messages whose expire_time has passed."""
        ...

    async def delete_session_messages(self, session_id: str) -> None:
        """Removes every message of the session and its message events."""
        ...

    async def prune_messages(self, before: float) -> None:
        """Drops message events older than `before`, and final messages not updated since."""
        ...


class CredentialVault(Protocol):
    """One session's credentials. A write replaces a whole item atomically: a crash leaves the
    old or the new bytes, never a torn mix."""

    #: A private folder where an engine may keep a store of its own (whatsmeow's SQLite).
    path: Path

    def ensure(self) -> Path:
        """Creates the private folder if needed and returns it."""
        ...

    def write(self, name: str, data: bytes) -> None: ...

    def read(self, name: str) -> bytes | None: ...

    def exists(self, name: str) -> bool: ...

    def wipe(self) -> None:
        """Removes every credential of the session; a crash half-way leaves nothing usable."""
        ...


class CredentialStore(Protocol):
    """Every session's credentials."""

    def vault(self, session_id: str) -> CredentialVault: ...

    def sweep(self) -> None:
        """Finishes what a crash interrupted (half-done wipes, abandoned temporary files)."""
        ...
