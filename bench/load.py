"""Client-side load: closed-loop unary load, a fixed-rate prober, a whole-service watcher, fan-out
subscribers and a change driver. The same code drives the server and the echo baseline."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from wasessions.v1 import session_pb2 as pb
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

from bench.procs import Proc, spawn_probe
from bench.stats import latency_ms

Call = Callable[[], Awaitable[Any]]
S = pb.Session
CONNECTED = S.CONNECTED
QR_PENDING = S.QR_PENDING
STATE_NAMES = {v: S.State.Name(v) for v in S.State.values()}


def stubs(channel: grpc.aio.Channel) -> tuple[Any, Any]:
    """(SessionService, SimulatorService) async stubs."""
    return svc_grpc.SessionServiceStub(channel), sim_grpc.SimulatorServiceStub(channel)


def ts(value: Any) -> float:
    """A protobuf Timestamp as seconds."""
    return float(value.seconds) + float(value.nanos) / 1e9


def token_seq(token: str) -> int:
    """The journal sequence number a resume token names (the bench peeks; clients must not)."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    return int(raw.rsplit(":", 1)[1])


async def closed_loop(call: Call, concurrency: int, duration: float) -> dict[str, float]:
    """`concurrency` callers, each issuing the next call when the last one answered."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        while True:
            start = time.perf_counter()
            if start >= deadline:
                return
            try:
                await call()
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {"calls_per_s": len(latencies) / elapsed, "errors": errors, **latency_ms(latencies)}


@dataclass
class Prober:
    """Issues one call every `interval` seconds (open loop) and records each latency."""

    call: Call
    interval: float = 0.01
    samples: list[tuple[float, float]] = field(default_factory=list)  # (monotonic start, s)
    errors: int = 0
    _task: asyncio.Task[None] | None = None
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _one(self) -> None:
        start = time.monotonic()
        try:
            await self.call()
        except grpc.aio.AioRpcError:
            self.errors += 1
            return
        self.samples.append((start, time.monotonic() - start))

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            if len(self._inflight) < 200:  # bounded: a stuck server must not grow this forever
                task = asyncio.create_task(self._one())
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=5)

    def between(self, start: float, end: float) -> list[float]:
        return [lat for at, lat in self.samples if start <= at <= end]


class ProbeProcess:
    """The Prober in a process of its own (bench/probe.py).

    NOTE: in a storm this process follows every change of 10,000 sessions on one watch stream,
    and a probe answered while its event loop is busy with that is recorded late. Probing from
    a separate process measures how fast the server answers, not how busy the bench is.
    """

    def __init__(
        self, target: str, names: Sequence[str], workdir: Path, interval: float = 0.01
    ) -> None:
        self._target = target
        self._names = names
        self._names_file = workdir / "probe-names.txt"
        self._out_file = workdir / "probe-samples.json"
        self._interval = interval
        self._proc: Proc | None = None
        self.samples: list[tuple[float, float]] = []
        self.errors = 0

    async def start(self) -> None:
        """Returns once the prober had its first answer."""
        self._names_file.write_text("\n".join(self._names) + "\n")
        self._out_file.unlink(missing_ok=True)
        self._proc = await asyncio.to_thread(
            spawn_probe, self._target, self._names_file, self._out_file, self._interval
        )

    async def stop(self) -> None:
        if self._proc is None:
            return
        code = await asyncio.to_thread(self._proc.stop)
        if code != 0:
            raise RuntimeError(f"the prober failed ({code}): {''.join(self._proc.log[-30:])}")
        result = json.loads(self._out_file.read_text())
        self.samples = [(float(at), float(lat)) for at, lat in result["samples"]]
        self.errors = int(result["errors"])

    def between(self, start: float, end: float) -> list[float]:
        return [lat for at, lat in self.samples if start <= at <= end]


class Tracker:
    """Watches every session (one WatchSessions stream) and keeps the state of each."""

    def __init__(self, sessions: Any, on_state: Callable[[str, int], None] | None = None) -> None:
        self._sessions = sessions
        self._on_state = on_state
        #: Called with (name, cause, state, state_change_time) for every change and snapshot
        #: (cause 0).
        self.on_change: Callable[[str, int, int, float], None] | None = None
        self.states: dict[str, int] = {}
        self.counts: Counter[int] = Counter()
        self.token = ""
        self.messages = 0
        self.resyncs = 0
        self.snapshot_complete = asyncio.Event()
        #: (update_time, cause, state, last_disconnect.message) of each change while recording.
        self.recorded: list[tuple[float, int, int, str]] | None = None
        self.timeline: list[tuple[float, dict[str, int]]] = []
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        call = self._sessions.WatchSessions(svc.WatchSessionsRequest())
        try:
            async for message in call:
                self._handle(message)
        except asyncio.CancelledError:
            call.cancel()
            raise
        except grpc.aio.AioRpcError as error:
            self.error = error

    def _handle(self, message: svc.WatchSessionsResponse) -> None:
        self.messages += 1
        self.token = message.resume_token
        kind = message.WhichOneof("event")
        if kind == "snapshot":
            snap = message.snapshot
            self._set(snap.name, snap.state)
            if self.on_change is not None:
                self.on_change(snap.name, 0, snap.state, ts(snap.state_change_time))
        elif kind == "change":
            session = message.change.session
            self._set(session.name, session.state)
            if self.on_change is not None:
                self.on_change(
                    session.name,
                    message.change.cause,
                    session.state,
                    ts(session.state_change_time),
                )
            if self.recorded is not None:
                self.recorded.append(
                    (
                        ts(session.update_time),
                        message.change.cause,
                        session.state,
                        session.last_disconnect.message,
                    )
                )
        elif kind == "snapshot_complete":
            self.snapshot_complete.set()
        elif kind == "resync":
            self.resyncs += 1
        elif kind == "deleted":
            old = self.states.pop(message.deleted.name, None)
            if old is not None:
                self.counts[old] -= 1

    def _set(self, name: str, state: int) -> None:
        old = self.states.get(name)
        if old == state:
            return
        if old is not None:
            self.counts[old] -= 1
        self.states[name] = state
        self.counts[state] += 1
        if self._on_state is not None:
            self._on_state(name, state)

    def count(self, state: int) -> int:
        return self.counts[state]

    def start_sampling(self, every: float = 0.25) -> None:
        async def sample() -> None:
            while True:
                counts = {STATE_NAMES[s]: n for s, n in self.counts.items() if n}
                self.timeline.append((time.monotonic(), counts))
                await asyncio.sleep(every)

        self._sampler = asyncio.create_task(sample())

    async def stop_sampling(self) -> None:
        await _cancel(self._sampler)
        self._sampler = None

    async def wait_for(self, predicate: Callable[[], bool], limit_s: float) -> bool:
        """Polls `predicate` every 20 ms; False after `limit_s` (or if the stream ended)."""
        deadline = time.monotonic() + limit_s
        while not predicate():
            if time.monotonic() > deadline or (self._task is not None and self._task.done()):
                return predicate()
            await asyncio.sleep(0.02)
        return True

    async def stop(self) -> None:
        await self.stop_sampling()
        await _cancel(self._task)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
        await task


@dataclass
class Collector:
    """What all subscribers received during one measurement window."""

    latencies: list[float] = field(default_factory=list)  # change-to-delivery, seconds
    messages: int = 0


class Subscriber:
    """One WatchSessions stream on all sessions that checks every change arrives in order:
    a missing sequence number without a resync before it is a silent gap."""

    def __init__(self, stream: Callable[[str], Any], token: str, parse: bool = True) -> None:
        self._stream = stream
        self._token = token
        self.last = token_seq(token) if token and parse else 0
        self.gaps = 0  # changes missed with no resync
        self.resyncs = 0
        self.changes = 0
        self.collector = Collector()
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._parse = parse

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        call = self._stream(self._token)
        in_snapshot = False
        try:
            async for message in call:
                now = time.time()
                collector = self.collector
                collector.messages += 1
                if not self._parse:
                    continue
                kind = message.WhichOneof("event")
                if kind == "change" or kind == "deleted":
                    seq = token_seq(message.resume_token)
                    if not in_snapshot and seq > self.last + 1:
                        self.gaps += seq - self.last - 1
                    self.last = max(self.last, seq)
                    self.changes += 1
                    if kind == "change":
                        collector.latencies.append(now - ts(message.change.session.update_time))
                elif kind == "resync":
                    self.resyncs += 1
                    in_snapshot = True
                elif kind == "snapshot_complete":
                    in_snapshot = False
                    self.last = token_seq(message.resume_token)
        except asyncio.CancelledError:
            call.cancel()
            raise
        except grpc.aio.AioRpcError as error:
            self.error = error

    async def stop(self) -> None:
        await _cancel(self._task)


async def drive_changes(
    simulator: Any, names: Sequence[str], changes_per_s: float, duration: float
) -> dict[str, float]:
    """State changes at a steady rate: each InjectDisconnect(515) on a CONNECTED session makes
    two (CLOSED -> CONNECTING, OPENED -> CONNECTED). Sessions are used round-robin."""
    injects_per_s = changes_per_s / 2
    cycle = itertools.cycle(names)
    inflight: set[asyncio.Task[None]] = set()
    sent = errors = 0

    async def inject(name: str) -> None:
        nonlocal errors
        try:
            await simulator.InjectDisconnect(
                sim.InjectDisconnectRequest(name=name, code=515, message="bench restart")
            )
        except grpc.aio.AioRpcError:
            errors += 1

    began = time.monotonic()
    tick = 0.01
    while True:
        now = time.monotonic()
        if now - began >= duration:
            break
        due = int((now - began) * injects_per_s) - sent
        for _ in range(max(0, due)):
            if len(inflight) >= 2000:
                break
            task = asyncio.create_task(inject(next(cycle)))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            sent += 1
        await asyncio.sleep(tick)
    if inflight:
        await asyncio.wait(set(inflight), timeout=10)
    elapsed = time.monotonic() - began
    return {"injects": sent, "inject_errors": errors, "changes_per_s": 2 * sent / elapsed}
