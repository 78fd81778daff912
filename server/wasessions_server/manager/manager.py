"""The connection manager: every session's supervisor, and the operations clients ask for."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field

from wasessions_server.engines import Connection, ConnectTarget, Engine
from wasessions_server.errors import ServiceError, Status, shutting_down
from wasessions_server.events import EventJournal, ResumePoint, WatchItem, watch
from wasessions_server.manager.heap import HeapFreezer
from wasessions_server.manager.qr import QrItem, QrOutcome
from wasessions_server.manager.ratelimit import ConnectRateLimiter, Pacer
from wasessions_server.manager.supervisor import SessionSupervisor, SupervisorSettings
from wasessions_server.model import Cause, JournalEntry, RequiredAction, SessionRecord, State
from wasessions_server.policy import QrSchedule, ReconnectPolicy, default_policy
from wasessions_server.store import CredentialStore, CredentialVault

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    """How the manager runs sessions. Every field is a configuration key (see README)."""

    policy: ReconnectPolicy = field(default_factory=default_policy)
    qr: QrSchedule = field(default_factory=QrSchedule)
    default_engine: str = "sim"
    #: A connection that stays up this long resets the retry attempts.
    stable_after_s: float = 60.0
    #: Connects per second across all sessions (reconnect storms, restores).
    connect_rate: float = 500.0
    #: Sessions restored (connecting) at once after a restart.
    restore_concurrency: int = 100
    #: Each restored session waits up to this long first, so restores do not arrive in step.
    restore_jitter_s: float = 2.0
    connect_timeout_s: float = 60.0
    close_timeout_s: float = 10.0
    max_sessions: int = 10_000
    heartbeat_interval_s: float = 30.0


class SessionManager:
    """Owns the supervisors; reads are answered from committed records, in memory."""

    def __init__(
        self,
        journal: EventJournal,
        credentials: CredentialStore,
        engines: Mapping[str, Engine],
        settings: ManagerSettings,
    ) -> None:
        self.journal = journal
        self.credentials = credentials
        self.engines = dict(engines)
        self.settings = settings
        self.limiter = ConnectRateLimiter(settings.connect_rate)  # its counts feed the metrics
        self._pacer = Pacer()  # one for all supervisors: close handling in slices
        self._heap = HeapFreezer()  # full GC passes walk only what is new (storms)
        self._supervisor_settings = SupervisorSettings(
            policy=settings.policy,
            stable_after_s=settings.stable_after_s,
            connect_timeout_s=settings.connect_timeout_s,
            close_timeout_s=settings.close_timeout_s,
        )
        self._sessions: dict[str, SessionSupervisor] = {}
        self._creating: dict[str, SessionSupervisor] = {}
        self._ids: list[str] = []  # sorted, for ListSessions
        self._restore_task: asyncio.Task[None] | None = None
        self.draining = False
        journal.add_listener(self._on_committed)

    # Start and stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the registry and restores the sessions that were running."""
        await asyncio.to_thread(self.credentials.sweep)
        records = await self.journal.load_sessions()
        for record in records:
            supervisor = self._new_supervisor(record)
            self._sessions[record.session_id] = supervisor
        self._ids = sorted(self._sessions)
        self._heap.install()
        restorable = await self._mark_restart()
        self._restore_task = asyncio.create_task(self._restore(restorable), name="restore")

    async def _mark_restart(self) -> list[SessionSupervisor]:
        """Before anything is served, each session that was running says what it is now:
        CONNECTING (restorable: it has credentials, but no connection in this process yet), or
        STOPPED when it was waiting for a QR scan. Returns the restorable ones.

        NOTE: all in one batch, before the port is bound: a restored session must not report
        the previous process's CONNECTED until its turn to reconnect comes (seconds, with
        thousands of sessions).
        """
        restorable: list[SessionSupervisor] = []
        commits = []
        for supervisor in self._sessions.values():
            if not supervisor.record.state.is_running:
                continue
            if supervisor.engine.has_credentials(supervisor.vault):
                restorable.append(supervisor)
                commits.append(
                    supervisor.commit(
                        Cause.RESTORED,
                        state=State.CONNECTING,
                        required_action=RequiredAction.NONE,
                        retry=None,
                        status_message="Restored after a restart; connecting.",
                    )
                )
            else:
                # NOTE: no QR storm after a restart: nobody is looking at these QR codes now.
                commits.append(
                    supervisor.commit(
                        Cause.QR_ABANDONED,
                        state=State.STOPPED,
                        required_action=RequiredAction.START_SESSION,
                        retry=None,
                        status_message="The server restarted while this session waited for a "
                        "QR scan; StartSession shows new QR codes.",
                    )
                )
        await asyncio.gather(*commits)
        return restorable

    async def _restore(self, restorable: list[SessionSupervisor]) -> None:
        gate = asyncio.Semaphore(self.settings.restore_concurrency)

        async def restore_one(supervisor: SessionSupervisor) -> None:
            # NOTE: the jitter comes before the gate: slept inside it, it held a slot idle for
            # a second on average, and 100 slots restored only about 100 sessions a second.
            await asyncio.sleep(random.uniform(0, self.settings.restore_jitter_s))
            async with gate:
                async with supervisor.operations:
                    if (
                        supervisor.running
                        or supervisor.deleted
                        or not supervisor.record.state.is_running
                    ):
                        return
                    supervisor.launch()
                # NOTE: the gate bounds how many sessions are connecting at once, not how many
                # are running: it is released when the first attempt has an outcome.
                await supervisor.settled.wait()

        if restorable:
            log.info("restoring %d sessions", len(restorable))
        await asyncio.gather(*(restore_one(s) for s in restorable), return_exceptions=True)

    def drain(self) -> None:
        """Ends every stream with UNAVAILABLE and refuses new ones."""
        self.draining = True
        self.journal.drain()
        for supervisor in self._sessions.values():
            supervisor.qr.drain()

    async def shutdown(self) -> None:
        """Closes every connection WITHOUT logging out, then flushes the journal.

        NOTE: logging out here would unlink every device from its phone.
        """
        if self._restore_task is not None:
            self._restore_task.cancel()
            await asyncio.wait({self._restore_task})
        await asyncio.gather(*(s.halt() for s in self._sessions.values()), return_exceptions=True)
        for engine in self.engines.values():
            try:
                await engine.aclose()
            except Exception:
                log.exception("closing engine %s failed", engine.name)
        await self.journal.close()
        self._heap.uninstall()

    # Reads ------------------------------------------------------------------------------------

    def get(self, session_id: str) -> SessionRecord:
        return self._supervisor(session_id).record

    def supervisor(self, session_id: str) -> SessionSupervisor:
        return self._supervisor(session_id)

    def list_page(
        self, after: str, states: frozenset[State], limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        """Up to `limit` sessions with ids after `after`, ordered by id, and the id to continue
        after (None on the last page)."""
        out: list[SessionRecord] = []
        index = bisect.bisect_right(self._ids, after) if after else 0
        while index < len(self._ids):
            record = self._sessions[self._ids[index]].record
            index += 1
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

    def snapshot(self, session_ids: frozenset[str] | None) -> Iterable[SessionRecord]:
        if session_ids is None:
            return [self._sessions[i].record for i in self._ids]
        return [self._sessions[i].record for i in sorted(session_ids) if i in self._sessions]

    def watch(
        self, session_ids: frozenset[str] | None, resume: ResumePoint | None
    ) -> AsyncIterator[WatchItem]:
        return watch(
            self.journal, self.snapshot, session_ids, resume, self.settings.heartbeat_interval_s
        )

    def qr_codes(self, session_id: str) -> AsyncIterator[QrItem]:
        supervisor = self._supervisor(session_id)
        record = supervisor.record
        if self.draining:
            raise shutting_down()
        if record.has_credentials or record.state in (State.CONNECTED, State.PAIRING):
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "SESSION_ALREADY_LINKED",
                f"session {session_id} is already linked to a phone; there is no QR code to "
                "show (StartSession with relink starts over)",
            )
        if not supervisor.running:
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "SESSION_NOT_RUNNING",
                f"session {session_id} is {record.state.value}; StartSession shows QR codes",
            )
        return supervisor.qr.follow()

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
        engine_name = engine or self.settings.default_engine
        if engine_name not in self.engines:
            raise ServiceError(
                Status.INVALID_ARGUMENT,
                "UNKNOWN_ENGINE",
                f"engine {engine_name!r} is not enabled on this server (enabled: "
                f"{', '.join(sorted(self.engines))})",
            )
        existing = self._sessions.get(session_id) or self._creating.get(session_id)
        if existing is not None:
            if request_id and existing.record.request_id == request_id:
                return existing.record  # NOTE: a retried create is answered, not refused
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
        supervisor = self._new_supervisor(record)
        self._creating[session_id] = supervisor
        try:
            # NOTE: a folder left by an earlier session of the same id is not ours to reuse.
            await asyncio.to_thread(supervisor.vault.wipe)
            async with supervisor.operations:
                await supervisor.commit(Cause.CREATED)
                if start:
                    supervisor.launch()
        finally:
            self._creating.pop(session_id, None)
        return supervisor.record

    async def update_labels(
        self, session_id: str, labels: Mapping[str, str], paths: list[str]
    ) -> SessionRecord:
        supervisor = self._supervisor(session_id)
        new = dict(supervisor.record.labels)
        for path in paths:
            if path == "labels":
                new = dict(labels)
            else:
                key = path.removeprefix("labels.")
                if key in labels:
                    new[key] = labels[key]
                else:
                    new.pop(key, None)
        if new == supervisor.record.labels:
            return supervisor.record
        return await supervisor.commit(Cause.LABELS_UPDATED, labels=new)

    async def start_session(self, session_id: str, *, relink: bool) -> SessionRecord:
        supervisor = self._supervisor(session_id)
        async with supervisor.operations:
            if relink:
                await supervisor.halt()
                await asyncio.to_thread(supervisor.vault.wipe)
                cause = Cause.RELINK_REQUESTED
            elif supervisor.running:
                if supervisor.record.state is State.RECONNECTING:
                    supervisor.retry_now()
                return supervisor.record
            else:
                cause = Cause.STARTED
            await supervisor.commit(
                cause,
                state=State.CONNECTING,
                required_action=RequiredAction.NONE,
                retry=None,
                account=None if relink else supervisor.record.account,
                status_message="Connecting.",
            )
            supervisor.qr.finish(QrOutcome.STOPPED)
            supervisor.launch()
            return supervisor.record

    async def stop_session(self, session_id: str) -> SessionRecord:
        supervisor = self._supervisor(session_id)
        async with supervisor.operations:
            if not supervisor.running and not supervisor.record.state.is_running:
                return supervisor.record
            # NOTE: a session restored as CONNECTING whose turn has not come yet has no task;
            # it is stopped all the same, and the restore then leaves it alone.
            await supervisor.halt()
            record = await supervisor.commit(
                Cause.STOPPED_BY_REQUEST,
                state=State.STOPPED,
                required_action=RequiredAction.NONE,
                retry=None,
                status_message="Stopped on request; credentials kept. StartSession reconnects.",
            )
            supervisor.qr.finish(QrOutcome.STOPPED)
            return record

    async def logout_session(self, session_id: str) -> SessionRecord:
        supervisor = self._supervisor(session_id)
        async with supervisor.operations:
            await self._unlink(supervisor)
            record = await supervisor.commit(
                Cause.LOGGED_OUT_BY_REQUEST,
                state=State.LOGGED_OUT,
                required_action=RequiredAction.SCAN_QR,
                retry=None,
                account=None,
                status_message="Logged out on request; credentials wiped. StartSession begins "
                "a new QR login.",
            )
            supervisor.qr.finish(QrOutcome.STOPPED)
            return record

    async def delete_session(self, session_id: str) -> None:
        supervisor = self._supervisor(session_id)
        async with supervisor.operations:
            await self._unlink(supervisor)
            supervisor.deleted = True
            try:
                await self.journal.append(session_id, None, Cause.DELETED)
            except BaseException:
                supervisor.deleted = False
                raise
            supervisor.qr.finish(QrOutcome.STOPPED)

    async def _unlink(self, supervisor: SessionSupervisor) -> None:
        """Logs the device out (best effort) and wipes the credentials."""
        connection = await supervisor.halt(keep_connection=True)
        try:
            async with asyncio.timeout(self.settings.close_timeout_s):
                if connection is not None:
                    await connection.logout()
                elif supervisor.engine.has_credentials(supervisor.vault):
                    await supervisor.engine.logout_offline(supervisor.vault)
        except Exception as error:
            log.warning("session %s: logout failed: %s", supervisor.session_id, error)
        finally:
            if connection is not None:
                await supervisor.close_connection(connection)
        await asyncio.to_thread(supervisor.vault.wipe)

    # Internals --------------------------------------------------------------------------------

    def _supervisor(self, session_id: str) -> SessionSupervisor:
        supervisor = self._sessions.get(session_id)
        if supervisor is None:
            raise ServiceError(
                Status.NOT_FOUND,
                "SESSION_NOT_FOUND",
                f"session {session_id} does not exist",
                metadata={"name": f"sessions/{session_id}"},
            )
        return supervisor

    def _new_supervisor(self, record: SessionRecord) -> SessionSupervisor:
        engine = self.engines.get(record.engine)
        if engine is None:
            # NOTE: a session whose engine is no longer enabled is kept, not dropped; it cannot
            # run until the engine is enabled again.
            log.warning(
                "session %s uses engine %s, which is not enabled", record.session_id, record.engine
            )
            engine = _DisabledEngine(record.engine)
        return SessionSupervisor(
            record,
            engine,
            self.credentials.vault(record.session_id),
            self.journal,
            self.limiter,
            self._supervisor_settings,
            self._pacer,
        )

    def _on_committed(self, entry: JournalEntry) -> None:
        """Keeps the in-memory view in step with what is durable."""
        session_id = entry.session_id
        if entry.record is None:
            if self._sessions.pop(session_id, None) is not None:
                index = bisect.bisect_left(self._ids, session_id)
                if index < len(self._ids) and self._ids[index] == session_id:
                    del self._ids[index]
                self._heap.session_deleted()
            return
        supervisor = self._sessions.get(session_id)
        if supervisor is None:
            supervisor = self._creating.get(session_id)
            if supervisor is None:
                return
            self._sessions[session_id] = supervisor
            bisect.insort(self._ids, session_id)
        last_activity = supervisor.record.last_activity_time
        record = entry.record
        if last_activity is not None and record.last_activity_time != last_activity:
            record = _with_activity(record, last_activity)
        supervisor.record = record


def _with_activity(record: SessionRecord, when: float) -> SessionRecord:
    return dataclasses.replace(record, last_activity_time=when)


class _DisabledEngine:
    """Stands in for an engine that is not enabled: every connect fails with a clear reason."""

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
