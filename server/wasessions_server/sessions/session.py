"""One session: its committed record, the operations clients ask for, and its run loop (connect,
follow the connection's events, decide on each close what happens next)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState

from wasessions_server.engines import (
    Activity,
    Closed,
    Connection,
    ConnectTarget,
    Engine,
    MessageReceived,
    Opened,
    PairSuccess,
    Qr,
    Receipt,
)
from wasessions_server.errors import ServiceError, Status, StorageError
from wasessions_server.events import EventJournal
from wasessions_server.messages import Messages
from wasessions_server.model import (
    Cause,
    Disconnect,
    JournalEntry,
    RequiredAction,
    RetryProgress,
    SessionRecord,
    State,
)
from wasessions_server.policy import Action, CodeRule, is_qr_window_over
from wasessions_server.policy import codes as wa
from wasessions_server.sessions.decision import ConnectionClosed, ConnectionEnd, Decision
from wasessions_server.sessions.pacing import ConnectRateLimiter, Pacer
from wasessions_server.sessions.qr import QrBoard, QrCount, QrItem, QrOutcome
from wasessions_server.sessions.settings import ManagerSettings
from wasessions_server.sessions.transitions import (
    Connected,
    Connecting,
    Created,
    Failed,
    LabelsSet,
    LoggedOut,
    Paired,
    QrShown,
    Reconnecting,
    Restarting,
    RetryStarted,
    Stopped,
    Transition,
)
from wasessions_server.store import CredentialVault

log = logging.getLogger(__name__)

#: The longest wait between two attempts to store a change the store refused.
_REWRITE_MAX_DELAY_S = 1.0


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session of one registry shares."""

    journal: EventJournal
    settings: ManagerSettings
    limiter: ConnectRateLimiter
    pacer: Pacer
    retrying: AsyncRetrying
    qr_count: QrCount
    #: Called with the session's id when what its reads answer changed without a stored
    #: change (a change the store refused).
    unwritten: Callable[[str], None]
    #: The sessions' messages: told of each open connection, handed inbound messages and
    #: receipts (None: no MessageService).
    messages: Messages | None = None


@dataclass(frozen=True, slots=True)
class _Unwritten:
    """A change that happened but could not be stored (disk full): the session's truth."""

    cause: Cause
    record: SessionRecord


def storage_unavailable(session_id: str) -> ServiceError:
    return ServiceError(
        Status.UNAVAILABLE,
        "STORAGE_UNAVAILABLE",
        f"session {session_id} changed but the change could not be stored (disk full or I/O "
        "error); its last stored state is no longer true. Retry later: the change is stored "
        "as soon as the store accepts writes again",
    )


class Session:
    """Owns one session's record; every change goes through `_commit`, which makes it durable
    (and visible to watchers) before it returns.

    NOTE: the record changes in `on_durable`, when the journal publishes the change, not when
    `_commit` resumes after it: in between, a WatchSessions snapshot taken at the journal's head
    would show the old record and never receive the change.
    """

    def __init__(
        self,
        record: SessionRecord,
        engine: Engine,
        vault: CredentialVault,
        context: SessionContext,
        *,
        stored: bool,
    ) -> None:
        self._record = record
        self._stored = stored  # the record is in the store (not a create in flight)
        self._unwritten: _Unwritten | None = None
        self._engine = engine
        self._vault = vault
        self._ctx = context
        self._settings = context.settings
        self._qr = QrBoard(context.qr_count)
        self._operations = asyncio.Lock()  # start / stop / logout / delete / relink, one at once
        self._mutation = asyncio.Lock()  # one commit at once
        self._settled = asyncio.Event()  # set once the current run leaves CONNECTING
        self._task: asyncio.Task[None] | None = None
        self._rewriter: asyncio.Task[None] | None = None
        self._connection: Connection | None = None
        self._connection_open = False
        self._detach = False
        self._retry_now = asyncio.Event()
        self._deleted = False

    # Reads ------------------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self._record.session_id

    @property
    def record(self) -> SessionRecord:
        """The session as last stored (what watchers were told)."""
        return self._record

    @property
    def unwritten(self) -> bool:
        """A change happened that the store has not accepted yet."""
        return self._unwritten is not None

    def read(self) -> SessionRecord:
        """The session for a client: raises STORAGE_UNAVAILABLE instead of a stored state the
        session knows is no longer true."""
        if self._unwritten is not None:
            raise storage_unavailable(self.session_id)
        return self._record

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def on_durable(self, entry: JournalEntry) -> None:
        """The journal stored and published a change of this session."""
        record = entry.record
        if record is None:
            return
        self._stored = True
        last_activity = self._record.last_activity_time
        if last_activity is not None and record.last_activity_time != last_activity:
            record = dataclasses.replace(record, last_activity_time=last_activity)
        self._record = record

    # Operations -------------------------------------------------------------------------------

    async def create(self, *, start: bool) -> SessionRecord:
        async with self._operations:
            # NOTE: a folder left by an earlier session of the same id is not ours to reuse.
            await self._wipe()
            await self._commit(Created())
            if start:
                self._launch()
            return self._record

    async def update_labels(self, labels: Mapping[str, str], paths: list[str]) -> SessionRecord:
        current = self.read()
        new = dict(current.labels)
        for path in paths:
            if path == "labels":
                new = dict(labels)
            else:
                key = path.removeprefix("labels.")
                if key in labels:
                    new[key] = labels[key]
                else:
                    new.pop(key, None)
        if new == current.labels:
            return current
        return await self._commit(LabelsSet(new))

    async def start(self, *, relink: bool) -> SessionRecord:
        async with self._operations:
            if relink:
                await self._halt()
                await self._wipe()
                cause = Cause.RELINK_REQUESTED
            elif self.running:
                if self._truth.state is State.RECONNECTING:
                    self._retry_now.set()  # cuts the wait short
                return self.read()
            else:
                cause = Cause.STARTED
            await self._commit(Connecting(cause, forget_account=relink))
            if relink and self._ctx.messages is not None:
                # NOTE: after the commit: from then on the session is unlinked, so no send
                # settling later can put a message back in the queue.
                await self._ctx.messages.relinked(self.session_id)
            self._qr.finish(QrOutcome.STOPPED)
            self._launch()
            return self._record

    async def stop(self) -> SessionRecord:
        async with self._operations:
            if not self.running and not self._truth.state.is_running:
                return self.read()
            # NOTE: a session restored as CONNECTING whose turn has not come yet has no task;
            # it is stopped all the same, and the restore then leaves it alone.
            await self._halt()
            return await self._end(
                Stopped(
                    Cause.STOPPED_BY_REQUEST,
                    "Stopped on request; credentials kept. StartSession reconnects.",
                )
            )

    async def logout(self) -> SessionRecord:
        async with self._operations:
            await self._unlink()
            record = await self._end(
                LoggedOut(
                    Cause.LOGGED_OUT_BY_REQUEST,
                    RequiredAction.SCAN_QR,
                    "Logged out on request; credentials wiped. StartSession begins a new QR login.",
                )
            )
            await self._messages_logged_out()
            return record

    async def delete(self) -> None:
        async with self._operations:
            await self._unlink()
            async with self._mutation:
                self._deleted = True
                try:
                    await self._ctx.journal.append(
                        self.session_id, None, Cause.DELETED, before=self._record
                    )
                except BaseException:
                    self._deleted = False
                    raise
            self._stop_rewriting()
            self._qr.finish(QrOutcome.STOPPED)

    async def request_pairing_code(self, phone_number: str) -> str:
        record = self.read()
        connection = self._connection
        if record.state is not State.QR_PENDING or connection is None:
            if record.has_credentials or record.state is State.CONNECTED:
                raise ServiceError(
                    Status.FAILED_PRECONDITION,
                    "SESSION_ALREADY_LINKED",
                    f"session {self.session_id} is already linked; a pairing code is only for "
                    "a new login (StartSession with relink starts over)",
                )
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "NOT_IN_QR_PHASE",
                f"session {self.session_id} is {record.state.value}; a pairing code can be "
                "requested only while it is QR_PENDING",
            )
        return await connection.request_pairing_code(phone_number)

    def qr_codes(self) -> AsyncIterator[QrItem]:
        """The QR codes to show; raises at once when there are none to come."""
        record = self.read()
        if record.has_credentials or record.state in (State.CONNECTED, State.PAIRING):
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "SESSION_ALREADY_LINKED",
                f"session {self.session_id} is already linked to a phone; there is no QR code "
                "to show (StartSession with relink starts over)",
            )
        if not self.running:
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "SESSION_NOT_RUNNING",
                f"session {self.session_id} is {record.state.value}; StartSession shows QR codes",
            )
        return self._qr.follow()

    # Life cycle (for the registry) ------------------------------------------------------------

    async def refresh_credentials(self) -> None:
        """Asks the engine what is really stored (at load: the record may say otherwise)."""
        has = await self._engine.refresh_credentials(self._vault)
        if has != self._record.has_credentials:
            self._record = dataclasses.replace(self._record, has_credentials=has)

    async def mark_restart(self) -> bool:
        """After a restart, says what a session that was running is now: CONNECTING when it
        can be restored (it has credentials; returns True), or STOPPED when it waited for a QR
        scan."""
        if not self._record.state.is_running:
            return False
        if self._engine.has_credentials(self._vault):
            await self._commit(Connecting(Cause.RESTORED, "Restored after a restart; connecting."))
            return True
        # NOTE: no QR storm after a restart: nobody is looking at these QR codes now.
        await self._commit(
            Stopped(
                Cause.QR_ABANDONED,
                "The server restarted while this session waited for a QR scan; StartSession "
                "shows new QR codes.",
                RequiredAction.START_SESSION,
            )
        )
        return False

    async def restore(self) -> None:
        """Connects a restored session, unless an operation came first; returns once the
        first attempt has an outcome."""
        async with self._operations:
            if self.running or self._deleted or not self._record.state.is_running:
                return
            self._launch()
        await self._settled.wait()

    def drain(self) -> None:
        """Ends every QR watcher with UNAVAILABLE: the server is shutting down."""
        self._qr.drain()

    async def shutdown(self) -> None:
        """Closes the connection WITHOUT logging out (logging out would unlink the device)."""
        self._stop_rewriting()
        await self._halt()

    # Changes ----------------------------------------------------------------------------------

    @property
    def _truth(self) -> SessionRecord:
        """The session as it really is: the stored record, or the change not stored yet."""
        return self._unwritten.record if self._unwritten is not None else self._record

    async def _commit(self, change: Transition, *, keep_if_refused: bool = False) -> SessionRecord:
        """Applies `change` and returns the record once durable.

        When the store refuses it and `keep_if_refused` is set (the change already happened:
        a close, a stop), the change is kept as the session's truth: reads answer
        STORAGE_UNAVAILABLE and it is stored in the background as soon as the store accepts it.
        Such a commit raises only for a client who asked for the change.
        """
        async with self._mutation:
            if self._deleted:
                # NOTE: a late change (a restore, a label update racing the delete) must not
                # bring a deleted session back into the registry.
                raise ServiceError(
                    Status.NOT_FOUND, "SESSION_NOT_FOUND", f"session {self.session_id} was deleted"
                )
            has_credentials = self._engine.has_credentials(self._vault)
            updated = change.apply(self._truth, time.time(), has_credentials)
            try:
                await self._append(change.cause, updated)
            except StorageError as error:
                if not keep_if_refused:
                    raise
                self._keep_unwritten(_Unwritten(change.cause, updated), error)
                raise
            if updated.state is not State.CONNECTING:
                self._settled.set()
            return self._record

    async def _background(self, change: Transition) -> None:
        """A change the run loop makes: when the store refuses it, the session keeps it as its
        truth and goes on (the loop must still follow the connection)."""
        with contextlib.suppress(StorageError):
            await self._commit(change, keep_if_refused=True)
        if self._truth.state is not State.CONNECTING:
            self._settled.set()

    async def _append(self, cause: Cause, record: SessionRecord) -> None:
        before = self._record if self._stored else None
        await self._ctx.journal.append(self.session_id, record, cause, before=before)
        if self._unwritten is not None:
            self._unwritten = None
            log.info("session %s: its change is stored again", self.session_id)

    def _keep_unwritten(self, unwritten: _Unwritten, error: StorageError) -> None:
        if self._unwritten is None:
            log.error(
                "session %s: a change (%s, now %s) could not be stored: %s; reads of it answer "
                "STORAGE_UNAVAILABLE until it is stored (retrying)",
                self.session_id,
                unwritten.cause.value,
                unwritten.record.state.value,
                error,
            )
        first = self._unwritten is None
        self._unwritten = unwritten
        if first:
            self._ctx.unwritten(self.session_id)
        if self._rewriter is None or self._rewriter.done():
            self._rewriter = asyncio.create_task(
                self._rewrite(), name=f"session-rewrite:{self.session_id}"
            )

    async def _rewrite(self) -> None:
        """Stores the unwritten change as soon as the store accepts it again."""
        delay = 0.05
        while self._unwritten is not None:
            await asyncio.sleep(delay)
            delay = min(_REWRITE_MAX_DELAY_S, delay * 2)
            async with self._mutation:
                unwritten = self._unwritten
                if unwritten is None or self._deleted:
                    return
                with contextlib.suppress(StorageError):
                    await self._append(unwritten.cause, unwritten.record)

    def _stop_rewriting(self) -> None:
        if self._rewriter is not None:
            self._rewriter.cancel()
            self._rewriter = None

    async def _end(self, change: Transition) -> SessionRecord:
        """The end of a run by request (stop, logout): the change, then the QR phase's end.

        NOTE: the QR watchers learn of the end only once it is durable (or known to be true
        but unwritten), so they never learn of a stop before GetSession does.
        """
        try:
            return await self._commit(change, keep_if_refused=True)
        finally:
            self._qr.finish(QrOutcome.STOPPED)

    async def _messages_logged_out(self) -> None:
        messages = self._ctx.messages
        if messages is None:
            return
        try:
            await messages.logged_out(self.session_id)
        except StorageError as error:
            log.error("session %s: failing its queued messages failed: %s", self.session_id, error)

    def _note_activity(self, when: float) -> None:
        # NOTE: activity is frequent and not a state change: it is kept in memory and goes to
        # disk with the next change, instead of a journal entry each time.
        self._record = dataclasses.replace(self._record, last_activity_time=when)

    async def _wipe(self) -> None:
        await asyncio.to_thread(self._vault.wipe)
        await self._engine.refresh_credentials(self._vault)

    async def _unlink(self) -> None:
        """Logs the device out (best effort) and wipes the credentials."""
        connection = await self._halt(keep_connection=True)
        try:
            async with asyncio.timeout(self._settings.close_timeout_s):
                if connection is not None:
                    await connection.logout()
                elif self._engine.has_credentials(self._vault):
                    await self._engine.logout_offline(self._vault)
        except Exception as error:
            log.warning("session %s: logout failed: %s", self.session_id, error)
        finally:
            if connection is not None:
                await self._close_connection(connection)
        await self._wipe()

    # The run ----------------------------------------------------------------------------------

    def _launch(self) -> None:
        """Starts the run task (the record must already say CONNECTING)."""
        if self.running:
            return
        self._settled.clear()
        self._retry_now.clear()
        self._task = asyncio.create_task(self._run(), name=f"session:{self.session_id}")

    async def _halt(self, *, keep_connection: bool = False) -> Connection | None:
        """Stops the run task; closes the connection WITHOUT logging out, or hands it over
        (still open) when `keep_connection` is set and it was open."""
        task = self._task
        if task is None or task.done():
            return None
        self._detach = keep_connection
        handed_over = self._connection if self._connection_open else None
        try:
            # NOTE: Python 3.11's asyncio.wait_for (inside an engine, say) swallows a cancel that
            # arrives as its inner future completes (cpython gh-86296): the run would go on,
            # holding a connection, and this wait would never end. Cancel until it really ends.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        finally:
            self._detach = False
        return handed_over if keep_connection else None

    async def _close_connection(self, connection: Connection) -> None:
        try:
            async with asyncio.timeout(self._settings.close_timeout_s):
                await connection.close()
        except Exception as error:
            log.warning("session %s: closing the connection failed: %s", self.session_id, error)

    async def _run(self) -> None:
        halted = False
        try:
            end: ConnectionEnd | None = await self._hold(None)
            while end is not None:
                end = await self._after_close(end)
        except asyncio.CancelledError:
            # NOTE: halted by an operation; it ends the QR phase itself once its own state
            # change is durable, so QR watchers never learn of a stop before GetSession does.
            halted = True
            raise
        except Exception:
            log.exception("session %s: the run failed", self.session_id)
            with contextlib.suppress(Exception):
                await self._background(
                    Failed(
                        RequiredAction.START_SESSION,
                        "Stopped by an internal error (see the server log); StartSession "
                        "tries again.",
                    )
                )
        finally:
            self._settled.set()
            if not halted:
                self._qr.finish(QrOutcome.STOPPED)

    async def _after_close(self, end: ConnectionEnd) -> ConnectionEnd | None:
        """Applies the decision on a close; returns the next close to handle, or None."""
        decision = end.decision
        if decision.retries:
            return await self._reconnect(end)
        close, rule = decision.close, decision.rule
        if rule.action is Action.LOGOUT:
            await self._wipe()
            await self._background(
                LoggedOut(
                    Cause.CLOSED,
                    rule.required_action,
                    f"Logged out by WhatsApp ({close.code} {rule.reason}); credentials wiped. "
                    "StartSession begins a new QR login.",
                    _disconnect(close),
                )
            )
            # NOTE: after the change: from then on the session is unlinked, so no send settling
            # later can put a message back in the queue.
            await self._messages_logged_out()
            return None
        # NOTE: only a close the policy does not retry is followed by a check of what is
        # stored: a retried close leaves the credentials as they were, and a check each (a
        # thread hop) in a reconnect storm took the event loop's p99 lag from 4-7 ms to 17-43 ms
        # (3,000 sessions in process).
        await self._engine.refresh_credentials(self._vault)
        await self._background(
            Failed(rule.required_action, _failed_message(close, rule), _disconnect(close))
        )
        if is_qr_window_over(close.code, close.message):
            self._qr.finish(QrOutcome.EXPIRED)
        return None

    async def _reconnect(self, first: ConnectionEnd) -> ConnectionEnd | None:
        """One retry sequence. Returns a close the sequence does not retry (for the caller to
        apply), a close after a stable connection (a new sequence starts), or None.

        NOTE: the loop is spelled out over tenacity's public primitives (a RetryCallState, the
        wait and stop strategies of one AsyncRetrying) instead of iterating AsyncRetrying, whose
        per-attempt bookkeeping (it inspects every callback on every attempt) cost more than the
        rest of a reconnect; a reconnect storm runs this for every session at once.
        """
        retrying = self._ctx.retrying
        state = RetryCallState(retrying, None, (), {})
        end = first
        while True:
            decision = end.decision
            if not decision.retries:
                return end
            state.set_exception((ConnectionClosed, ConnectionClosed(end), None))
            if retrying.stop(state):
                await self._give_up(decision)
                return None
            delay = retrying.wait(state)
            await self._announce_retry(decision, state.attempt_number, delay)
            await self._sleep(delay)
            state.prepare_for_next_attempt()
            end = await self._hold(
                RetryStarted(state.attempt_number - 1, decision.rule.backoff.max_attempts)
            )
            if end.stable and end.decision.retries:
                return end

    async def _announce_retry(self, decision: Decision, attempt: int, delay: float) -> None:
        close, rule = decision.close, decision.rule
        attempts = rule.backoff.max_attempts
        self._log_close(close, "retry %d/%d in %.1f s", attempt, attempts, delay)
        network = close.code == wa.CONNECTION_LOST
        await self._background(
            Reconnecting(
                _disconnect(close),
                RequiredAction.CHECK_NETWORK if network else RequiredAction.WAIT,
                RetryProgress(attempt, attempts, time.time() + delay),
                f"Closed with {close.code} {rule.reason}; retry {attempt} of {attempts} in "
                f"{delay:.1f} s.",
            )
        )

    def _log_close(self, close: Closed, outcome: str, *args: object) -> None:
        """One INFO line per retry (and per giving up), with the close that caused it."""
        log.info(
            "session %s: closed with %d %s (%s); " + outcome,
            self.session_id,
            close.code,
            wa.reason_for(close.code, close.message),
            close.message,
            *args,
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._retry_now.wait()

    async def _give_up(self, decision: Decision) -> None:
        close, rule = decision.close, decision.rule
        attempts = rule.backoff.max_attempts
        self._log_close(close, "gave up after %d retries", attempts)
        await self._background(
            Failed(
                RequiredAction.START_SESSION,
                f"Gave up after {attempts} retries (last close {close.code} {rule.reason}); "
                "StartSession tries again.",
                _disconnect(close),
                RetryProgress(attempt=attempts, max_attempts=attempts, next_attempt_time=None),
            )
        )

    async def _hold(self, change: Transition | None) -> ConnectionEnd:
        """Commits `change` (if any), connects and follows the connection until it closes;
        a restart (515) connects again at once here, up to its rule's `max_attempts` in a row,
        without counting as a failed attempt.

        NOTE: 515 is normal once (after pairing) and now and then; a server that answered every
        connect with 515 would otherwise be reconnected to at once, forever.
        """
        restarts = 0
        while True:
            if change is not None:
                # NOTE: in a storm thousands of backoff timers expire together; paced, their
                # announcements are committed a few per loop iteration, not all in one.
                await self._ctx.pacer.turn()
                await self._background(change)
            # NOTE: the limiter's turn comes right before the connect, with nothing to wait
            # for in between: connects start exactly at the pace the limiter releases them.
            await self._ctx.limiter.acquire()
            end = await self._connect_once()
            rule = end.decision.rule
            if end.stable:
                restarts = 0  # in a row: without a stable connection in between
            if rule.action is not Action.RESTART or restarts >= rule.backoff.max_attempts:
                return end
            restarts += 1
            change = Restarting(_disconnect(end.decision.close))

    async def _connect_once(self) -> ConnectionEnd:
        self._retry_now.clear()
        settings = self._settings
        target = ConnectTarget(self.session_id, self._vault, self._record.proxy)
        try:
            async with asyncio.timeout(settings.connect_timeout_s):
                connection = await self._engine.connect(target)
        except TimeoutError:
            message = f"connect timed out after {settings.connect_timeout_s:g} s"
            return self._ended(Closed(wa.CONNECTION_LOST, message), stable=False)
        except Exception as error:
            message = str(error) or type(error).__name__
            return self._ended(Closed(wa.CONNECTION_LOST, message), stable=False)
        self._connection = connection
        opened_at: float | None = None
        try:
            # NOTE: closed here, not left to the garbage collector: an unfinished async
            # generator is finalised through call_soon_threadsafe (a self-pipe write and a
            # task each), which in a storm is ten thousand wake-ups at once.
            async with contextlib.aclosing(connection.events()) as events:
                async for event in events:
                    if isinstance(event, Closed):
                        self._connection_open = False
                        up = time.monotonic() - opened_at if opened_at is not None else 0.0
                        # NOTE: a network blip closes every connection at once; the pacer
                        # spreads the close handling over loop iterations so RPCs keep being
                        # answered.
                        await self._ctx.pacer.turn()
                        return self._ended(event, stable=up >= settings.stable_after_s)
                    if isinstance(event, Qr):
                        await self._on_qr(event)
                    elif isinstance(event, PairSuccess):
                        await self._engine.refresh_credentials(self._vault)
                        await self._background(Paired(event.account))
                        self._qr.finish(QrOutcome.PAIRED)
                    elif isinstance(event, Opened):
                        opened_at = time.monotonic()
                        self._connection_open = True
                        await self._background(Connected(event.account))
                        self._settled.set()
                        if self._ctx.messages is not None:
                            self._ctx.messages.connected(self.session_id, connection)
                    elif isinstance(event, Activity):
                        self._note_activity(event.time)
                    elif isinstance(
                        event, MessageReceived | Receipt
                    ) and not await self._on_message_event(event):
                        message = "an inbound message could not be stored"
                        return self._ended(Closed(wa.CONNECTION_LOST, message), stable=False)
            return self._ended(
                Closed(wa.CONNECTION_CLOSED, "the engine ended the connection without a code"),
                stable=False,
            )
        finally:
            if self._ctx.messages is not None:
                self._ctx.messages.disconnected(self.session_id)
            self._connection = None
            self._connection_open = False
            if not self._detach:
                await self._close_connection(connection)

    async def _on_message_event(self, event: MessageReceived | Receipt) -> bool:
        """Hands an inbound message or receipt to the messages layer; False when it could not
        be stored (the connection is then closed unacknowledged: WhatsApp delivers it again).

        NOTE: it is durable before the next event is read: reading on is what acknowledges it.
        """
        messages = self._ctx.messages
        if messages is None:
            return True
        try:
            if isinstance(event, MessageReceived):
                await messages.received(self.session_id, event)
            else:
                await messages.receipt(self.session_id, event)
        except StorageError as error:
            log.error("session %s: storing a message event failed: %s", self.session_id, error)
            return False
        return True

    def _ended(self, close: Closed, *, stable: bool) -> ConnectionEnd:
        return ConnectionEnd(Decision.of(self._settings.policy, close), stable)

    async def _on_qr(self, qr: Qr) -> None:
        # NOTE: the state is made durable first, so a client holding a QR code never reads a
        # session that is not yet QR_PENDING.
        if self._truth.state is not State.QR_PENDING:
            await self._background(QrShown())
        self._qr.show(qr)
        self._settled.set()


def _disconnect(close: Closed) -> Disconnect:
    return Disconnect(
        close.code, wa.reason_for(close.code, close.message), close.message, time.time()
    )


_FAILED_MESSAGES = {
    RequiredAction.CONTACT_SUPPORT: "the account is banned or restricted; contact WhatsApp support",
    RequiredAction.UPDATE_CLIENT: "WhatsApp rejected this client version; update the service",
    RequiredAction.RESOLVE_CONFLICT: "another client uses these credentials; stop it, then "
    "StartSession (never reconnected automatically: that would ping-pong)",
    RequiredAction.START_SESSION: "StartSession tries again",
}


def _failed_message(close: Closed, rule: CodeRule) -> str:
    what = _FAILED_MESSAGES.get(rule.required_action, "see required_action")
    return f"Stopped after {close.code} {wa.reason_for(close.code, close.message)}: {what}."
