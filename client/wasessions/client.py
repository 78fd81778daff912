"""`SessionsClient`: the typed asyncio client of a wa-sessions server.

    async with SessionsClient("127.0.0.1:50051") as client:
        await client.create_session("demo")
        async for qr in client.qr_codes("demo"):
            ...
        async for event in client.watch():
            ...

Sessions are named by id (`demo`) or by resource name (`sessions/demo`). Failed calls raise
`wasessions.errors.WaSessionsError` subclasses, never raw `grpc.aio.AioRpcError`s.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_random,
)

from wasessions.errors import (
    NotFoundError,
    UnavailableError,
    WaitTimeoutError,
    WaSessionsError,
    from_rpc_error,
)
from wasessions.v1 import message_pb2 as mpb
from wasessions.v1 import message_service_pb2 as msvc
from wasessions.v1 import message_service_pb2_grpc as msvc_grpc
from wasessions.v1 import session_pb2 as pb
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

log = logging.getLogger(__name__)

Session = pb.Session
#: The state names, in the order of the contract (STOPPED ... FAILED).
STATE_NAMES = tuple(n for n in pb.Session.State.keys() if n != "STATE_UNSPECIFIED")  # noqa: SIM118

#: Codes after which a watch reconnects: the server went away, is restarting, or cancelled the
#: stream while shutting down (a stream this client cancels itself is never read again).
RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def session_name(session: str) -> str:
    """`sessions/{id}` for an id or a name."""
    return session if session.startswith("sessions/") else f"sessions/{session}"


def session_id(session: str) -> str:
    """The id of `sessions/{id}` (or the id itself)."""
    return session.removeprefix("sessions/")


def state_name(state: int) -> str:
    return str(pb.Session.State.Name(state))


def parse_state(state: str | int) -> int:
    """A state number from its name (`connected`, `CONNECTED`) or number."""
    if isinstance(state, int):
        return state
    try:
        return int(pb.Session.State.Value(state.upper()))
    except ValueError:
        names = ", ".join(STATE_NAMES)
        raise ValueError(f"unknown state {state!r} (one of {names})") from None


def to_datetime(ts: Timestamp) -> datetime | None:
    """A protobuf Timestamp as an aware datetime; None when unset (zero)."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=UTC)


# Watch -------------------------------------------------------------------------------------------


class EventKind(enum.Enum):
    """What one WatchSessions message says."""

    SNAPSHOT = "snapshot"
    SNAPSHOT_COMPLETE = "snapshot_complete"
    CHANGE = "change"
    DELETED = "deleted"
    HEARTBEAT = "heartbeat"
    RESYNC = "resync"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One message of a watch.

    - SNAPSHOT: `session` is the current state of a watched session.
    - SNAPSHOT_COMPLETE: every snapshot message has been sent.
    - CHANGE: `session` is the session after the change; `cause` says what caused it.
    - DELETED: `name` was deleted (`session` is None).
    - HEARTBEAT: nothing happened (only with `heartbeats=True`).
    - RESYNC: changes were missed; `reason` says why, and a full snapshot follows: treat
      every session not in it as gone.
    """

    kind: EventKind
    resume_token: str
    name: str = ""
    session: pb.Session | None = None
    cause: str = ""
    reason: str = ""

    @property
    def state(self) -> str:
        """The state name of `session` ("" when there is none)."""
        return state_name(self.session.state) if self.session is not None else ""

    @classmethod
    def from_message(cls, message: svc.WatchSessionsResponse) -> WatchEvent:
        token = message.resume_token
        which = message.WhichOneof("event")
        if which == "snapshot":
            return cls(EventKind.SNAPSHOT, token, message.snapshot.name, message.snapshot)
        if which == "change":
            change = message.change
            return cls(
                EventKind.CHANGE,
                token,
                change.session.name,
                change.session,
                cause=svc.SessionChange.Cause.Name(change.cause),
            )
        if which == "deleted":
            return cls(EventKind.DELETED, token, message.deleted.name)
        if which == "resync":
            return cls(EventKind.RESYNC, token, reason=message.resync.reason)
        if which == "snapshot_complete":
            return cls(EventKind.SNAPSHOT_COMPLETE, token)
        return cls(EventKind.HEARTBEAT, token)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How `watch` reconnects: exponential backoff with jitter (tenacity), from `initial_s` up
    to `max_s` between attempts; gives up after `give_up_after_s` without a connection
    (None = never)."""

    initial_s: float = 0.2
    max_s: float = 10.0
    jitter_s: float = 0.5
    give_up_after_s: float | None = 300.0


#: `on_connection(open, why)` of a watch: `(False, why)` once when the stream breaks and the
#: watch starts reconnecting, `(True, "")` once it is open again.
ConnectionListener = Callable[[bool, str], None]


EventT = TypeVar("EventT")


class _ResumingStream(AsyncIterator[EventT]):
    """A server stream that reconnects with backoff when it breaks (server restart, dropped
    connection) and resumes after the last message it delivered: `resume_token` is the token of
    that message. The subclass opens the call and reads its messages."""

    def __init__(
        self,
        client: SessionsClient,
        resume_token: str,
        heartbeats: bool,
        reconnect: ReconnectPolicy,
        on_connection: ConnectionListener | None,
    ) -> None:
        self._client = client
        self.resume_token = resume_token
        self._heartbeats = heartbeats
        self._policy = reconnect
        #: How many times the stream was opened again after a break.
        self.reconnects = 0
        self._on_connection = on_connection
        self._events: AsyncGenerator[EventT, None] = self._run()

    def _start(self) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """The call, resuming after `resume_token`."""
        raise NotImplementedError

    def _event(self, message: Any) -> tuple[EventT, str, bool]:
        """The event of one message, its token, and whether it is a heartbeat."""
        raise NotImplementedError

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> EventT:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _retrying(self) -> AsyncRetrying:
        policy = self._policy
        return AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            wait=wait_exponential(multiplier=policy.initial_s, max=policy.max_s)
            + wait_random(0, policy.jitter_s),
            stop=(
                stop_never
                if policy.give_up_after_s is None
                else stop_after_delay(policy.give_up_after_s)
            ),
            before_sleep=_log_retry,
            reraise=True,
        )

    async def _open(self) -> tuple[grpc.aio.UnaryStreamCall[Any, Any], Any]:
        """Opens the stream and waits for its first message: a broken server fails here."""
        call = self._start()
        try:
            first = await call.read()
        except BaseException:
            call.cancel()
            raise
        if first is grpc.aio.EOF:
            raise _StreamEnded("the server ended the watch before its first message")
        return call, first

    async def _connect(self) -> tuple[grpc.aio.UnaryStreamCall[Any, Any], Any]:
        """`_open` with backoff (tenacity) while the server is unreachable; raises the last
        error, as a WaSessionsError, once the policy gives up or the error is not transient."""
        try:
            async for attempt in self._retrying():
                with attempt:
                    return await self._open()
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        except _StreamEnded as ended:
            raise UnavailableError(grpc.StatusCode.UNAVAILABLE, str(ended)) from None
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    async def _run(self) -> AsyncGenerator[EventT, None]:
        broken = ""  # why the stream broke, until it is open again
        while True:
            call, message = await self._connect()
            if broken and self._on_connection is not None:
                self._on_connection(True, "")
            broken = ""
            try:
                while message is not grpc.aio.EOF:
                    event, token, heartbeat = self._event(message)
                    # NOTE: the token moves before the event is handed out: a reconnect while
                    # the caller holds it must not deliver it twice.
                    self.resume_token = token
                    if not heartbeat or self._heartbeats:
                        yield event
                    message = await call.read()
                # The server ended the stream without an error (it never should): resume.
                log.info("watch stream ended by the server; reconnecting")
                broken = "the server ended the stream"
            except grpc.aio.AioRpcError as error:
                if not _is_transient(error):
                    raise from_rpc_error(error) from None
                log.info("watch stream broke (%s); reconnecting", error.code().name)
                broken = error.code().name
            finally:
                call.cancel()
            self.reconnects += 1
            if self._on_connection is not None:
                self._on_connection(False, broken)


class SessionWatch(_ResumingStream[WatchEvent]):
    """`SessionsClient.watch(...)`: every change exactly once, across reconnects.

    It reconnects with backoff when the stream breaks (server restart, dropped connection) and
    resumes after the last message it delivered. If the server cannot resume from there, the
    next events are a RESYNC and a new snapshot. `resume_token` is the token of the last
    delivered event: store it to resume later (`client.watch(resume_token=...)`).
    """

    def __init__(
        self,
        client: SessionsClient,
        names: Iterable[str],
        resume_token: str,
        heartbeats: bool,
        reconnect: ReconnectPolicy,
        on_connection: ConnectionListener | None = None,
    ) -> None:
        self._names = [session_name(n) for n in names]
        super().__init__(client, resume_token, heartbeats, reconnect, on_connection)

    def _start(self) -> grpc.aio.UnaryStreamCall[Any, Any]:
        request = svc.WatchSessionsRequest(names=self._names, resume_token=self.resume_token)
        return self._client._stub.WatchSessions(request, metadata=self._client._metadata)

    def _event(self, message: Any) -> tuple[WatchEvent, str, bool]:
        event = WatchEvent.from_message(message)
        return event, event.resume_token, event.kind is EventKind.HEARTBEAT


class _StreamEnded(Exception):
    """The server ended a watch without sending anything: retried like a broken connection."""


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, _StreamEnded):
        return True
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in RECONNECT_CODES


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    log.info("watch: reconnect attempt %d failed: %s", state.attempt_number, error)


# QR codes ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QrCode:
    """One QR code to show (`value`), or, last, how the QR phase ended (`outcome`:
    PAIRED, EXPIRED or STOPPED, with an empty `value`)."""

    value: str
    sequence: int
    expire_time: datetime | None
    outcome: str = ""

    @classmethod
    def from_message(cls, message: svc.QrCode) -> QrCode:
        outcome = "" if message.outcome == 0 else svc.QrCode.Outcome.Name(message.outcome)
        return cls(message.value, message.sequence, to_datetime(message.expire_time), outcome)


# Messages --------------------------------------------------------------------------------------

Message = mpb.Message
#: The message status names, in the order of the contract (QUEUED ... RECEIVED).
MESSAGE_STATUS_NAMES = tuple(n for n in mpb.Message.Status.keys() if n != "STATUS_UNSPECIFIED")  # noqa: SIM118
#: `parent` meaning every session.
ALL_SESSIONS = "sessions/-"
#: Statuses an OUTBOUND message never leaves.
FINAL_STATUSES = frozenset({"FAILED", "EXPIRED", "CANCELLED"})
#: SENT and the statuses receipts move it to: what `send --wait` waits for.
SENT_OR_LATER = frozenset({"SENT", "DELIVERED", "READ", "PLAYED"})


def message_parent(session: str | None) -> str:
    """`sessions/{id}` for an id or a name; `sessions/-` (every session) for None or `-`."""
    return ALL_SESSIONS if session in (None, "-", ALL_SESSIONS) else session_name(str(session))


def status_name(status: int) -> str:
    return str(mpb.Message.Status.Name(status))


def parse_status(status: str | int) -> int:
    """A message status number from its name (`sent`, `SENT`) or number."""
    if isinstance(status, int):
        return status
    try:
        return int(mpb.Message.Status.Value(status.upper()))
    except ValueError:
        names = ", ".join(MESSAGE_STATUS_NAMES)
        raise ValueError(f"unknown message status {status!r} (one of {names})") from None


def parse_direction(direction: str | int | None) -> int:
    """`inbound`/`outbound` (or the number) as a Message.Direction; None means both."""
    if direction is None:
        return mpb.Message.DIRECTION_UNSPECIFIED
    if isinstance(direction, int):
        return direction
    try:
        return int(mpb.Message.Direction.Value(direction.upper()))
    except ValueError:
        raise ValueError(f"unknown direction {direction!r} (inbound or outbound)") from None


def _duration(ttl: timedelta | float | None) -> Duration | None:
    if ttl is None:
        return None
    out = Duration()
    out.FromTimedelta(ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl))
    return out


class MessageEventKind(enum.Enum):
    """What one WatchMessages message says."""

    STARTED = "started"
    EVENT = "event"
    HEARTBEAT = "heartbeat"
    RESYNC = "resync"


@dataclass(frozen=True, slots=True)
class MessageWatchEvent:
    """One message of a message watch.

    - STARTED: the first item of a watch without a token: store `resume_token` as the cursor.
    - EVENT: `type` (RECEIVED, QUEUED or STATUS_CHANGED) happened to `message`, which is the
      message as it was right after it.
    - HEARTBEAT: nothing happened (only with `heartbeats=True`).
    - RESYNC: the token's position was pruned (`reason`): events were missed; the watch goes
      on from the present.
    """

    kind: MessageEventKind
    resume_token: str
    type: str = ""
    message: mpb.Message | None = None
    reason: str = ""

    @property
    def status(self) -> str:
        """The status name of `message` ("" when there is none)."""
        return status_name(self.message.status) if self.message is not None else ""

    @classmethod
    def from_message(cls, message: msvc.WatchMessagesResponse) -> MessageWatchEvent:
        token = message.resume_token
        which = message.WhichOneof("kind")
        if which == "event":
            event = message.event
            kind = msvc.MessageEvent.Type.Name(event.type)
            return cls(MessageEventKind.EVENT, token, kind, event.message)
        if which == "started":
            return cls(MessageEventKind.STARTED, token)
        if which == "resync":
            return cls(MessageEventKind.RESYNC, token, reason=message.resync.reason)
        return cls(MessageEventKind.HEARTBEAT, token)


class MessageWatch(_ResumingStream[MessageWatchEvent]):
    """`SessionsClient.watch_messages(...)`: every message event exactly once, across
    reconnects and server restarts: it resumes after the last event it delivered
    (`resume_token`; store it to resume later with `watch_messages(resume_token=...)`)."""

    def __init__(
        self,
        client: SessionsClient,
        parent: str,
        resume_token: str,
        heartbeats: bool,
        reconnect: ReconnectPolicy,
        on_connection: ConnectionListener | None = None,
    ) -> None:
        self._parent = parent
        super().__init__(client, resume_token, heartbeats, reconnect, on_connection)

    def _start(self) -> grpc.aio.UnaryStreamCall[Any, Any]:
        request = msvc.WatchMessagesRequest(parent=self._parent, resume_token=self.resume_token)
        return self._client._messages.WatchMessages(request, metadata=self._client._metadata)

    def _event(self, message: Any) -> tuple[MessageWatchEvent, str, bool]:
        event = MessageWatchEvent.from_message(message)
        return event, event.resume_token, event.kind is MessageEventKind.HEARTBEAT


# The client --------------------------------------------------------------------------------------


class SessionsClient:
    """Typed asyncio client of SessionService (and, on a sim server, SimulatorService).

    Either `target` (`host:port`; the client makes the channel and closes it) or `channel`, a
    ready `grpc.aio.Channel` (its owner closes it, not this client). TLS for a target:
    `tls=True` uses the system roots, or pass `grpc.ssl_channel_credentials(...)`. `api_key` is
    sent as `authorization: Bearer KEY` on every call. `timeout` (seconds) bounds every unary call.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        channel: grpc.aio.Channel | None = None,
        api_key: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        timeout: float | None = 30.0,
        options: Iterable[tuple[str, Any]] = (),
    ) -> None:
        opts = list(options)
        if channel is not None:
            if target is not None or tls is not False or opts:
                raise ValueError("pass either a ready channel or a target (with tls, options)")
            self._channel = channel
        elif target is None:
            raise ValueError("SessionsClient needs a target (host:port) or a channel")
        elif tls is False:
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        else:
            creds = grpc.ssl_channel_credentials() if tls is True else tls
            self._channel = grpc.aio.secure_channel(target, creds, options=opts)
        #: The `host:port` given ("" for a ready channel).
        self.target = target or ""
        self._owns_channel = channel is None
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self._stub: svc_grpc.SessionServiceAsyncStub = svc_grpc.SessionServiceStub(self._channel)
        self._messages: msvc_grpc.MessageServiceAsyncStub = msvc_grpc.MessageServiceStub(
            self._channel
        )
        self.simulator = SimulatorClient(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel this client made (a channel passed in stays open)."""
        if self._owns_channel:
            await self._channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    # Sessions ------------------------------------------------------------------------------

    async def create_session(
        self,
        session_id: str,
        *,
        labels: Mapping[str, str] | None = None,
        engine: str = "",
        skip_start: bool = False,
        request_id: str = "",
        proxy: str = "",
    ) -> pb.Session:
        """Creates a session; unless `skip_start` it starts connecting (QR codes follow)."""
        request = svc.CreateSessionRequest(
            session_id=session_id,
            labels=dict(labels or {}),
            engine=engine,
            skip_start=skip_start,
            request_id=request_id,
            proxy=proxy,
        )
        result: pb.Session = await self._call(self._stub.CreateSession, request)
        return result

    async def get_session(self, session: str) -> pb.Session:
        request = svc.GetSessionRequest(name=session_name(session))
        result: pb.Session = await self._call(self._stub.GetSession, request)
        return result

    async def list_sessions_page(
        self,
        *,
        states: Collection[str | int] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> svc.ListSessionsResponse:
        """One page; `next_page_token` is empty on the last one."""
        request = svc.ListSessionsRequest(
            page_size=page_size,
            page_token=page_token,
            states=[cast(pb.Session.State, parse_state(s)) for s in states],
        )
        result: svc.ListSessionsResponse = await self._call(self._stub.ListSessions, request)
        return result

    async def iter_sessions(
        self, *, states: Collection[str | int] = (), page_size: int = 0
    ) -> AsyncIterator[pb.Session]:
        """Every session (in the given states), ordered by id, page after page."""
        token = ""
        while True:
            page = await self.list_sessions_page(
                states=states, page_size=page_size, page_token=token
            )
            for session in page.sessions:
                yield session
            token = page.next_page_token
            if not token:
                return

    async def list_sessions(
        self, *, states: Collection[str | int] = (), page_size: int = 0
    ) -> list[pb.Session]:
        """All sessions (in the given states), ordered by id."""
        return [s async for s in self.iter_sessions(states=states, page_size=page_size)]

    async def update_labels(
        self, session: str, labels: Mapping[str, str], *, replace: bool = False
    ) -> pb.Session:
        """Sets the given labels (`replace`: the labels become exactly these)."""
        paths = ["labels"] if replace else [f"labels.{key}" for key in labels]
        request = svc.UpdateSessionRequest(
            name=session_name(session),
            labels=dict(labels),
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        result: pb.Session = await self._call(self._stub.UpdateSession, request)
        return result

    async def remove_labels(self, session: str, keys: Iterable[str]) -> pb.Session:
        request = svc.UpdateSessionRequest(
            name=session_name(session),
            update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in keys]),
        )
        result: pb.Session = await self._call(self._stub.UpdateSession, request)
        return result

    async def start_session(self, session: str, *, relink: bool = False) -> pb.Session:
        request = svc.StartSessionRequest(name=session_name(session), relink=relink)
        result: pb.Session = await self._call(self._stub.StartSession, request)
        return result

    async def stop_session(self, session: str) -> pb.Session:
        request = svc.StopSessionRequest(name=session_name(session))
        result: pb.Session = await self._call(self._stub.StopSession, request)
        return result

    async def logout_session(self, session: str) -> pb.Session:
        request = svc.LogoutSessionRequest(name=session_name(session))
        result: pb.Session = await self._call(self._stub.LogoutSession, request)
        return result

    async def delete_session(self, session: str) -> None:
        request = svc.DeleteSessionRequest(name=session_name(session))
        await self._call(self._stub.DeleteSession, request)

    async def request_pairing_code(self, session: str, phone_number: str) -> str:
        """The 8-character code to type on the phone (shown there as `ABCD-EFGH`)."""
        request = svc.RequestPairingCodeRequest(
            name=session_name(session), phone_number=phone_number
        )
        result: svc.RequestPairingCodeResponse = await self._call(
            self._stub.RequestPairingCode, request
        )
        return result.code

    async def get_policy(self) -> svc.Policy:
        result: svc.Policy = await self._call(self._stub.GetPolicy, svc.GetPolicyRequest())
        return result

    # Streams -------------------------------------------------------------------------------

    def watch(
        self,
        names: Iterable[str] = (),
        *,
        resume_token: str = "",
        heartbeats: bool = False,
        reconnect: ReconnectPolicy | None = None,
        on_connection: ConnectionListener | None = None,
    ) -> SessionWatch:
        """Follows sessions (`names`; empty = all): a snapshot, then every change exactly once,
        across server restarts (see `SessionWatch`). `on_connection(open, why)` hears when
        the stream breaks (`False`, once per outage) and when it is open again (`True`)."""
        return SessionWatch(
            self, names, resume_token, heartbeats, reconnect or ReconnectPolicy(), on_connection
        )

    async def qr_codes(self, session: str) -> AsyncIterator[QrCode]:
        """The session's QR codes as they come: the current one at once, then each new one; the
        last item carries the `outcome` (PAIRED, EXPIRED or STOPPED)."""
        request = svc.WatchQrCodesRequest(name=session_name(session))
        call = self._stub.WatchQrCodes(request, metadata=self._metadata)
        try:
            async for message in call:
                yield QrCode.from_message(message)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def wait_for_state(
        self,
        session: str,
        *states: str | int,
        timeout: float | None = 60.0,  # noqa: ASYNC109 (the whole wait's limit, documented)
    ) -> pb.Session:
        """Waits until the session is in one of `states` and returns it; raises
        `WaitTimeoutError` after `timeout` seconds (None = no limit) and `NotFoundError` if
        the session is deleted meanwhile."""
        wanted = {parse_state(s) for s in states}
        if not wanted:
            raise ValueError("wait_for_state needs at least one state")
        name = session_name(session)
        last: pb.Session | None = None
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                async with self.watch([name]) as events:
                    async for event in events:
                        if event.kind is EventKind.DELETED:
                            raise _deleted(name)
                        if event.session is not None:
                            last = event.session
                            if last.state in wanted:
                                return last
        except TimeoutError:
            now = state_name(last.state) if last is not None else "unknown"
            want = " or ".join(sorted(state_name(s) for s in wanted))
            raise WaitTimeoutError(
                f"{name} did not become {want} within {time.monotonic() - start:.1f}s (it is {now})"
            ) from None
        raise AssertionError("unreachable: a watch never ends")  # pragma: no cover

    # Messages ------------------------------------------------------------------------------

    async def send_message(
        self,
        session: str,
        to: str,
        text: str,
        *,
        reply_to: str = "",
        request_id: str = "",
        ttl: timedelta | float | None = None,
    ) -> mpb.Message:
        """Queues a text message to `to` (E.164 `+15551234567` or a JID) and returns it once it
        is durable (QUEUED). `request_id` makes a retry idempotent; `ttl` (seconds or a
        timedelta) bounds its time in the queue (the server's default when None)."""
        request = msvc.SendMessageRequest(
            parent=session_name(session),
            to=to,
            text=text,
            reply_to=reply_to,
            request_id=request_id,
            ttl=_duration(ttl),
        )
        result: mpb.Message = await self._call(self._messages.SendMessage, request)
        return result

    async def send_reaction(
        self,
        session: str,
        to: str,
        message: str,
        emoji: str,
        *,
        request_id: str = "",
        ttl: timedelta | float | None = None,
    ) -> mpb.Message:
        """Queues a reaction (`emoji`) to `message` (a message name of the same session)."""
        request = msvc.SendMessageRequest(
            parent=session_name(session),
            to=to,
            reaction=mpb.Message.Reaction(message=message, emoji=emoji),
            request_id=request_id,
            ttl=_duration(ttl),
        )
        result: mpb.Message = await self._call(self._messages.SendMessage, request)
        return result

    async def get_message(self, name: str) -> mpb.Message:
        """One message by name (`sessions/{id}/messages/{message_id}`)."""
        request = msvc.GetMessageRequest(name=name)
        result: mpb.Message = await self._call(self._messages.GetMessage, request)
        return result

    async def list_messages_page(
        self,
        session: str | None = None,
        *,
        chat: str = "",
        direction: str | int | None = None,
        statuses: Collection[str | int] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> msvc.ListMessagesResponse:
        """One page, newest first (`session` None: every session); `next_page_token` is empty
        on the last one."""
        request = msvc.ListMessagesRequest(
            parent=message_parent(session),
            page_size=page_size,
            page_token=page_token,
            chat=chat,
            direction=cast(mpb.Message.Direction, parse_direction(direction)),
            statuses=[cast(mpb.Message.Status, parse_status(s)) for s in statuses],
        )
        result: msvc.ListMessagesResponse = await self._call(self._messages.ListMessages, request)
        return result

    async def list_messages(
        self,
        session: str | None = None,
        *,
        chat: str = "",
        direction: str | int | None = None,
        statuses: Collection[str | int] = (),
        page_size: int = 0,
    ) -> AsyncIterator[mpb.Message]:
        """The messages (of `session`, or of every session), newest first, fetched page after
        page as the iteration goes."""
        token = ""
        while True:
            page = await self.list_messages_page(
                session,
                chat=chat,
                direction=direction,
                statuses=statuses,
                page_size=page_size,
                page_token=token,
            )
            for message in page.messages:
                yield message
            token = page.next_page_token
            if not token:
                return

    async def cancel_message(self, name: str) -> mpb.Message:
        """A QUEUED message becomes CANCELLED (FailedPreconditionError MESSAGE_NOT_QUEUED
        otherwise)."""
        request = msvc.CancelMessageRequest(name=name)
        result: mpb.Message = await self._call(self._messages.CancelMessage, request)
        return result

    async def mark_read(self, names: Iterable[str]) -> list[mpb.Message]:
        """Sends read receipts for INBOUND messages of one session; the messages after it."""
        request = msvc.MarkReadRequest(messages=list(names))
        result: msvc.MarkReadResponse = await self._call(self._messages.MarkRead, request)
        return list(result.messages)

    def watch_messages(
        self,
        session: str | None = None,
        *,
        resume_token: str = "",
        heartbeats: bool = False,
        reconnect: ReconnectPolicy | None = None,
        on_connection: ConnectionListener | None = None,
    ) -> MessageWatch:
        """Follows the message events of `session` (None: every session): from the present
        (a STARTED item first) or after `resume_token`, exactly once across server restarts
        (see `MessageWatch`)."""
        return MessageWatch(
            self,
            message_parent(session),
            resume_token,
            heartbeats,
            reconnect or ReconnectPolicy(),
            on_connection,
        )

    async def wait_for_message(
        self,
        name: str,
        *statuses: str | int,
        timeout: float | None = 60.0,  # noqa: ASYNC109 (the whole wait's limit, documented)
    ) -> mpb.Message:
        """Waits until the message is in one of `statuses`, or in a final status it can never
        leave (FAILED, EXPIRED, CANCELLED), and returns it; raises `WaitTimeoutError` after
        `timeout` seconds (None = no limit)."""
        wanted = {parse_status(s) for s in statuses}
        if not wanted:
            raise ValueError("wait_for_message needs at least one status")
        done = wanted | {parse_status(s) for s in FINAL_STATUSES}
        session = name.partition("/messages/")[0]
        last: mpb.Message | None = None
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                async with self.watch_messages(session) as events:
                    async for event in events:
                        # NOTE: read after the watch started, so no change falls in between.
                        if event.kind is MessageEventKind.STARTED:
                            last = await self.get_message(name)
                        elif event.message is not None and event.message.name == name:
                            last = event.message
                        else:
                            continue
                        if last.status in done:
                            return last
        except TimeoutError:
            now = status_name(last.status) if last is not None else "unknown"
            want = " or ".join(sorted(status_name(s) for s in wanted))
            raise WaitTimeoutError(
                f"{name} did not become {want} within {time.monotonic() - start:.1f}s (it is {now})"
            ) from None
        raise AssertionError("unreachable: a watch never ends")  # pragma: no cover


def _deleted(name: str) -> WaSessionsError:
    return NotFoundError(grpc.StatusCode.NOT_FOUND, f"{name} was deleted", reason="SESSION_DELETED")


class SimulatorClient:
    """SimulatorService: drives the embedded simulated WhatsApp of a `sim` server."""

    def __init__(self, client: SessionsClient) -> None:
        self._client = client
        self._stub: sim_grpc.SimulatorServiceAsyncStub = sim_grpc.SimulatorServiceStub(
            client._channel
        )

    async def scan(self, session: str) -> None:
        """Scans the session's current QR code, as a phone would."""
        request = sim.ScanQrCodeRequest(name=session_name(session))
        await self._client._call(self._stub.ScanQrCode, request)

    async def enter_pairing_code(self, session: str, code: str) -> None:
        request = sim.EnterPairingCodeRequest(name=session_name(session), code=code)
        await self._client._call(self._stub.EnterPairingCode, request)

    async def inject_disconnect(self, session: str, code: int, message: str = "") -> None:
        request = sim.InjectDisconnectRequest(
            name=session_name(session), code=code, message=message
        )
        await self._client._call(self._stub.InjectDisconnect, request)

    async def set_network(self, reachable: bool) -> None:
        await self._client._call(self._stub.SetNetwork, sim.SetNetworkRequest(reachable=reachable))

    async def network_stats(self, reset: bool = False) -> sim.GetNetworkStatsResponse:
        """Connects the simulated WhatsApp saw: in all, and the most within one second."""
        request = sim.GetNetworkStatsRequest(reset=reset)
        response: sim.GetNetworkStatsResponse = await self._client._call(
            self._stub.GetNetworkStats, request
        )
        return response

    async def receive(self, session: str, sender: str, text: str, whatsapp_id: str = "") -> str:
        """A contact (`sender`: E.164 or JID) sends the session `text`; the id it went under (a
        repeated `whatsapp_id` is a redelivery)."""
        request = sim.ReceiveMessageRequest(
            name=session_name(session), sender=sender, text=text, whatsapp_id=whatsapp_id
        )
        response: sim.ReceiveMessageResponse = await self._client._call(
            self._stub.ReceiveMessage, request
        )
        return response.whatsapp_id

    async def acknowledge(self, message: str, status: str | int) -> None:
        """The recipient's phone sends a receipt: DELIVERED, READ or PLAYED."""
        request = sim.AcknowledgeMessageRequest(
            name=message, status=cast(mpb.Message.Status, parse_status(status))
        )
        await self._client._call(self._stub.AcknowledgeMessage, request)

    async def inject_send_failure(
        self, session: str, kind: str | int, message: str = "", count: int = 1
    ) -> None:
        """The session's next `count` sends fail: REJECT, DROP_CONNECTION or DROP_AFTER_ACCEPT."""
        number = (
            kind if isinstance(kind, int) else sim.InjectSendFailureRequest.Kind.Value(kind.upper())
        )
        request = sim.InjectSendFailureRequest(
            name=session_name(session),
            kind=cast(sim.InjectSendFailureRequest.Kind, number),
            message=message,
            count=count,
        )
        await self._client._call(self._stub.InjectSendFailure, request)

    async def delivered(self, session: str) -> list[sim.DeliveredMessage]:
        """Every copy the simulated WhatsApp received from the session, in order."""
        request = sim.ListDeliveredRequest(name=session_name(session))
        response: sim.ListDeliveredResponse = await self._client._call(
            self._stub.ListDelivered, request
        )
        return list(response.messages)
