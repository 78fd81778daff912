"""The session registry and the event journal in one SQLite database (the embedded store).

NOTE: one thread owns the connection and runs every statement, so the event loop never waits
on the disk and SQLite never sees two threads at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from wasessions_server.errors import StorageError
from wasessions_server.message_model import (
    Direction,
    EventType,
    MessageEntry,
    MessageRecord,
    MessageStatus,
)
from wasessions_server.model import Cause, JournalEntry, SessionRecord

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    cause TEXT NOT NULL,
    record TEXT,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    chat TEXT NOT NULL,
    sender TEXT NOT NULL,
    whatsapp_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    pending INTEGER NOT NULL,
    expire_time REAL,
    update_time REAL NOT NULL,
    record TEXT NOT NULL,
    UNIQUE (session_id, message_id)
);
CREATE INDEX IF NOT EXISTS messages_request ON messages (session_id, request_id)
    WHERE request_id != '';
CREATE INDEX IF NOT EXISTS messages_wid ON messages (session_id, chat, whatsapp_id);
CREATE INDEX IF NOT EXISTS messages_pending ON messages (pending, session_id);
CREATE TABLE IF NOT EXISTS message_journal (
    seq INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    type TEXT NOT NULL,
    record TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS message_journal_session ON message_journal (session_id, seq);
"""

_MESSAGE_COLUMNS = (
    "session_id, message_id, direction, status, chat, sender, whatsapp_id, request_id, pending, "
    "expire_time, update_time, record"
)


def _pending(record: MessageRecord) -> int:
    """Whether the message has work left for the outbox (an indexed column)."""
    return int(
        record.status in (MessageStatus.QUEUED, MessageStatus.SENDING) or record.read_requested
    )


def _meta_int(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return int(row[0]) if row else 0


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (key, value),
    )


class SqliteStore:
    """Sessions and journal in `path` (WAL, synchronous=FULL: a commit survives a crash).

    Implements `SessionStore`; opening it is blocking (done once, at start)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            os.chmod(path, 0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='journal_id'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('journal_id', ?)", (uuid.uuid4().hex,))
                row = self._db.execute("SELECT value FROM meta WHERE key='journal_id'").fetchone()
            message_journal = self._db.execute(
                "SELECT value FROM meta WHERE key='message_journal_id'"
            ).fetchone()
            if message_journal is None:
                message_journal = (uuid.uuid4().hex,)
                _set_meta(self._db, "message_journal_id", message_journal[0])
            self.message_journal_id: str = message_journal[0]
        except sqlite3.Error as error:
            raise StorageError(f"cannot open {path}: {error}") from error
        self.journal_id: str = row[0]
        #: SQLite's synchronous level as it applies (2 = FULL), for the benchmarks' proof.
        self.synchronous = int(self._db.execute("PRAGMA synchronous").fetchone()[0])

    # The SessionStore protocol ----------------------------------------------------------------

    async def load_sessions(self) -> list[SessionRecord]:
        return await self._run(self._load_sessions)

    async def bounds(self) -> tuple[int, int]:
        return await self._run(self._bounds)

    async def write_batch(self, entries: Sequence[JournalEntry]) -> None:
        await self._run(self._write_batch, entries)

    async def read_after(self, after: int, upto: int, limit: int) -> list[JournalEntry] | None:
        return await self._run(self._read_after, after, upto, limit)

    async def prune(self, keep: int) -> None:
        await self._run(self._prune, keep)

    async def probe_writable(self) -> None:
        await self._run(self._probe_writable)

    async def integrity_check(self) -> str:
        return await self._run(self._integrity_check)

    # The MessageStore protocol ----------------------------------------------------------------

    async def message_bounds(self) -> tuple[int, int]:
        return await self._run(self._message_bounds)

    async def write_messages(self, entries: Sequence[MessageEntry]) -> None:
        await self._run(self._write_messages, entries)

    async def read_messages_after(
        self, after: int, upto: int, limit: int, session_id: str | None
    ) -> list[MessageEntry] | None:
        return await self._run(self._read_messages_after, after, upto, limit, session_id)

    async def get_message(self, session_id: str, message_id: str) -> MessageRecord | None:
        rows = await self._query(
            "SELECT pos, record FROM messages WHERE session_id=? AND message_id=?",
            (session_id, message_id),
        )
        return rows[0][1] if rows else None

    async def find_request(self, session_id: str, request_id: str) -> MessageRecord | None:
        rows = await self._query(
            "SELECT pos, record FROM messages WHERE session_id=? AND request_id=? "
            "AND direction='OUTBOUND'",
            (session_id, request_id),
        )
        return rows[0][1] if rows else None

    async def find_whatsapp_ids(
        self, session_id: str, direction: Direction, chat: str, sender: str, ids: Sequence[str]
    ) -> list[MessageRecord]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        sql = (
            f"SELECT pos, record FROM messages WHERE session_id=? AND chat=? AND direction=? "
            f"AND whatsapp_id IN ({marks})"
        )
        params: list[object] = [session_id, chat, direction.value, *ids]
        if direction is Direction.INBOUND and sender:
            sql += " AND sender=?"
            params.append(sender)
        return [record for _, record in await self._query(sql, tuple(params))]

    async def list_messages(
        self,
        session_id: str | None,
        chat: str | None,
        direction: Direction | None,
        statuses: frozenset[str],
        before: int | None,
        limit: int,
    ) -> list[tuple[int, MessageRecord]]:
        where: list[str] = []
        params: list[object] = []
        for column, value in (
            ("session_id", session_id),
            ("chat", chat),
            ("direction", direction.value if direction else None),
        ):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(sorted(statuses))
        if before is not None:
            where.append("pos < ?")
            params.append(before)
        sql = "SELECT pos, record FROM messages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY pos DESC LIMIT ?"
        params.append(limit)
        return await self._query(sql, tuple(params))

    async def pending_messages(self, session_id: str | None, limit: int) -> list[MessageRecord]:
        if session_id is None:
            rows = await self._query(
                "SELECT pos, record FROM messages WHERE pending=1 ORDER BY pos LIMIT ?", (limit,)
            )
        else:
            rows = await self._query(
                "SELECT pos, record FROM messages WHERE pending=1 AND session_id=? "
                "ORDER BY pos LIMIT ?",
                (session_id, limit),
            )
        return [record for _, record in rows]

    async def expired_messages(self, now: float, limit: int) -> list[MessageRecord]:
        rows = await self._query(
            "SELECT pos, record FROM messages WHERE pending=1 AND status='QUEUED' "
            "AND expire_time <= ? ORDER BY pos LIMIT ?",
            (now, limit),
        )
        return [record for _, record in rows]

    async def delete_session_messages(self, session_id: str) -> None:
        await self._run(self._delete_session_messages, session_id)

    async def prune_messages(self, before: float) -> None:
        await self._run(self._prune_messages, before)

    async def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[int, MessageRecord]]:
        return await self._run(self._select_messages, sql, params)

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # On the store's thread ---------------------------------------------------------------------

    def _load_sessions(self) -> list[SessionRecord]:
        rows = self._db.execute("SELECT record FROM sessions ORDER BY id").fetchall()
        return [SessionRecord.from_json(json.loads(r[0])) for r in rows]

    def _bounds(self) -> tuple[int, int]:
        """(first, last) sequence numbers still in the journal; (last+1, last) when empty."""
        first, last = self._db.execute("SELECT MIN(seq), MAX(seq) FROM journal").fetchone()
        stored = self._db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        head = max(last or 0, int(stored[0]) if stored else 0)
        return (first if first is not None else head + 1), head

    def _write_batch(self, entries: Sequence[JournalEntry]) -> None:
        """Applies the entries to the registry and appends them to the journal, atomically."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                head = 0
                for e in entries:
                    payload = None if e.record is None else json.dumps(e.record.to_json())
                    if payload is None:
                        self._db.execute("DELETE FROM sessions WHERE id=?", (e.session_id,))
                    else:
                        self._db.execute(
                            "INSERT INTO sessions VALUES (?, ?) "
                            "ON CONFLICT(id) DO UPDATE SET record=excluded.record",
                            (e.session_id, payload),
                        )
                    self._db.execute(
                        "INSERT INTO journal VALUES (?, ?, ?, ?, ?)",
                        (e.seq, e.session_id, e.cause.value, payload, e.time),
                    )
                    head = e.seq
                # NOTE: the head is kept apart from the journal rows so that pruning every row
                # can never make sequence numbers (and so resume tokens) start over.
                self._db.execute(
                    "INSERT INTO meta VALUES ('head', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (str(head),),
                )
                self._db.execute("COMMIT")
            except BaseException:
                # NOTE: a COMMIT that fails with SQLITE_FULL or an I/O error has already rolled
                # back; a second ROLLBACK would fail and hide the real error (disk full).
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise StorageError(f"cannot write to {self.path}: {error}") from error

    def _read_after(self, after: int, upto: int, limit: int) -> list[JournalEntry] | None:
        """Entries with after < seq <= upto, or None if some of them were already pruned."""
        first, _ = self._bounds()
        if after + 1 < first:
            return None
        rows = self._db.execute(
            "SELECT seq, session_id, cause, record, time FROM journal "
            "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after, upto, limit),
        ).fetchall()
        return [
            JournalEntry(
                seq=seq,
                session_id=session_id,
                cause=Cause(cause),
                record=None if record is None else SessionRecord.from_json(json.loads(record)),
                time=time,
            )
            for seq, session_id, cause, record, time in rows
        ]

    def _prune(self, keep: int) -> None:
        """Keeps the newest `keep` journal entries."""
        try:
            _, head = self._bounds()
            self._db.execute("DELETE FROM journal WHERE seq <= ?", (head - keep,))
        except sqlite3.Error as error:
            raise StorageError(f"cannot prune {self.path}: {error}") from error

    def _probe_writable(self) -> None:
        try:
            self._db.execute(
                "INSERT INTO meta VALUES ('probe', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (uuid.uuid4().hex,),
            )
        except sqlite3.Error as error:
            raise StorageError(f"cannot write to {self.path}: {error}") from error

    def _message_bounds(self) -> tuple[int, int]:
        return _meta_int(self._db, "message_pruned"), _meta_int(self._db, "message_head")

    def _write_messages(self, entries: Sequence[MessageEntry]) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for e in entries:
                    r = e.record
                    payload = json.dumps(r.to_json())
                    self._db.execute(
                        f"INSERT INTO messages ({_MESSAGE_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT(session_id, message_id) DO UPDATE SET "
                        "status=excluded.status, whatsapp_id=excluded.whatsapp_id, "
                        "pending=excluded.pending, update_time=excluded.update_time, "
                        "record=excluded.record",
                        (
                            r.session_id,
                            r.message_id,
                            r.direction.value,
                            r.status.value,
                            r.chat,
                            r.sender,
                            r.whatsapp_id,
                            r.request_id,
                            _pending(r),
                            r.expire_time,
                            r.update_time,
                            payload,
                        ),
                    )
                    self._db.execute(
                        "INSERT INTO message_journal VALUES (?, ?, ?, ?, ?)",
                        (e.seq, r.session_id, e.type.value, payload, e.time),
                    )
                if entries:
                    _set_meta(self._db, "message_head", str(entries[-1].seq))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise StorageError(f"cannot write to {self.path}: {error}") from error

    def _read_messages_after(
        self, after: int, upto: int, limit: int, session_id: str | None
    ) -> list[MessageEntry] | None:
        try:
            if after < _meta_int(self._db, "message_pruned"):
                return None
            sql = "SELECT seq, type, record, time FROM message_journal WHERE seq > ? AND seq <= ?"
            params: tuple[object, ...] = (after, upto)
            if session_id is not None:
                sql += " AND session_id = ?"
                params += (session_id,)
            rows = self._db.execute(sql + " ORDER BY seq LIMIT ?", (*params, limit)).fetchall()
        except sqlite3.Error as error:
            raise StorageError(f"cannot read {self.path}: {error}") from error
        return [
            MessageEntry(seq, EventType(kind), MessageRecord.from_json(json.loads(record)), time)
            for seq, kind, record, time in rows
        ]

    def _select_messages(
        self, sql: str, params: tuple[object, ...]
    ) -> list[tuple[int, MessageRecord]]:
        try:
            rows = self._db.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StorageError(f"cannot read {self.path}: {error}") from error
        return [(pos, MessageRecord.from_json(json.loads(record))) for pos, record in rows]

    def _delete_session_messages(self, session_id: str) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM messages WHERE session_id=?", (session_id,))
            self._db.execute("DELETE FROM message_journal WHERE session_id=?", (session_id,))
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StorageError(f"cannot write to {self.path}: {error}") from error

    def _prune_messages(self, before: float) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT MAX(seq) FROM message_journal WHERE time < ?", (before,)
            ).fetchone()
            if row[0] is not None:
                self._db.execute("DELETE FROM message_journal WHERE seq <= ?", (row[0],))
                pruned = max(row[0], _meta_int(self._db, "message_pruned"))
                _set_meta(self._db, "message_pruned", str(pruned))
            self._db.execute("DELETE FROM messages WHERE pending=0 AND update_time < ?", (before,))
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StorageError(f"cannot prune {self.path}: {error}") from error

    def _integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def _close(self) -> None:
        self._db.close()
