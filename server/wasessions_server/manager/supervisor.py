"""One supervisor per session: it drives the engine and decides, from each close's code, what
happens next, with the retry loop built from tenacity primitives."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, RetryCallState
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from wasessions_server.engines import (
    Activity,
    Closed,
    Connection,
    ConnectTarget,
    Engine,
    Opened,
    PairSuccess,
    Qr,
)
from wasessions_server.errors import ServiceError, Status
from wasessions_server.events import EventJournal
from wasessions_server.manager.qr import QrBoard, QrOutcome
from wasessions_server.manager.ratelimit import ConnectRateLimiter, Pacer
from wasessions_server.model import Cause, Disconnect, RequiredAction, RetryProgress, SessionRecord
from wasessions_server.model import State as S
from wasessions_server.policy import (
    Action,
    Backoff,
    CodeRule,
    ReconnectPolicy,
    is_qr_window_over,
)
from wasessions_server.policy import codes as wa
from wasessions_server.store import CredentialVault

log = logging.getLogger(__name__)

# NOTE: 515 is normal once (after pairing) and now and then; a server that answers every
# connect with 515 would otherwise be reconnected to at once, forever.
_MAX_RESTARTS_IN_A_ROW = 5


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    policy: ReconnectPolicy
    stable_after_s: float = 60.0
    connect_timeout_s: float = 60.0
    close_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ConnectionEnd:
    """How one connection ended: its close, and whether it had stayed up long enough to
    reset the retry attempts."""

    close: Closed
    stable: bool


class ConnectionClosed(Exception):
    """A failed attempt, as tenacity sees it."""

    def __init__(self, end: ConnectionEnd) -> None:
        super().__init__(f"closed with {end.close.code}: {end.close.message}")
        self.end = end


class _WaitForCode(wait_base):
    """Waits as the rule for the last close's code says (exponential, capped, jittered)."""

    def __init__(self, policy: ReconnectPolicy) -> None:
        self.policy = policy
        # NOTE: built once per rule, not on every retry (a storm retries thousands at once).
        self._waits: dict[Backoff, wait_base] = {}

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = _rule_of(self.policy, retry_state).backoff
        wait = self._waits.get(backoff)
        if wait is None:
            wait = self._waits[backoff] = backoff.wait()
        return wait(retry_state)


class _StopForCode(stop_base):
    """Stops after the number of retries the rule for the last close's code allows.

    NOTE: the close that began the sequence counts as tenacity's attempt 1, so retry n is
    attempt n + 1.
    """

    def __init__(self, policy: ReconnectPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> bool:
        rule = _rule_of(self.policy, retry_state)
        return retry_state.attempt_number > rule.backoff.max_attempts


_RETRYING: dict[int, tuple[ReconnectPolicy, AsyncRetrying]] = {}


def _retrying_for(policy: ReconnectPolicy) -> AsyncRetrying:
    """The retry configuration of `policy`, built once (and kept while the policy lives)."""
    cached = _RETRYING.get(id(policy))
    if cached is None or cached[0] is not policy:
        retrying = AsyncRetrying(wait=_WaitForCode(policy), stop=_StopForCode(policy))
        cached = _RETRYING[id(policy)] = (policy, retrying)
    return cached[1]


def _rule_of(policy: ReconnectPolicy, retry_state: RetryCallState) -> CodeRule:
    end = _end_of(retry_state)
    return policy.rule_for(end.close.code, end.close.message)


def _end_of(retry_state: RetryCallState) -> ConnectionEnd:
    assert retry_state.outcome is not None
    error = retry_state.outcome.exception()
    assert isinstance(error, ConnectionClosed)
    return error.end


class SessionSupervisor:
    """Runs one session: connect, follow the connection's events, apply the policy on close.

    `record` is the session as last committed; every change goes through `commit`, which
    makes it durable (and visible to watchers) before it returns.
    """

    def __init__(
        self,
        record: SessionRecord,
        engine: Engine,
        vault: CredentialVault,
        journal: EventJournal,
        limiter: ConnectRateLimiter,
        settings: SupervisorSettings,
        pacer: Pacer | None = None,
    ) -> None:
        self.record = record
        self.engine = engine
        self.vault = vault
        self.qr = QrBoard()
        self.operations = asyncio.Lock()  # serialises start / stop / logout / delete / relink
        self.settled = asyncio.Event()  # set once the current run leaves CONNECTING
        self._journal = journal
        self._limiter = limiter
        self._pacer = pacer if pacer is not None else Pacer()
        self._settings = settings
        self._policy = settings.policy
        self._mutation = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._connection: Connection | None = None
        self._connection_open = False
        self._detach = False
        self._retry_now = asyncio.Event()
        self.deleted = False

    @property
    def session_id(self) -> str:
        return self.record.session_id

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def live_connection(self) -> Connection | None:
        return self._connection

    # Changes ----------------------------------------------------------------------------------

    async def commit(self, cause: Cause, **changes: Any) -> SessionRecord:
        """Applies `changes` to the record and returns it once durable."""
        async with self._mutation:
            if self.deleted:
                # NOTE: a late change (a restore, a label update racing the delete) must not
                # bring a deleted session back into the registry.
                raise ServiceError(
                    Status.NOT_FOUND, "SESSION_NOT_FOUND", f"session {self.session_id} was deleted"
                )
            now = time.time()
            current = self.record
            updated = dataclasses.replace(
                current,
                **changes,
                has_credentials=await self._has_credentials(),
                update_time=now,
            )
            if updated.state != current.state:
                updated = dataclasses.replace(updated, state_change_time=now)
            await self._journal.append(self.session_id, updated, cause)
            if updated.state is not S.CONNECTING:
                self.settled.set()
            return self.record

    async def _has_credentials(self) -> bool:
        return self.engine.has_credentials(self.vault)

    def note_activity(self, when: float) -> None:
        # NOTE: activity is frequent and not a state change: it is kept in memory and goes to
        # disk with the next change, instead of a journal entry each time.
        self.record = dataclasses.replace(self.record, last_activity_time=when)

    # Life cycle -------------------------------------------------------------------------------

    def launch(self) -> None:
        """Starts the run task (the record must already say CONNECTING)."""
        if self.running:
            return
        self.settled.clear()
        self._retry_now.clear()
        self._task = asyncio.create_task(self._run(), name=f"session:{self.session_id}")

    def retry_now(self) -> None:
        """Cuts a RECONNECTING wait short."""
        self._retry_now.set()

    async def halt(self, *, keep_connection: bool = False) -> Connection | None:
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
        if not keep_connection or handed_over is None:
            return None
        return handed_over

    async def close_connection(self, connection: Connection) -> None:
        try:
            async with asyncio.timeout(self._settings.close_timeout_s):
                await connection.close()
        except Exception as error:
            log.warning("session %s: closing the connection failed: %s", self.session_id, error)

    # The run ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        halted = False
        try:
            end: ConnectionEnd | None = await self._hold(retry=None)
            while end is not None:
                end = await self._after_close(end)
        except asyncio.CancelledError:
            # NOTE: halted by an operation; it ends the QR phase itself once its own state
            # change is durable, so QR watchers never learn of a stop before GetSession does.
            halted = True
            raise
        except Exception:
            log.exception("session %s: supervisor failed", self.session_id)
            with contextlib.suppress(Exception):
                await self.commit(
                    Cause.CLOSED,
                    state=S.FAILED,
                    required_action=RequiredAction.START_SESSION,
                    status_message="Stopped by an internal error (see the server log); "
                    "StartSession tries again.",
                    retry=None,
                )
        finally:
            self.settled.set()
            if not halted:
                self.qr.finish(QrOutcome.STOPPED)

    async def _after_close(self, end: ConnectionEnd) -> ConnectionEnd | None:
        """Applies the policy to a close; returns the next close to handle, or None."""
        close = end.close
        rule = self._policy.rule_for(close.code, close.message)
        if rule.action in (Action.RECONNECT, Action.RESTART):
            return await self._reconnect(end)
        if rule.action is Action.LOGOUT:
            await asyncio.to_thread(self.vault.wipe)
            await self.commit(
                Cause.CLOSED,
                state=S.LOGGED_OUT,
                required_action=rule.required_action,
                last_disconnect=_disconnect(close),
                retry=None,
                account=None,
                status_message=f"Logged out by WhatsApp ({close.code} {rule.reason}); "
                "credentials wiped. StartSession begins a new QR login.",
            )
            return None
        await self.commit(
            Cause.CLOSED,
            state=S.FAILED,
            required_action=rule.required_action,
            last_disconnect=_disconnect(close),
            retry=None,
            status_message=_failed_message(close, rule),
        )
        if is_qr_window_over(close.code, close.message):
            self.qr.finish(QrOutcome.EXPIRED)
        return None

    async def _reconnect(self, first: ConnectionEnd) -> ConnectionEnd | None:
        """One retry sequence. Returns a close the sequence does not retry (for the caller to
        apply), a close after a stable connection (a new sequence starts), or None.

        NOTE: the loop is spelled out over tenacity's primitives (the retry state, the wait and
        stop strategies of one AsyncRetrying per policy) instead of iterating AsyncRetrying,
        whose per-attempt bookkeeping (it inspects every callback on every attempt) cost more
        than the rest of a reconnect; a reconnect storm runs this for every session at once.
        """
        retrying = _retrying_for(self._policy)
        state = RetryCallState(retrying, None, (), {})
        end = first
        while True:
            error = ConnectionClosed(end)
            if not self._is_retryable(error):
                return end
            state.set_exception((ConnectionClosed, error, None))
            if retrying.stop(state):
                await self._give_up(end.close)
                return None
            state.upcoming_sleep = retrying.wait(state)
            await self._announce_retry(state)
            await self._sleep(state.upcoming_sleep)
            state.prepare_for_next_attempt()
            end = await self._hold(retry=state.attempt_number - 1)
            if end.stable and self._is_retryable(ConnectionClosed(end)):
                return end

    def _is_retryable(self, error: BaseException) -> bool:
        if not isinstance(error, ConnectionClosed):
            return False
        close = error.end.close
        action = self._policy.rule_for(close.code, close.message).action
        return action in (Action.RECONNECT, Action.RESTART)

    async def _announce_retry(self, retry_state: RetryCallState) -> None:
        close = _end_of(retry_state).close
        rule = self._policy.rule_for(close.code, close.message)
        delay = retry_state.upcoming_sleep
        network = close.code == wa.CONNECTION_LOST
        await self.commit(
            Cause.CLOSED,
            state=S.RECONNECTING,
            required_action=RequiredAction.CHECK_NETWORK if network else RequiredAction.WAIT,
            last_disconnect=_disconnect(close),
            retry=RetryProgress(
                attempt=retry_state.attempt_number,
                max_attempts=rule.backoff.max_attempts,
                next_attempt_time=time.time() + delay,
            ),
            status_message=f"Closed with {close.code} {rule.reason}; retry "
            f"{retry_state.attempt_number} of {rule.backoff.max_attempts} in {delay:.1f} s.",
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._retry_now.wait()

    async def _give_up(self, close: Closed) -> None:
        rule = self._policy.rule_for(close.code, close.message)
        attempts = rule.backoff.max_attempts
        await self.commit(
            Cause.CLOSED,
            state=S.FAILED,
            required_action=RequiredAction.START_SESSION,
            last_disconnect=_disconnect(close),
            retry=RetryProgress(attempt=attempts, max_attempts=attempts, next_attempt_time=None),
            status_message=f"Gave up after {attempts} retries (last close {close.code} "
            f"{rule.reason}); StartSession tries again.",
        )

    async def _hold(self, retry: int | None) -> ConnectionEnd:
        """Connects and follows the connection until it closes; 515 restarts at once here,
        without counting as a failed attempt."""
        restarts = 0
        if retry is None:
            state_changes: dict[str, Any] = {}
            cause = Cause.STARTED
        else:
            state_changes = self._retry_changes(retry)
            cause = Cause.RETRY_STARTED
        while True:
            if state_changes:
                # NOTE: in a storm thousands of backoff timers expire together; paced, their
                # announcements are committed a few per loop iteration, not all in one.
                await self._pacer.turn()
                await self.commit(cause, **state_changes)
            # NOTE: the limiter's turn comes right before the connect, with nothing to wait
            # for in between: connects start exactly at the pace the limiter releases them.
            await self._limiter.acquire()
            end = await self._connect_once()
            close = end.close
            rule = self._policy.rule_for(close.code, close.message)
            if rule.action is not Action.RESTART or restarts >= _MAX_RESTARTS_IN_A_ROW:
                return end
            restarts += 1
            cause = Cause.CLOSED
            state_changes = {
                "state": S.CONNECTING,
                "required_action": RequiredAction.NONE,
                "last_disconnect": _disconnect(close),
                "retry": None,
                "status_message": f"WhatsApp asked for a restart ({close.code}); reconnecting.",
            }

    def _retry_changes(self, retry: int) -> dict[str, Any]:
        progress = self.record.retry
        return {
            "state": S.RECONNECTING,
            "retry": RetryProgress(
                attempt=retry,
                max_attempts=progress.max_attempts if progress else retry,
                next_attempt_time=None,
            ),
            "status_message": f"Retry {retry}: connecting.",
        }

    async def _connect_once(self) -> ConnectionEnd:
        self._retry_now.clear()
        target = ConnectTarget(self.session_id, self.vault, self.record.proxy)
        try:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                connection = await self.engine.connect(target)
        except TimeoutError:
            message = f"connect timed out after {self._settings.connect_timeout_s:g} s"
            return ConnectionEnd(Closed(wa.CONNECTION_LOST, message), stable=False)
        except Exception as error:
            message = str(error) or type(error).__name__
            return ConnectionEnd(Closed(wa.CONNECTION_LOST, message), stable=False)
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
                        await self._pacer.turn()
                        return ConnectionEnd(event, up >= self._settings.stable_after_s)
                    if isinstance(event, Qr):
                        await self._on_qr(event)
                    elif isinstance(event, PairSuccess):
                        await self.commit(
                            Cause.PAIRED,
                            state=S.PAIRING,
                            required_action=RequiredAction.WAIT,
                            account=event.account,
                            status_message="Linked; waiting for WhatsApp's restart (515).",
                        )
                        self.qr.finish(QrOutcome.PAIRED)
                    elif isinstance(event, Opened):
                        opened_at = time.monotonic()
                        self._connection_open = True
                        await self.commit(
                            Cause.OPENED,
                            state=S.CONNECTED,
                            required_action=RequiredAction.NONE,
                            account=event.account,
                            retry=None,
                            status_message="Connected.",
                        )
                        self.settled.set()
                    elif isinstance(event, Activity):
                        self.note_activity(event.time)
            return ConnectionEnd(
                Closed(wa.CONNECTION_CLOSED, "the engine ended the connection without a code"),
                stable=False,
            )
        finally:
            self._connection = None
            self._connection_open = False
            if not self._detach:
                await self.close_connection(connection)

    async def _on_qr(self, qr: Qr) -> None:
        # NOTE: the state is made durable first, so a client holding a QR code never reads a
        # session that is not yet QR_PENDING.
        if self.record.state is not S.QR_PENDING:
            await self.commit(
                Cause.QR_SHOWN,
                state=S.QR_PENDING,
                required_action=RequiredAction.SCAN_QR,
                retry=None,
                status_message="Scan the QR code (WatchQrCodes) or request a pairing code.",
            )
        self.qr.show(qr)
        self.settled.set()


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
