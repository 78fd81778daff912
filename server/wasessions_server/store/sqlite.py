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
"""


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

    def _integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def _close(self) -> None:
        self._db.close()
