"""The message journal: message changes group-committed with their records, numbered apart from
the session journal, and read back by watchers at their own pace."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from wasessions_server.errors import StorageError, shutting_down
from wasessions_server.message_model import EventType, MessageEntry, MessageRecord
from wasessions_server.store import MessageStore

log = logging.getLogger(__name__)


class MessageJournal:
    """Appends message changes durably (each with the message's new record, in one transaction)
    and wakes watchers only after the commit.

    NOTE: watchers hold no queue here: each reads the durable journal after its own position,
    so a slow one costs no memory and is never told to resync for being slow.
    """

    def __init__(self, store: MessageStore, head: int) -> None:
        """Use `open`: `head` must be the store's last sequence number."""
        self._store = store
        self.journal_id = store.message_journal_id
        self._pending: list[tuple[MessageEntry, asyncio.Future[MessageEntry]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._advanced = asyncio.Event()
        self.head = head  # the last durable sequence number
        self._next_seq = head + 1
        self._closed = False
        self.draining = False

    @classmethod
    async def open(cls, store: MessageStore) -> MessageJournal:
        _, head = await store.message_bounds()
        return cls(store, head)

    @property
    def store(self) -> MessageStore:
        return self._store

    async def append(self, kind: EventType, record: MessageRecord) -> MessageEntry:
        """Stores `record` with its event; returns once both are durable."""
        if self._closed:
            raise StorageError("the message journal is closed (server shutting down)")
        entry = MessageEntry(self._next_seq, kind, record, time.time())
        self._next_seq += 1
        future: asyncio.Future[MessageEntry] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="message-journal")
        return await asyncio.shield(future)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            entries = [entry for entry, _ in batch]
            try:
                await self._store.write_messages(entries)
            except StorageError as error:
                log.error("message journal commit of %d changes failed: %s", len(entries), error)
                # NOTE: nothing was written: later changes already queued take these numbers.
                self._pending = [
                    (dataclasses.replace(e, seq=e.seq - len(entries)), f) for e, f in self._pending
                ]
                self._next_seq -= len(entries)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.head = entries[-1].seq
            for entry, future in batch:
                if not future.done():
                    future.set_result(entry)
            self._advanced.set()
            self._advanced = asyncio.Event()

    async def wait_beyond(self, seq: int, timeout_s: float) -> bool:
        """Waits until the head passes `seq`; False after `timeout_s` without that."""
        if self.draining:
            raise shutting_down()
        if self.head > seq:
            return True
        advanced = self._advanced
        try:
            async with asyncio.timeout(timeout_s):
                await advanced.wait()
        except TimeoutError:
            pass
        if self.draining:
            raise shutting_down()
        return self.head > seq

    async def read_after(
        self, after: int, upto: int, limit: int, session_id: str | None
    ) -> list[MessageEntry] | None:
        """Durable entries after `after` up to `upto`; None when some were pruned."""
        return await self._store.read_messages_after(after, upto, limit, session_id)

    def drain(self) -> None:
        """Ends every watcher with UNAVAILABLE at its next wait."""
        self.draining = True
        self._advanced.set()

    async def flush(self) -> None:
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})

    async def close(self) -> None:
        await self.flush()
        self._closed = True
