"""`SessionsClient.watch` across real server restarts: every change exactly once, or an explicit
resync when the server cannot resume (a new journal)."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasessions import EventKind, ReconnectPolicy, SessionsClient, WatchEvent
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc

from tests.helpers import FAST, ServerProcess, merge, next_message, spawn_server, write_config

#: Long QR windows: nothing changes in the background while the test counts changes.
CONFIG = merge(FAST, {"engine": "sim", "qr": {"first_timeout_s": 60.0, "timeout_s": 60.0}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Servers:
    """Real server processes, one at a time, always on the same port."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.config = write_config(tmp_path / "config.toml", CONFIG)
        self.running: ServerProcess | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, data_dir: Path) -> ServerProcess:
        assert self.running is None
        self.running = spawn_server(data_dir, self.config, "--listen", self.target)
        return self.running

    def stop(self) -> None:
        """SIGTERM, as an orchestrator would: the server ends its streams UNAVAILABLE."""
        assert self.running is not None
        self.running.process.send_signal(signal.SIGTERM)
        assert self.running.process.wait(timeout=30) == 0
        self.running = None

    def kill(self) -> None:
        if self.running is not None:
            self.running.process.kill()
            self.running.process.wait()
            self.running = None


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    s = Servers(tmp_path)
    yield s
    s.kill()


async def collect(events: object, into: list[WatchEvent], until: str, name: str) -> None:
    """Reads events into `into` until `name` reaches state `until`."""
    async with asyncio.timeout(30):
        async for event in events:  # type: ignore[attr-defined]
            into.append(event)
            if event.kind is EventKind.CHANGE and event.name == name and event.state == until:
                return


async def journal_after(target: str, token: str) -> list[str]:
    """Every change the server's journal holds after `token`, read by a plain stub: the
    reference the reconnecting watch is compared with."""
    async with SessionsClient(target) as reference:
        stub: svc_grpc.SessionServiceAsyncStub = reference._stub
        call = stub.WatchSessions(svc.WatchSessionsRequest(resume_token=token))
        tokens: list[str] = []
        while True:
            message = await asyncio.wait_for(next_message(call), 10)
            kind = message.WhichOneof("event")
            if kind == "heartbeat":
                call.cancel()
                return tokens
            assert kind in ("change", "deleted"), kind
            tokens.append(message.resume_token)


async def test_watch_survives_restarts_exactly_once(servers: Servers, tmp_path: Path) -> None:
    data = tmp_path / "data"
    servers.start(data)
    fast = ReconnectPolicy(initial_s=0.05, max_s=0.5, jitter_s=0.05, give_up_after_s=60)
    async with SessionsClient(servers.target) as client:
        await client.create_session("a")
        await client.wait_for_state("a", "QR_PENDING", timeout=10)
        await client.simulator.scan("a")
        await client.wait_for_state("a", "CONNECTED", timeout=10)

        seen: list[WatchEvent] = []
        heard: list[tuple[bool, str]] = []
        watch = client.watch(reconnect=fast, on_connection=lambda *args: heard.append(args))
        async with watch:
            snapshot = [await anext(watch), await anext(watch)]
            assert [e.kind for e in snapshot] == [EventKind.SNAPSHOT, EventKind.SNAPSHOT_COMPLETE]
            start_token = watch.resume_token

            await client.create_session("b")
            await collect(watch, seen, "QR_PENDING", "sessions/b")

            # Restart while the watch is open: a connected session comes back by itself.
            servers.stop()
            servers.start(data)
            await collect(watch, seen, "CONNECTED", "sessions/a")
            assert watch.reconnects >= 1

            # Changes after the restart arrive on the same watch, and changes made while the
            # server is down to the watcher (here: the restart's own) are not lost.
            await client.simulator.inject_disconnect("a", 428)
            await collect(watch, seen, "CONNECTED", "sessions/a")
            await client.delete_session("b")
            async with asyncio.timeout(10):
                while seen[-1].kind is not EventKind.DELETED:
                    seen.append(await anext(watch))

            # A crash (SIGKILL: the connection just drops) and a restart: the same again.
            servers.kill()
            servers.start(data)
            await collect(watch, seen, "CONNECTED", "sessions/a")

            delivered = [e.resume_token for e in seen if e.kind is not EventKind.HEARTBEAT]
            assert all(e.kind in (EventKind.CHANGE, EventKind.DELETED) for e in seen), [
                e.kind for e in seen
            ]
            # Exactly once: the same changes, in the same order, as the journal holds.
            assert delivered == await journal_after(servers.target, start_token)
            assert len(set(delivered)) == len(delivered)
            causes = [e.cause for e in seen if e.name == "sessions/a"]
            assert causes.count("RESTORED") == 2 and "CLOSED" in causes
            assert watch.reconnects >= 2
            # Each outage is heard once when it begins and once when it ends.
            assert heard == [(False, "UNAVAILABLE"), (True, "")] * 2, heard

            # A server with another journal cannot resume: an explicit resync and snapshot.
            servers.stop()
            servers.start(tmp_path / "other-data")
            resync = await asyncio.wait_for(anext(watch), 30)
            assert resync.kind is EventKind.RESYNC
            assert resync.reason == "TOKEN_FROM_OTHER_JOURNAL"
            after = await asyncio.wait_for(anext(watch), 10)
            assert after.kind is EventKind.SNAPSHOT_COMPLETE  # the new server has no sessions
