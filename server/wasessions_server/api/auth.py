"""The server interceptor: API keys (full and read-only), streams per client, RPC metrics.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from grpc_health.v1 import health
from wasessions.v1 import session_service_pb2

from wasessions_server.api.session_health import is_session_name
from wasessions_server.api.status import to_grpc_status
from wasessions_server.errors import ServiceError, Status
from wasessions_server.metrics import ServerMetrics
from wasessions_server.security import ApiKey, Role, SecuritySettings

_SESSION = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
_HEALTH = health.SERVICE_NAME
_REFLECTION_PREFIX = "grpc.reflection."

#: What a read-only key may call. NOTE: WatchQrCodes is not here: a QR code is what links a
#: phone to the session, so showing it is as strong as starting one.
READ_ONLY_METHODS = frozenset(
    f"/{_SESSION}/{name}" for name in ("GetSession", "ListSessions", "WatchSessions", "GetPolicy")
)
#: Server streams counted against a client's stream limit.
LIMITED_STREAMS = frozenset(
    {f"/{_SESSION}/WatchSessions", f"/{_SESSION}/WatchQrCodes", f"/{_HEALTH}/Watch"}
)

Behavior = Callable[..., Any]
Req = TypeVar("Req")
Resp = TypeVar("Resp")


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


class _Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _malformed(request: _Malformed) -> ServiceError:
    return ServiceError(
        Status.INVALID_ARGUMENT,
        "MALFORMED_REQUEST",
        "the request message could not be parsed (wrong message type or corrupt bytes)",
    )


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that turns bytes that do not parse into a `_Malformed` request, so the
    caller gets INVALID_ARGUMENT from us instead of grpcio's UNKNOWN."""
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as error:
            return _Malformed(error)

    return deserialize


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


class SecurityInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, settings: SecuritySettings, metrics: ServerMetrics) -> None:
        self._settings = settings
        self._keys = settings.api_keys
        self._metrics = metrics
        self._streams: dict[str, int] = {}
        self._handlers: dict[
            tuple[str, str | None, str | None],
            tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]],
        ] = {}

    def open_streams(self, client: str) -> int:
        return self._streams.get(client, 0)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Req, Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        caller = self._authenticate(handler_call_details.invocation_metadata)
        # NOTE: the wrapped handler depends only on the method and on who calls; building it
        # (closures, a deserializer, a method handler) on every call cost about a tenth of a
        # GetSession, so it is built once per method and caller kind.
        cache_key = (
            method,
            caller.key.client_id if caller.key is not None else None,
            caller.problem.reason if caller.problem is not None else None,
        )
        cached = self._handlers.get(cache_key)
        if cached is not None and cached[0] is handler:
            return cast("grpc.RpcMethodHandler[Req, Resp]", cached[1])
        refusal: ServiceError | None = None
        check_session_health = False
        if self._keys:
            service = method[1:].split("/", 1)[0]
            if service == _HEALTH:
                if self._settings.open_health:
                    check_session_health = caller.problem is not None
                else:
                    refusal = caller.problem
            elif service.startswith(_REFLECTION_PREFIX):
                if not self._settings.open_reflection:
                    refusal = caller.problem
            else:
                # NOTE: default deny: SessionService, SimulatorService and any service added
                # later need a key; read-only keys reach only the read methods.
                refusal = caller.problem
                if refusal is None and caller.key is not None and caller.key.role is Role.READ:
                    refusal = None if method in READ_ONLY_METHODS else _read_only(method)
        wrapped = self._wrap(handler, method, caller, refusal, check_session_health)
        self._handlers[cache_key] = (handler, wrapped)
        return cast("grpc.RpcMethodHandler[Req, Resp]", wrapped)

    def _authenticate(self, metadata: Any) -> _Caller:
        if not self._keys:
            return _Caller(None, None)
        token = _bearer(metadata)
        if not token:
            return _Caller(None, _missing() if token is None else _invalid())
        key = self._keys.match(token)
        return _Caller(key, None if key is not None else _invalid())

    # Wrapping ---------------------------------------------------------------------------------

    def _wrap(
        self,
        handler: grpc.RpcMethodHandler[Any, Any],
        method: str,
        caller: _Caller,
        refusal: ServiceError | None,
        check_session_health: bool,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        def refused(request: Any) -> ServiceError | None:
            if refusal is not None:
                return refusal
            if isinstance(request, _Malformed):
                return _malformed(request)
            if check_session_health and is_session_name(getattr(request, "service", "")):
                # NOTE: a session's health name reveals that the session exists.
                return caller.problem
            return None

        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            inner = handler.unary_unary
            return grpc.unary_unary_rpc_method_handler(
                self._unary(inner, method, refused),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner = handler.unary_stream
            limited = method in LIMITED_STREAMS
            client = caller.key.client_id if caller.key is not None else None
            if inspect.isasyncgenfunction(inner) or inspect.isasyncgenfunction(
                getattr(inner, "__func__", None)
            ):
                behavior = self._stream_gen(inner, method, refused, limited, client)
            else:
                behavior = self._stream_writer(inner, method, refused, limited, client)
            return grpc.unary_stream_rpc_method_handler(
                behavior,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if refusal is not None:
            denial = refusal

            async def deny(request_iterator: Any, context: Any) -> None:
                await context.abort_with_status(to_grpc_status(denial))

            if handler.stream_stream is not None:
                return grpc.stream_stream_rpc_method_handler(
                    deny,
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
            return grpc.stream_unary_rpc_method_handler(
                deny,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _done(self, method: str, context: Any, started: float, error: BaseException | None) -> None:
        if error is None:
            code = "OK"
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):
            code = "CANCELLED"
        else:
            status = context.code()
            code = getattr(status, "name", "UNKNOWN") if status is not None else "UNKNOWN"
        self._metrics.rpc_done(method, code, time.monotonic() - started)

    def _unary(
        self, inner: Behavior, method: str, refused: Callable[[Any], ServiceError | None]
    ) -> Behavior:
        async def behavior(request: Any, context: Any) -> Any:
            started = time.monotonic()
            try:
                if (problem := refused(request)) is not None:
                    await context.abort_with_status(to_grpc_status(problem))
                result = await inner(request, context)
            except BaseException as error:
                self._done(method, context, started, error)
                raise
            self._done(method, context, started, None)
            return result

        return behavior

    def _enter_stream(
        self, method: str, context: Any, limited: bool, client: str | None
    ) -> str | None:
        """Counts a new stream; returns the client it counts against (None: not counted)."""
        if not limited:
            return None
        who = client or _peer_host(context)
        if self._streams.get(who, 0) >= self._settings.max_streams_per_client:
            raise _too_many_streams(self._settings.max_streams_per_client)
        self._streams[who] = self._streams.get(who, 0) + 1
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
        self._metrics.streams.labels(method).dec()

    @contextlib.asynccontextmanager
    async def _stream_guard(
        self,
        request: Any,
        context: Any,
        method: str,
        refused: Callable[[Any], ServiceError | None],
        limited: bool,
        client: str | None,
    ) -> AsyncIterator[None]:
        """Refusal, the per-client stream count and the RPC metric around one stream."""
        started = time.monotonic()
        who: str | None = None
        try:
            if (problem := refused(request)) is not None:
                await context.abort_with_status(to_grpc_status(problem))
            try:
                who = self._enter_stream(method, context, limited, client)
            except ServiceError as error:
                await context.abort_with_status(to_grpc_status(error))
            yield
        except BaseException as error:
            self._done(method, context, started, error)
            raise
        else:
            self._done(method, context, started, None)
        finally:
            self._leave_stream(method, who)

    def _stream_gen(
        self,
        inner: Behavior,
        method: str,
        refused: Callable[[Any], ServiceError | None],
        limited: bool,
        client: str | None,
    ) -> Behavior:
        async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
            async with self._stream_guard(request, context, method, refused, limited, client):
                async for item in inner(request, context):
                    yield item

        return behavior

    def _stream_writer(
        self,
        inner: Behavior,
        method: str,
        refused: Callable[[Any], ServiceError | None],
        limited: bool,
        client: str | None,
    ) -> Behavior:
        async def behavior(request: Any, context: Any) -> None:
            async with self._stream_guard(request, context, method, refused, limited, client):
                await inner(request, context)

        return behavior
