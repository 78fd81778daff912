"""The event journal: group-committed to the store, then published in sequence order."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from wasessions_server.errors import StorageError, shutting_down
from wasessions_server.model import Cause, JournalEntry, SessionRecord
from wasessions_server.store import SessionStore

log = logging.getLogger(__name__)

Listener = Callable[[JournalEntry], None]
WritableListener = Callable[[bool], None]
_PUBLISH_SLICE = 8
_PROBE_FIRST_S, _PROBE_MAX_S = 0.2, 2.0
_WAKE = JournalEntry(-1, "", Cause.CREATED, None, 0.0)  # wakes a reader; never delivered


class FellBehind(Exception):
    """The subscriber's queue overflowed: it missed changes and must resync."""


class Subscription:
    """A bounded queue of committed entries for one watcher."""

    def __init__(self, journal: EventJournal, session_ids: frozenset[str] | None, size: int):
        self.session_ids = session_ids
        self._journal = journal
        self._queue: asyncio.Queue[JournalEntry] = asyncio.Queue(size)
        self._fell_behind = False
        self._draining = False

    def drain(self) -> None:
        """Makes the reader's next `next` raise UNAVAILABLE (the server is shutting down)."""
        self._draining = True
        if self._queue.empty():
            self._queue.put_nowait(_WAKE)

    def wants(self, entry: JournalEntry) -> bool:
        return self.session_ids is None or entry.session_id in self.session_ids

    def offer(self, entry: JournalEntry) -> None:
        if self._fell_behind:
            return
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            # NOTE: a watcher that does not read must not hold the server's memory hostage:
            # drop what it has queued and tell it to resync instead.
            self._fell_behind = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(entry)  # wakes a waiting reader

    async def next(self, wait_s: float) -> JournalEntry | None:
        """The next entry; None after `wait_s` seconds without one. Raises FellBehind."""
        if not self._queue.empty():
            # NOTE: the common case under load; a timeout would cost a timer each.
            entry: JournalEntry | None = self._queue.get_nowait()
        else:
            try:
                async with asyncio.timeout(wait_s):
                    entry = await self._queue.get()
            except TimeoutError:
                entry = None
        if self._draining:
            raise shutting_down()
        if self._fell_behind:
            self._fell_behind = False
            while not self._queue.empty():
                self._queue.get_nowait()
            raise FellBehind
        return entry

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._journal.unsubscribe(self)


class EventJournal:
    """Appends changes durably and publishes each one only after it is committed.

    Appends are batched: every change queued while a commit is in flight goes into the next
    transaction, so throughput grows with load while each change still waits for its commit.
    """

    def __init__(
        self,
        store: SessionStore,
        head: int,
        *,
        retention_events: int = 100_000,
        subscriber_queue_size: int = 10_000,
    ) -> None:
        """Use `open`: `head` must be the store's last sequence number."""
        self._store = store
        self.journal_id = store.journal_id
        self._retention = retention_events
        self._queue_size = subscriber_queue_size
        self._pending: list[tuple[JournalEntry, asyncio.Future[JournalEntry]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self._writable_listeners: list[WritableListener] = []
        self._subscriptions: set[Subscription] = set()
        self._since_prune = 0
        self.head = head  # the last published (so durable) sequence number
        self._next_seq = head + 1
        self._closed = False
        self.draining = False
        #: False from a failed commit until the next one succeeds (health reports it).
        self.writable = True
        #: Commits that failed (each a batch of changes), for metrics.
        self.write_failures = 0
        self._probe: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        store: SessionStore,
        *,
        retention_events: int = 100_000,
        subscriber_queue_size: int = 10_000,
    ) -> EventJournal:
        """A journal that goes on numbering after what `store` holds."""
        _, head = await store.bounds()
        return cls(
            store,
            head,
            retention_events=retention_events,
            subscriber_queue_size=subscriber_queue_size,
        )

    def add_listener(self, listener: Listener) -> None:
        """Called in sequence order, in the event loop, for every committed entry."""
        self._listeners.append(listener)

    def add_writable_listener(self, listener: WritableListener) -> None:
        """Called in the event loop whenever `writable` changes."""
        self._writable_listeners.append(listener)

    async def load_sessions(self) -> list[SessionRecord]:
        """Every session record in the store (the registry's state at start)."""
        return await self._store.load_sessions()

    async def bounds(self) -> tuple[int, int]:
        """(first, last) sequence numbers the store still holds."""
        return await self._store.bounds()

    async def append(
        self,
        session_id: str,
        record: SessionRecord | None,
        cause: Cause,
        *,
        before: SessionRecord | None = None,
    ) -> JournalEntry:
        """Commits one change and returns it once it is durable and published; listeners get
        `before` with it, so none of them keeps a copy of the state to compare against."""
        if self._closed:
            raise StorageError("the journal is closed (server shutting down)")
        entry = JournalEntry(self._next_seq, session_id, cause, record, time.time(), before)
        self._next_seq += 1
        future: asyncio.Future[JournalEntry] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="journal-writer")
        return await asyncio.shield(future)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            entries = [entry for entry, _ in batch]
            try:
                await self._store.write_batch(entries)
            except StorageError as error:
                self.write_failures += 1
                # NOTE: once per episode: while the disk stays full, retries fail every second.
                level = logging.ERROR if self.writable else logging.DEBUG
                log.log(level, "journal commit of %d changes failed: %s", len(entries), error)
                self._set_writable(False)
                # NOTE: nothing was written, so these sequence numbers are free again; later
                # changes already queued are renumbered to keep the journal without gaps.
                self._renumber_after_failure(len(entries))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self._set_writable(True)
            for index, (entry, future) in enumerate(batch, 1):
                self.head = entry.seq
                self._publish(entry)
                if not future.done():
                    future.set_result(entry)
                if index % _PUBLISH_SLICE == 0 and index < len(batch):
                    # NOTE: a storm commits thousands of changes in one batch; publishing
                    # them in slices lets the loop answer RPCs (and wake the appenders) between.
                    await asyncio.sleep(0)
            self._since_prune += len(entries)
            if self._since_prune >= max(1000, self._retention // 10):
                self._since_prune = 0
                try:
                    await self._store.prune(self._retention)
                except StorageError as error:
                    log.warning("journal prune failed: %s", error)

    def _set_writable(self, writable: bool) -> None:
        if writable is self.writable:
            return
        self.writable = writable
        if writable:
            log.info("the store is writable again")
        elif not self._closed:
            # NOTE: a refused write leaves nothing pending (the caller got the error), so
            # without a probe, health would stay NOT_SERVING until someone wrote again.
            self._probe = asyncio.create_task(self._probe_until_writable(), name="store-probe")
        for listener in self._writable_listeners:
            try:
                listener(writable)
            except Exception:
                log.exception("journal writability listener failed")

    async def _probe_until_writable(self) -> None:
        delay = _PROBE_FIRST_S
        while not self.writable and not self._closed:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _PROBE_MAX_S)
            if self.writable or self._closed:
                return
            try:
                await self._store.probe_writable()
            except StorageError:
                continue
            self._set_writable(True)

    def _renumber_after_failure(self, failed: int) -> None:
        renumbered = []
        for entry, future in self._pending:
            moved = dataclasses.replace(entry, seq=entry.seq - failed)
            renumbered.append((moved, future))
        self._pending = renumbered
        self._next_seq -= failed

    def _publish(self, entry: JournalEntry) -> None:
        for listener in self._listeners:
            try:
                listener(entry)
            except Exception:
                log.exception("journal listener failed on entry %d", entry.seq)
        for subscription in self._subscriptions:
            if subscription.wants(entry):
                subscription.offer(entry)

    def subscribe(self, session_ids: frozenset[str] | None) -> Subscription:
        """A queue of every entry published from now on (matching `session_ids`)."""
        if self.draining:
            raise shutting_down()
        subscription = Subscription(self, session_ids, self._queue_size)
        self._subscriptions.add(subscription)
        return subscription

    def drain(self) -> None:
        """Ends every subscription with UNAVAILABLE; new ones are refused."""
        self.draining = True
        for subscription in self._subscriptions:
            subscription.drain()

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @property
    def pending_count(self) -> int:
        """Changes appended but not yet durable (for metrics)."""
        return self._next_seq - 1 - self.head

    @property
    def max_subscriber_backlog(self) -> int:
        """Committed changes queued for the slowest subscriber (for metrics)."""
        return max((s.backlog for s in self._subscriptions), default=0)

    async def read_after(self, after: int, upto: int, limit: int) -> list[JournalEntry] | None:
        return await self._store.read_after(after, upto, limit)

    async def flush(self) -> None:
        """Waits until every change appended so far is committed (or failed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})

    async def close(self) -> None:
        await self.flush()
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.wait({self._probe})
        await self._store.close()
