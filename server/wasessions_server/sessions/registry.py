"""The registry: which sessions this server runs (the index, in id order), creating them within
the limits, adopting the stored ones at start (restore), and the drain and shutdown."""

from __future__ import annotations

import asyncio
import bisect
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from wasessions_server.engines import Connection, ConnectTarget, Engine
from wasessions_server.errors import ServiceError, Status, invalid_argument, shutting_down
from wasessions_server.events import EventJournal, ResumePoint, WatchItem, watch
from wasessions_server.messages import Messages
from wasessions_server.model import JournalEntry, RequiredAction, SessionRecord, State
from wasessions_server.sessions.decision import retrying
from wasessions_server.sessions.heap import HeapFreezer
from wasessions_server.sessions.pacing import ConnectRateLimiter, Pacer
from wasessions_server.sessions.qr import QrCount, QrItem
from wasessions_server.sessions.session import Session, SessionContext, storage_unavailable
from wasessions_server.sessions.settings import ManagerSettings
from wasessions_server.store import CredentialStore, CredentialVault

log = logging.getLogger(__name__)


class SessionRegistry:
    """The sessions this server runs, by id; reads are answered from each session's stored
    record, in memory.

    Sessions join the index through `adopt` (stored records: at start, or claimed later) or a
    create, and leave it through a delete or `release` (handed over, not deleted): nothing here
    assumes this process sees or owns every session forever.
    """

    def __init__(
        self,
        journal: EventJournal,
        credentials: CredentialStore,
        engines: Mapping[str, Engine],
        settings: ManagerSettings,
        *,
        default_engine: str,
        messages: Messages | None = None,
    ) -> None:
        self.journal = journal
        #: The messages of these sessions (None: a registry without MessageService).
        self.messages = messages
        self.settings = settings
        self.default_engine = default_engine
        self._credentials = credentials
        self._engines = dict(engines)
        self._limiter = ConnectRateLimiter(settings.connect_rate)
        self._context = SessionContext(
            journal=journal,
            settings=settings,
            limiter=self._limiter,
            pacer=Pacer(),  # one for all sessions: close handling in slices
            retrying=retrying(),
            qr_count=QrCount(),
            unwritten=self._notify,
            messages=messages,
        )
        self._heap = HeapFreezer()  # full GC passes walk only what is new (storms)
        self._sessions: dict[str, Session] = {}
        self._creating: dict[str, Session] = {}
        self._ids: list[str] = []  # sorted, for ListSessions
        self._restores: set[asyncio.Task[None]] = set()
        self._observers: list[Callable[[str], None]] = []
        self._draining = False
        journal.add_listener(self._on_durable)
        if messages is not None:
            messages.attach(self.get_stored, self._fixes_message_ids)

    # Start and stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopts every stored session and restores the ones that were running."""
        await asyncio.to_thread(self._credentials.sweep)
        if self.messages is not None:
            # NOTE: before any session connects: it learns which sessions have work queued.
            await self.messages.start()
        self._heap.install()
        await self.adopt(await self.journal.load_sessions())

    async def adopt(self, records: Iterable[SessionRecord]) -> None:
        """Takes stored sessions into the index; the ones that were running say CONNECTING (or
        STOPPED when they waited for a QR scan) and reconnect in the background.

        NOTE: each says what it is now before this returns (at start: before the port is
        bound): a restored session must not report the previous process's CONNECTED until its
        turn to reconnect comes (seconds, with thousands of sessions).
        """
        sessions = []
        for record in records:
            if record.session_id in self._sessions:
                log.warning("session %s is already run here; not adopted again", record.session_id)
                continue
            sessions.append(self._new_session(record, stored=True))
        # NOTE: the stored has_credentials may be stale (a folder removed while the server was
        # down): every record says what is really stored before anyone reads it.
        await asyncio.gather(*(s.refresh_credentials() for s in sessions))
        for session in sessions:
            self._add(session)
        marked = await asyncio.gather(*(s.mark_restart() for s in sessions))
        restorable = [s for s, restore in zip(sessions, marked, strict=True) if restore]
        if restorable:
            log.info("restoring %d sessions", len(restorable))
            task = asyncio.create_task(self._restore(restorable), name="restore")
            self._restores.add(task)
            task.add_done_callback(self._restores.discard)

    async def _restore(self, restorable: list[Session]) -> None:
        gate = asyncio.Semaphore(self.settings.restore_concurrency)

        async def restore_one(session: Session) -> None:
            # NOTE: the jitter comes before the gate: slept inside it, it held a slot idle for
            # a second on average, and 100 slots restored only about 100 sessions a second.
            await asyncio.sleep(random.uniform(0, self.settings.restore_jitter_s))
            # NOTE: the gate bounds how many sessions are connecting at once, not how many are
            # running: `restore` returns when the first attempt has an outcome.
            async with gate:
                await session.restore()

        await asyncio.gather(*(restore_one(s) for s in restorable), return_exceptions=True)

    async def release(self, session_id: str) -> None:
        """Stops running a session here WITHOUT changing it (another owner takes it over)."""
        session = self._session(session_id)
        await session.shutdown()
        self._drop(session_id)

    def drain(self) -> None:
        """Ends every stream with UNAVAILABLE and refuses new ones."""
        self._draining = True
        self.journal.drain()
        if self.messages is not None:
            self.messages.drain()
        for session in self._sessions.values():
            session.drain()

    async def shutdown(self) -> None:
        """Closes every connection WITHOUT logging out, then flushes the journal.

        NOTE: logging out here would unlink every device from its phone.
        """
        for task in list(self._restores):
            task.cancel()
        if self._restores:
            await asyncio.wait(self._restores)
        await asyncio.gather(
            *(s.shutdown() for s in self._sessions.values()), return_exceptions=True
        )
        if self.messages is not None:
            # NOTE: before the session journal closes the store they share.
            await self.messages.shutdown()
        for engine in self._engines.values():
            try:
                await engine.aclose()
            except Exception:
                log.exception("closing engine %s failed", engine.name)
        await self.journal.close()
        self._heap.uninstall()

    # Reads ------------------------------------------------------------------------------------

    def get(self, session_id: str) -> SessionRecord:
        return self._session(session_id).read()

    def get_stored(self, session_id: str) -> SessionRecord:
        """The session as last stored (NOT_FOUND when unknown), even while a change is
        unwritten."""
        return self._session(session_id).record

    def _fixes_message_ids(self, session_id: str) -> bool:
        engine = self._engines.get(self._session(session_id).record.engine)
        return engine is not None and engine.fixes_message_ids

    def list_page(
        self, after: str, states: frozenset[State], limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        """Up to `limit` sessions with ids after `after`, ordered by id, and the id to continue
        after (None on the last page)."""
        out: list[SessionRecord] = []
        index = bisect.bisect_right(self._ids, after) if after else 0
        while index < len(self._ids):
            session = self._sessions[self._ids[index]]
            index += 1
            if session.unwritten:
                raise storage_unavailable(session.session_id)
            record = session.record
            if states and record.state not in states:
                continue
            out.append(record)
            if len(out) == limit:
                more = any(
                    not states or self._sessions[i].record.state in states
                    for i in self._ids[index:]
                )
                return out, (record.session_id if more else None)
        return out, None

    def snapshot(self, session_ids: frozenset[str] | None) -> list[SessionRecord]:
        """The stored records (all, or of `session_ids`), in id order."""
        if session_ids is None:
            return [self._sessions[i].record for i in self._ids]
        return [self._sessions[i].record for i in sorted(session_ids) if i in self._sessions]

    def serving(self, session_id: str) -> bool | None:
        """Whether the session is CONNECTED as stored (False while a change of it is not
        stored yet); None for a session this registry does not hold."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        return session.record.state is State.CONNECTED and not session.unwritten

    def observe(self, observer: Callable[[str], None]) -> None:
        """Calls `observer(session_id)` whenever what a session's reads answer may have
        changed: after each stored change (in the journal's publish), and when a change the
        store refused makes them answer STORAGE_UNAVAILABLE."""
        self._observers.append(observer)

    def _notify(self, session_id: str) -> None:
        for observer in self._observers:
            observer(session_id)

    def watch(
        self, session_ids: frozenset[str] | None, resume: ResumePoint | None
    ) -> AsyncIterator[WatchItem]:
        return watch(
            self.journal, self.snapshot, session_ids, resume, self.settings.heartbeat_interval_s
        )

    def qr_codes(self, session_id: str) -> AsyncIterator[QrItem]:
        session = self._session(session_id)
        if self._draining:
            raise shutting_down()
        return session.qr_codes()

    async def request_pairing_code(self, session_id: str, phone_number: str) -> str:
        return await self._session(session_id).request_pairing_code(phone_number)

    # What metrics read ------------------------------------------------------------------------

    @property
    def engine_names(self) -> list[str]:
        return sorted(self._engines)

    @property
    def connects_started(self) -> int:
        """Connects released by the connect rate limit (each starts right after)."""
        return self._limiter.granted

    @property
    def peak_connects_per_second(self) -> int:
        return self._limiter.peak_per_second

    @property
    def qr_codes_issued(self) -> int:
        return self._context.qr_count.issued

    # Writes -----------------------------------------------------------------------------------

    async def create(
        self,
        session_id: str,
        *,
        labels: Mapping[str, str],
        engine: str,
        start: bool,
        request_id: str,
        proxy: str = "",
    ) -> SessionRecord:
        engine_name = engine or self.default_engine
        if engine_name not in self._engines:
            raise invalid_argument(
                "engine",
                "UNKNOWN_ENGINE",
                f"engine {engine_name!r} is not enabled on this server (enabled: "
                f"{', '.join(sorted(self._engines))})",
            )
        existing = self._sessions.get(session_id) or self._creating.get(session_id)
        if existing is not None:
            if request_id and existing.record.request_id == request_id:
                return existing.read()  # NOTE: a retried create is answered, not refused
            raise ServiceError(
                Status.ALREADY_EXISTS,
                "SESSION_EXISTS",
                f"session {session_id} already exists",
                metadata={"name": f"sessions/{session_id}"},
            )
        # NOTE: a session being created is in `_sessions` too once its first commit is
        # published; counting it twice refused creates below the limit.
        creating = sum(1 for sid in self._creating if sid not in self._sessions)
        if len(self._sessions) + creating >= self.settings.max_sessions:
            raise ServiceError(
                Status.RESOURCE_EXHAUSTED,
                "TOO_MANY_SESSIONS",
                f"this server holds at most {self.settings.max_sessions} sessions",
            )
        now = time.time()
        record = SessionRecord(
            session_id=session_id,
            engine=engine_name,
            state=State.CONNECTING if start else State.STOPPED,
            required_action=RequiredAction.NONE,
            status_message="Connecting." if start else "Created stopped; StartSession connects.",
            labels=dict(labels),
            create_time=now,
            update_time=now,
            state_change_time=now,
            request_id=request_id,
            proxy=proxy,
        )
        session = self._new_session(record, stored=False)
        self._creating[session_id] = session
        try:
            return await session.create(start=start)
        finally:
            self._creating.pop(session_id, None)

    async def update_labels(
        self, session_id: str, labels: Mapping[str, str], paths: list[str]
    ) -> SessionRecord:
        return await self._session(session_id).update_labels(labels, paths)

    async def start_session(self, session_id: str, *, relink: bool) -> SessionRecord:
        return await self._session(session_id).start(relink=relink)

    async def stop_session(self, session_id: str) -> SessionRecord:
        return await self._session(session_id).stop()

    async def logout_session(self, session_id: str) -> SessionRecord:
        return await self._session(session_id).logout()

    async def delete_session(self, session_id: str) -> None:
        await self._session(session_id).delete()
        if self.messages is not None:
            await self.messages.deleted(session_id)

    # The index --------------------------------------------------------------------------------

    def _session(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise ServiceError(
                Status.NOT_FOUND,
                "SESSION_NOT_FOUND",
                f"session {session_id} does not exist",
                metadata={"name": f"sessions/{session_id}"},
            )
        return session

    def _new_session(self, record: SessionRecord, *, stored: bool) -> Session:
        engine = self._engines.get(record.engine)
        if engine is None:
            # NOTE: a session whose engine is no longer enabled is kept, not dropped; it cannot
            # run until the engine is enabled again.
            log.warning(
                "session %s uses engine %s, which is not enabled", record.session_id, record.engine
            )
            engine = _DisabledEngine(record.engine)
        vault = self._credentials.vault(record.session_id)
        return Session(record, engine, vault, self._context, stored=stored)

    def _add(self, session: Session) -> None:
        session_id = session.session_id
        if session_id not in self._sessions:
            bisect.insort(self._ids, session_id)
        self._sessions[session_id] = session

    def _drop(self, session_id: str) -> None:
        if self._sessions.pop(session_id, None) is None:
            return
        index = bisect.bisect_left(self._ids, session_id)
        if index < len(self._ids) and self._ids[index] == session_id:
            del self._ids[index]
        self._heap.session_deleted()

    def _on_durable(self, entry: JournalEntry) -> None:
        """Every stored change: a created session joins the index, a deleted one leaves it,
        and the session learns that its change is durable.

        NOTE: in the journal's publish, not when the writer resumes: a snapshot at the
        journal's head (WatchSessions) then always agrees with the index and the records.
        """
        session_id = entry.session_id
        if entry.record is None:
            self._drop(session_id)
        else:
            session = self._sessions.get(session_id)
            if session is None:
                session = self._creating.get(session_id)
                if session is None:
                    return
                self._add(session)
            session.on_durable(entry)
        self._notify(session_id)


class _DisabledEngine:
    """Stands in for an engine that is not enabled: every connect fails with a clear reason."""

    fixes_message_ids = False

    def __init__(self, name: str) -> None:
        self.name = name

    async def connect(self, target: ConnectTarget) -> Connection:
        raise RuntimeError(f"engine {self.name!r} is not enabled on this server")

    def has_credentials(self, vault: CredentialVault) -> bool:
        return vault.path.is_dir() and any(vault.path.iterdir())

    async def refresh_credentials(self, vault: CredentialVault) -> bool:
        return await asyncio.to_thread(self.has_credentials, vault)

    async def logout_offline(self, vault: CredentialVault) -> None:
        return None

    async def aclose(self) -> None:
        return None
