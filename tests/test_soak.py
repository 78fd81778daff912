"""A bounded soak against a real server process: mixed unary calls from several clients and
a few hundred watch streams opened and closed, while long-lived watchers follow everything.
Zero unexpected errors; file descriptors and memory flat at the end.

WASESSIONS_SOAK_SECONDS sets the length (default 60, the CI run)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

from tests.helpers import merge, spawn_server, write_config
from tests.security_helpers import SIM_FAST, terminate

SECONDS = float(os.environ.get("WASESSIONS_SOAK_SECONDS", "60"))
WORKERS = 6
LONG_WATCHERS = 20
WAVE = 60  # short-lived watch streams opened at once
CODES = [428, 503, 515, 408]
CALL_TIMEOUT = 30.0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Soak:
    def __init__(self, target: str, deadline: float) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.sessions = svc_grpc.SessionServiceStub(self.channel)
        self.sim = sim_grpc.SimulatorServiceStub(self.channel)
        self.deadline = deadline
        self.calls: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.streams_opened = 0
        self.changes_seen = 0

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def _call(
        self, op: str, call: Awaitable[object], allowed: tuple[grpc.StatusCode, ...] = ()
    ) -> object:
        try:
            # NOTE: a call that never returns would hang the soak: bound every call.
            result = await asyncio.wait_for(call, CALL_TIMEOUT)
        except TimeoutError:
            self.unexpected.append(f"{op}: no answer within {CALL_TIMEOUT} s")
            return None
        except grpc.aio.AioRpcError as error:
            if error.code() not in allowed:
                self.unexpected.append(f"{op}: {error.code().name} {error.details()}")
            return None
        self.calls[op] += 1
        return result

    async def worker(self, number: int) -> None:
        rng = random.Random(number)
        mine: list[str] = []
        serial = 0
        while self.running():
            op = rng.random()
            if op < 0.15 or not mine:
                serial += 1
                session_id = f"w{number}-{serial}"
                created = await self._call(
                    "create",
                    self.sessions.CreateSession(
                        svc.CreateSessionRequest(
                            session_id=session_id,
                            skip_start=rng.random() < 0.3,
                            labels={"worker": str(number)},
                        )
                    ),
                )
                if created is not None:
                    mine.append(session_id)
                continue
            name = f"sessions/{rng.choice(mine)}"
            if op < 0.45:
                await self._call("get", self.sessions.GetSession(svc.GetSessionRequest(name=name)))
            elif op < 0.55:
                await self._call(
                    "list", self.sessions.ListSessions(svc.ListSessionsRequest(page_size=100))
                )
            elif op < 0.62:
                await self._call(
                    "update",
                    self.sessions.UpdateSession(
                        svc.UpdateSessionRequest(
                            name=name,
                            labels={"n": str(serial)},
                            update_mask=field_mask_pb2.FieldMask(paths=["labels.n"]),
                        )
                    ),
                )
            elif op < 0.72:
                # NOTE: the session may not be showing a QR code right now: that is expected.
                await self._call(
                    "scan",
                    self.sim.ScanQrCode(sim.ScanQrCodeRequest(name=name)),
                    (grpc.StatusCode.FAILED_PRECONDITION,),
                )
            elif op < 0.8:
                await self._call(
                    "inject",
                    self.sim.InjectDisconnect(
                        sim.InjectDisconnectRequest(name=name, code=rng.choice(CODES))
                    ),
                    (grpc.StatusCode.FAILED_PRECONDITION,),
                )
            elif op < 0.86:
                await self._call(
                    "start", self.sessions.StartSession(svc.StartSessionRequest(name=name))
                )
            elif op < 0.92:
                await self._call(
                    "stop", self.sessions.StopSession(svc.StopSessionRequest(name=name))
                )
            elif op < 0.95:
                await self._call("policy", self.sessions.GetPolicy(svc.GetPolicyRequest()))
            else:
                await self._call(
                    "delete", self.sessions.DeleteSession(svc.DeleteSessionRequest(name=name))
                )
                mine.remove(name.removeprefix("sessions/"))
            if len(mine) > 15:
                victim = mine.pop(0)
                await self._call(
                    "delete",
                    self.sessions.DeleteSession(
                        svc.DeleteSessionRequest(name=f"sessions/{victim}")
                    ),
                )
        for session_id in mine:
            await self._call(
                "delete",
                self.sessions.DeleteSession(
                    svc.DeleteSessionRequest(name=f"sessions/{session_id}")
                ),
            )

    async def long_watcher(self) -> None:
        """Follows everything for the whole run: it must never fail or fall behind."""
        stream = self.sessions.WatchSessions(svc.WatchSessionsRequest())
        try:
            async for item in stream:
                kind = item.WhichOneof("event")
                if kind == "resync":
                    self.unexpected.append(f"long watcher resynced: {item.resync.reason}")
                if kind in ("change", "deleted"):
                    self.changes_seen += 1
                if not self.running():
                    break
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.unexpected.append(f"long watcher: {error.code().name} {error.details()}")
        finally:
            stream.cancel()

    async def short_watch(self, rng: random.Random) -> None:
        stream = self.sessions.WatchSessions(svc.WatchSessionsRequest())
        self.streams_opened += 1
        try:
            async for item in stream:
                if item.HasField("snapshot_complete"):
                    break
            await asyncio.sleep(rng.uniform(0, 0.5))
        except grpc.aio.AioRpcError as error:
            self.unexpected.append(f"short watch: {error.code().name} {error.details()}")
        finally:
            stream.cancel()

    async def watch_waves(self) -> None:
        rng = random.Random(99)
        while self.running():
            await asyncio.gather(*(self.short_watch(rng) for _ in range(WAVE)))


@pytest.mark.slow
async def test_soak(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.toml",
        merge(SIM_FAST, {"manager": {"heartbeat_interval_s": 0.5}}),
    )
    server = spawn_server(tmp_path / "data", config)
    pid = server.process.pid
    try:
        start = time.monotonic()
        soak = Soak(server.target, start + SECONDS)
        tasks = [asyncio.create_task(soak.worker(n), name=f"worker {n}") for n in range(WORKERS)]
        tasks += [
            asyncio.create_task(soak.long_watcher(), name=f"watcher {n}")
            for n in range(LONG_WATCHERS)
        ]
        tasks.append(asyncio.create_task(soak.watch_waves(), name="waves"))
        # Baseline once the server is warm (caches filled, a few waves of streams done).
        await asyncio.sleep(SECONDS / 3)
        base_fds, base_rss = _fds(pid), _rss_kib(pid)
        _, hung = await asyncio.wait(tasks, timeout=SECONDS + 2 * CALL_TIMEOUT)
        for task in hung:
            soak.unexpected.append(f"hung: {task.get_name()} {task.get_stack(limit=3)}")
            task.cancel()
        await asyncio.wait_for(soak.channel.close(), CALL_TIMEOUT)
        await asyncio.sleep(1.0)  # let the server finish closing streams and connections
        end_fds, end_rss = _fds(pid), _rss_kib(pid)
    finally:
        assert terminate(server.process, server.target) == 0
    summary = (
        f"{sum(soak.calls.values())} calls {dict(soak.calls)}, {soak.streams_opened} streams, "
        f"{soak.changes_seen} changes, fds {base_fds}->{end_fds}, rss {base_rss}->{end_rss} KiB"
    )
    print(summary)
    assert soak.unexpected == [], soak.unexpected[:20]
    assert soak.streams_opened >= 2 * WAVE, summary
    assert soak.calls["create"] > WORKERS and soak.calls["get"] > 0, summary
    assert soak.changes_seen > 0, summary
    assert end_fds <= base_fds + 5, summary
    assert end_rss <= base_rss + 40 * 1024, summary
