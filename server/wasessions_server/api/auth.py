"""The RPC guard: API keys (full and read-only), streams per client, RPC metrics.

Keys travel as metadata `authorization: Bearer <key>` and are compared as SHA-256 digests in
constant time (see security.py). With keys configured:

- every RPC of SessionService and SimulatorService needs a key (UNAUTHENTICATED without one or
  with a wrong one, streams included); a read-only key may call only GetSession, ListSessions,
  WatchSessions and GetPolicy (PERMISSION_DENIED for the rest);
- overall health and reflection stay open unless configured otherwise; per-session health
  names (`sessions/<id>`) reveal session ids, so they always need a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from grpc_health.v1 import health
from wasessions.v1 import message_service_pb2, session_service_pb2

from wasessions_server.api.session_health import is_session_name
from wasessions_server.api.status import (
    Malformed,
    checks_malformed,
    malformed,
    to_grpc_status,
    tolerant,
)
from wasessions_server.errors import ServiceError, Status
from wasessions_server.metrics import ServerMetrics
from wasessions_server.security import ApiKey, Role, SecuritySettings

_SESSION = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
_MESSAGE = message_service_pb2.DESCRIPTOR.services_by_name["MessageService"].full_name
_HEALTH = health.SERVICE_NAME
_REFLECTION_PREFIX = "grpc.reflection."

#: What a read-only key may call. NOTE: WatchQrCodes is not here: a QR code is what links a
#: phone to the session, so showing it is as strong as starting one.
READ_ONLY_METHODS = frozenset(
    [f"/{_SESSION}/{name}" for name in ("GetSession", "ListSessions", "WatchSessions", "GetPolicy")]
    + [f"/{_MESSAGE}/{name}" for name in ("GetMessage", "ListMessages", "WatchMessages")]
)
#: Server streams counted against a client's stream limit.
LIMITED_STREAMS = frozenset(
    {
        f"/{_SESSION}/WatchSessions",
        f"/{_SESSION}/WatchQrCodes",
        f"/{_MESSAGE}/WatchMessages",
        f"/{_HEALTH}/Watch",
    }
)

Behavior = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class _Caller:
    key: ApiKey | None
    problem: ServiceError | None  # why the caller is not authenticated (None: it is)


def _missing() -> ServiceError:
    return ServiceError(
        Status.UNAUTHENTICATED,
        "API_KEY_MISSING",
        "this server needs an API key: send metadata 'authorization: Bearer <key>'",
    )


def _invalid() -> ServiceError:
    return ServiceError(
        Status.UNAUTHENTICATED, "API_KEY_INVALID", "the API key is not valid on this server"
    )


def _read_only(method: str) -> ServiceError:
    return ServiceError(
        Status.PERMISSION_DENIED,
        "READ_ONLY_API_KEY",
        f"this API key is read-only; {method.rsplit('/', 1)[-1]} needs a full key",
    )


def _too_many_streams(limit: int) -> ServiceError:
    return ServiceError(
        Status.RESOURCE_EXHAUSTED,
        "TOO_MANY_STREAMS",
        f"this client already has {limit} open streams (the limit); close some first",
    )


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for name, value in metadata or ():
        if name.lower() == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _peer_host(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    peer = context.peer() or "unknown"
    return peer.rsplit(":", 1)[0] if peer.startswith(("ipv4:", "ipv6:")) else peer


#: Decides, per call, whether a caller may use one method (None: they may).
Access = Callable[[_Caller, Any], ServiceError | None]


def _need_key(caller: _Caller, request: Any) -> ServiceError | None:
    return caller.problem


def _need_full_key(method: str) -> Access:
    def access(caller: _Caller, request: Any) -> ServiceError | None:
        if caller.problem is not None:
            return caller.problem
        if caller.key is not None and caller.key.role is Role.READ:
            return _read_only(method)
        return None

    return access


def _session_health_needs_key(caller: _Caller, request: Any) -> ServiceError | None:
    # NOTE: a session's health name reveals that the session exists.
    return caller.problem if is_session_name(getattr(request, "service", "")) else None


_ANONYMOUS = _Caller(None, None)


class RpcGuard:
    """Wraps every method handler of the server, once, when it is registered: API keys,
    read-only keys, per-client stream limits, unparseable requests and RPC metrics.

    NOTE: this is not a `grpc.aio.ServerInterceptor`. grpc runs an interceptor chain (a few
    coroutines) on every call, before it even looks the method up, and the chain cost about a
    tenth of a GetSession. Wrapped at registration, a call pays only for what applies to it:
    with no API keys and no metrics endpoint, a unary call is not wrapped at all.
    """

    def __init__(self, settings: SecuritySettings, metrics: ServerMetrics | None) -> None:
        """`metrics`: where RPCs are counted (None: nowhere, when no one can read them)."""
        self._settings = settings
        self._keys = settings.api_keys
        self._metrics = metrics
        self._streams: dict[str, int] = {}

    def registrar(self, server: grpc.aio.Server) -> grpc.aio.Server:
        """What to pass to `add_*Servicer_to_server` instead of `server`: everything
        registered through it is guarded."""
        # NOTE: the generated `add_*_to_server` functions call only these two methods.
        return cast("grpc.aio.Server", _GuardedRegistrar(server, self))

    def guard(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        access = self._access(method)
        kind = _KINDS[(handler.request_streaming, handler.response_streaming)]
        inner: Behavior = getattr(handler, kind.attribute)
        deserializer = handler.request_deserializer
        if not handler.request_streaming:
            deserializer = tolerant(deserializer)
        if not handler.response_streaming:
            if access is None and self._metrics is None and checks_malformed(inner):
                # NOTE: nothing to add (no keys, no metrics endpoint, the servicer answers an
                # unparseable request itself): one coroutine less on every call.
                return kind.factory(
                    inner,
                    request_deserializer=deserializer,
                    response_serializer=handler.response_serializer,
                )
            behavior = self._unary(inner, method, access)
        else:
            limited = method in LIMITED_STREAMS
            if inspect.isasyncgenfunction(inner) or inspect.isasyncgenfunction(
                getattr(inner, "__func__", None)
            ):
                behavior = self._stream_gen(inner, method, access, limited)
            else:
                behavior = self._stream_writer(inner, method, access, limited)
        return kind.factory(
            behavior,
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )

    def _access(self, method: str) -> Access | None:
        """Who may call `method` (None: everyone)."""
        if not self._keys:
            return None
        service = method[1:].split("/", 1)[0]
        if service == _HEALTH:
            return _session_health_needs_key if self._settings.open_health else _need_key
        if service.startswith(_REFLECTION_PREFIX):
            return None if self._settings.open_reflection else _need_key
        # NOTE: default deny: SessionService, SimulatorService and any service added later
        # need a key; read-only keys reach only the read methods.
        return _need_key if method in READ_ONLY_METHODS else _need_full_key(method)

    def _caller(self, context: Any) -> _Caller:
        token = _bearer(context.invocation_metadata())
        if not token:
            return _Caller(None, _missing() if token is None else _invalid())
        key = self._keys.match(token)
        return _Caller(key, None if key is not None else _invalid())

    def _admit(self, access: Access | None, request: Any, context: Any) -> _Caller:
        """The caller, once they may make this call; raises the refusal otherwise."""
        caller = _ANONYMOUS
        if access is not None:
            caller = self._caller(context)
            if (problem := access(caller, request)) is not None:
                raise problem
        if isinstance(request, Malformed):
            raise malformed()
        return caller

    # Wrapping ---------------------------------------------------------------------------------

    def _done(self, method: str, context: Any, started: float, error: BaseException | None) -> None:
        if self._metrics is None:
            return
        if error is None:
            code = "OK"
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):
            code = "CANCELLED"
        else:
            status = context.code()
            code = getattr(status, "name", "UNKNOWN") if status is not None else "UNKNOWN"
        self._metrics.rpc_done(method, code, time.monotonic() - started)

    def _unary(self, inner: Behavior, method: str, access: Access | None) -> Behavior:
        if access is None and self._metrics is None:
            # NOTE: the default configuration's path (no keys, no metrics endpoint): only the
            # request's bytes are left to check.
            async def plain(request: Any, context: Any) -> Any:
                if isinstance(request, Malformed):
                    await context.abort_with_status(to_grpc_status(malformed()))
                return await inner(request, context)

            return plain

        async def behavior(request: Any, context: Any) -> Any:
            started = time.monotonic()
            try:
                try:
                    self._admit(access, request, context)
                except ServiceError as problem:
                    await context.abort_with_status(to_grpc_status(problem))
                result = await inner(request, context)
            except BaseException as error:
                self._done(method, context, started, error)
                raise
            self._done(method, context, started, None)
            return result

        return behavior

    def _enter_stream(self, method: str, context: Any, caller: _Caller) -> str:
        """Counts a new stream; returns the client it counts against."""
        who = caller.key.client_id if caller.key is not None else _peer_host(context)
        if self._streams.get(who, 0) >= self._settings.max_streams_per_client:
            raise _too_many_streams(self._settings.max_streams_per_client)
        self._streams[who] = self._streams.get(who, 0) + 1
        if self._metrics is not None:
            self._metrics.streams.labels(method).inc()
        return who

    def _leave_stream(self, method: str, who: str | None) -> None:
        if who is None:
            return
        left = self._streams.get(who, 1) - 1
        if left <= 0:
            self._streams.pop(who, None)
        else:
            self._streams[who] = left
        if self._metrics is not None:
            self._metrics.streams.labels(method).dec()

    @contextlib.asynccontextmanager
    async def _stream_guard(
        self, request: Any, context: Any, method: str, access: Access | None, limited: bool
    ) -> AsyncIterator[None]:
        """Refusal, the per-client stream count and the RPC metric around one stream."""
        started = time.monotonic()
        who: str | None = None
        try:
            try:
                caller = self._admit(access, request, context)
                if limited:
                    who = self._enter_stream(method, context, caller)
            except ServiceError as problem:
                await context.abort_with_status(to_grpc_status(problem))
            yield
        except BaseException as error:
            self._done(method, context, started, error)
            raise
        else:
            self._done(method, context, started, None)
        finally:
            self._leave_stream(method, who)

    def _stream_gen(
        self, inner: Behavior, method: str, access: Access | None, limited: bool
    ) -> Behavior:
        async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
            async with self._stream_guard(request, context, method, access, limited):
                async for item in inner(request, context):
                    yield item

        return behavior

    def _stream_writer(
        self, inner: Behavior, method: str, access: Access | None, limited: bool
    ) -> Behavior:
        async def behavior(request: Any, context: Any) -> None:
            async with self._stream_guard(request, context, method, access, limited):
                await inner(request, context)

        return behavior


@dataclass(frozen=True, slots=True)
class _Kind:
    attribute: str  # the RpcMethodHandler attribute that holds the behavior
    factory: Callable[..., grpc.RpcMethodHandler[Any, Any]]


#: (request streaming, response streaming) -> how such a handler is built.
_KINDS = {
    (False, False): _Kind("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): _Kind("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): _Kind("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): _Kind("stream_stream", grpc.stream_stream_rpc_method_handler),
}


class _GuardedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come out guarded (each wrapped once)."""

    def __init__(self, inner: grpc.GenericRpcHandler, guard: RpcGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._guarded: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        guarded = self._guarded.get(method)
        if guarded is None or guarded[0] is not handler:
            guarded = (handler, self._guard.guard(method, handler))
            self._guarded[method] = guarded
        return guarded[1]


class _GuardedRegistrar:
    """Stands in for the server while servicers are added, and guards what they register."""

    def __init__(self, server: grpc.aio.Server, guard: RpcGuard) -> None:
        self._server = server
        self._guard = guard

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            [_GuardedGenericHandler(h, self._guard) for h in handlers]
        )

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self._server.add_registered_method_handlers(
            service,
            {name: self._guard.guard(f"/{service}/{name}", h) for name, h in handlers.items()},
        )
