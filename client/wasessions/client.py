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
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, cast

import grpc
from google.protobuf import field_mask_pb2
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


class SessionWatch(AsyncIterator[WatchEvent]):
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
        self._client = client
        self._names = [session_name(n) for n in names]
        self.resume_token = resume_token
        self._heartbeats = heartbeats
        self._policy = reconnect
        #: How many times the stream was opened again after a break.
        self.reconnects = 0
        self._on_connection = on_connection
        self._events = self._run()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()  # type: ignore[attr-defined]

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

    async def _open(self) -> tuple[grpc.aio.UnaryStreamCall[Any, Any], svc.WatchSessionsResponse]:
        """Opens the stream and waits for its first message: a broken server fails here."""
        request = svc.WatchSessionsRequest(names=self._names, resume_token=self.resume_token)
        call = self._client._stub.WatchSessions(request, metadata=self._client._metadata)
        try:
            first = await call.read()
        except BaseException:
            call.cancel()
            raise
        if not isinstance(first, svc.WatchSessionsResponse):
            raise _StreamEnded("the server ended the watch before its first message")
        return call, first

    async def _connect(
        self,
    ) -> tuple[grpc.aio.UnaryStreamCall[Any, Any], svc.WatchSessionsResponse]:
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

    async def _run(self) -> AsyncIterator[WatchEvent]:
        broken = ""  # why the stream broke, until it is open again
        while True:
            call, first = await self._connect()
            if broken and self._on_connection is not None:
                self._on_connection(True, "")
            broken = ""
            message: svc.WatchSessionsResponse | None = first
            try:
                while message is not None:
                    event = WatchEvent.from_message(message)
                    # NOTE: the token moves before the event is handed out: a reconnect while
                    # the caller holds it must not deliver it twice.
                    self.resume_token = event.resume_token
                    if event.kind is not EventKind.HEARTBEAT or self._heartbeats:
                        yield event
                    read = await call.read()
                    message = read if isinstance(read, svc.WatchSessionsResponse) else None
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
