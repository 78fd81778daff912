"""A thin blocking facade over `SessionsClient`, for scripts and code without asyncio.

    with BlockingSessionsClient("127.0.0.1:50051") as client:
        client.create_session("demo")
        for event in client.watch(["demo"]):
            ...

Each call runs the asyncio client on a private event loop in a background thread, so the
behaviour (errors, reconnecting watches) is exactly the asyncio client's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from wasessions.client import (
    ConnectionListener,
    QrCode,
    ReconnectPolicy,
    SessionsClient,
    WatchEvent,
)
from wasessions.v1 import session_pb2 as pb
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim

T = TypeVar("T")


class BlockingSessionsClient:
    """The same methods as `SessionsClient`, blocking; streams are plain iterators.

    Either `target` (`host:port`) or `channel`: a function that makes the `grpc.aio.Channel`.
    NOTE: a function, not a channel: a grpc.aio channel belongs to the event loop it was made
    on, and this facade's loop is private, so it calls `channel()` there; it closes that
    channel when it closes (its loop ends with it).
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        channel: Callable[[], grpc.aio.Channel] | None = None,
        api_key: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        timeout: float | None = 30.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="wa-sessions-client", daemon=True
        )
        self._thread.start()

        #: The channel `channel()` made, which this facade closes.
        self._channel: grpc.aio.Channel | None = None

        async def build() -> SessionsClient:
            if channel is None:
                return SessionsClient(target, api_key=api_key, tls=tls, timeout=timeout)
            if target is not None or tls is not False:
                raise ValueError("pass either a channel function or a target (with tls)")
            self._channel = channel()
            return SessionsClient(channel=self._channel, api_key=api_key, timeout=timeout)

        try:
            self._client = self._run(build())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> T:
            return await anext(source)

        try:
            while True:
                try:
                    yield self._run(step())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None and self._loop.is_running():
                self._run(aclose())

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._client.close())
            if self._channel is not None:
                self._run(self._channel.close())
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # The same calls as SessionsClient ------------------------------------------------------

    def create_session(
        self,
        session_id: str,
        *,
        labels: Mapping[str, str] | None = None,
        engine: str = "",
        skip_start: bool = False,
        request_id: str = "",
        proxy: str = "",
    ) -> pb.Session:
        return self._run(
            self._client.create_session(
                session_id,
                labels=labels,
                engine=engine,
                skip_start=skip_start,
                request_id=request_id,
                proxy=proxy,
            )
        )

    def get_session(self, session: str) -> pb.Session:
        return self._run(self._client.get_session(session))

    def list_sessions(
        self, *, states: Collection[str | int] = (), page_size: int = 0
    ) -> list[pb.Session]:
        return self._run(self._client.list_sessions(states=states, page_size=page_size))

    def update_labels(
        self, session: str, labels: Mapping[str, str], *, replace: bool = False
    ) -> pb.Session:
        return self._run(self._client.update_labels(session, labels, replace=replace))

    def start_session(self, session: str, *, relink: bool = False) -> pb.Session:
        return self._run(self._client.start_session(session, relink=relink))

    def stop_session(self, session: str) -> pb.Session:
        return self._run(self._client.stop_session(session))

    def logout_session(self, session: str) -> pb.Session:
        return self._run(self._client.logout_session(session))

    def delete_session(self, session: str) -> None:
        self._run(self._client.delete_session(session))

    def request_pairing_code(self, session: str, phone_number: str) -> str:
        return self._run(self._client.request_pairing_code(session, phone_number))

    def get_policy(self) -> svc.Policy:
        return self._run(self._client.get_policy())

    def watch(
        self,
        names: Iterable[str] = (),
        *,
        resume_token: str = "",
        heartbeats: bool = False,
        reconnect: ReconnectPolicy | None = None,
        on_connection: ConnectionListener | None = None,
    ) -> Iterator[WatchEvent]:
        """`on_connection` runs on this facade's own thread."""

        async def make() -> AsyncIterator[WatchEvent]:
            return self._client.watch(
                names,
                resume_token=resume_token,
                heartbeats=heartbeats,
                reconnect=reconnect,
                on_connection=on_connection,
            )

        return self._iterate(self._run(make()))

    def qr_codes(self, session: str) -> Iterator[QrCode]:
        return self._iterate(self._client.qr_codes(session))

    def wait_for_state(
        self, session: str, *states: str | int, timeout: float | None = 60.0
    ) -> pb.Session:
        return self._run(self._client.wait_for_state(session, *states, timeout=timeout))

    # Simulator -----------------------------------------------------------------------------

    def sim_scan(self, session: str) -> None:
        self._run(self._client.simulator.scan(session))

    def sim_enter_pairing_code(self, session: str, code: str) -> None:
        self._run(self._client.simulator.enter_pairing_code(session, code))

    def sim_inject_disconnect(self, session: str, code: int, message: str = "") -> None:
        self._run(self._client.simulator.inject_disconnect(session, code, message))

    def sim_set_network(self, reachable: bool) -> None:
        self._run(self._client.simulator.set_network(reachable))

    def sim_network_stats(self, reset: bool = False) -> sim.GetNetworkStatsResponse:
        stats: sim.GetNetworkStatsResponse = self._run(self._client.simulator.network_stats(reset))
        return stats
