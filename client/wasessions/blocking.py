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
from datetime import timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from wasessions.client import (
    ConnectionListener,
    MessageWatchEvent,
    QrCode,
    ReconnectPolicy,
    SessionsClient,
    WatchEvent,
)
from wasessions.v1 import message_pb2 as mpb
from wasessions.v1 import message_service_pb2 as msvc
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

    # Messages ------------------------------------------------------------------------------

    def send_message(
        self,
        session: str,
        to: str,
        text: str,
        *,
        reply_to: str = "",
        request_id: str = "",
        ttl: timedelta | float | None = None,
    ) -> mpb.Message:
        return self._run(
            self._client.send_message(
                session, to, text, reply_to=reply_to, request_id=request_id, ttl=ttl
            )
        )

    def send_reaction(
        self,
        session: str,
        to: str,
        message: str,
        emoji: str,
        *,
        request_id: str = "",
        ttl: timedelta | float | None = None,
    ) -> mpb.Message:
        return self._run(
            self._client.send_reaction(session, to, message, emoji, request_id=request_id, ttl=ttl)
        )

    def get_message(self, name: str) -> mpb.Message:
        return self._run(self._client.get_message(name))

    def list_messages_page(
        self,
        session: str | None = None,
        *,
        chat: str = "",
        direction: str | int | None = None,
        statuses: Collection[str | int] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> msvc.ListMessagesResponse:
        return self._run(
            self._client.list_messages_page(
                session,
                chat=chat,
                direction=direction,
                statuses=statuses,
                page_size=page_size,
                page_token=page_token,
            )
        )

    def list_messages(
        self,
        session: str | None = None,
        *,
        chat: str = "",
        direction: str | int | None = None,
        statuses: Collection[str | int] = (),
        page_size: int = 0,
    ) -> Iterator[mpb.Message]:
        """Newest first, fetched page after page as the iteration goes."""
        return self._iterate(
            self._client.list_messages(
                session, chat=chat, direction=direction, statuses=statuses, page_size=page_size
            )
        )

    def cancel_message(self, name: str) -> mpb.Message:
        return self._run(self._client.cancel_message(name))

    def mark_read(self, names: Iterable[str]) -> list[mpb.Message]:
        return self._run(self._client.mark_read(list(names)))

    def watch_messages(
        self,
        session: str | None = None,
        *,
        resume_token: str = "",
        heartbeats: bool = False,
        reconnect: ReconnectPolicy | None = None,
        on_connection: ConnectionListener | None = None,
    ) -> Iterator[MessageWatchEvent]:
        """`on_connection` runs on this facade's own thread."""

        async def make() -> AsyncIterator[MessageWatchEvent]:
            return self._client.watch_messages(
                session,
                resume_token=resume_token,
                heartbeats=heartbeats,
                reconnect=reconnect,
                on_connection=on_connection,
            )

        return self._iterate(self._run(make()))

    def wait_for_message(
        self, name: str, *statuses: str | int, timeout: float | None = 60.0
    ) -> mpb.Message:
        return self._run(self._client.wait_for_message(name, *statuses, timeout=timeout))

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

    def sim_receive(self, session: str, sender: str, text: str, whatsapp_id: str = "") -> str:
        return self._run(self._client.simulator.receive(session, sender, text, whatsapp_id))

    def sim_acknowledge(self, message: str, status: str | int) -> None:
        self._run(self._client.simulator.acknowledge(message, status))

    def sim_inject_send_failure(
        self, session: str, kind: str | int, message: str = "", count: int = 1
    ) -> None:
        self._run(self._client.simulator.inject_send_failure(session, kind, message, count))

    def sim_delivered(self, session: str) -> list[sim.DeliveredMessage]:
        return self._run(self._client.simulator.delivered(session))
