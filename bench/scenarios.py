"""The six benchmarks of issue 5, run in sequence against one server process (the restore
benchmark restarts it over the same data directory)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from wasessions.v1 import session_pb2 as pb
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim

from bench import echo
from bench.load import (
    CONNECTED,
    QR_PENDING,
    Collector,
    ProbeProcess,
    Prober,
    Subscriber,
    Tracker,
    closed_loop,
    drive_changes,
    stubs,
    token_seq,
    ts,
)
from bench.procs import Proc, spawn_journal_server, spawn_server
from bench.stats import latency_ms, max_in_window

KB = 1024
UNREACHABLE_PREFIX = "WebSocket Error"  # the sim's text for a connect while the network is down
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is; `quick()` is the tiny variant `make test` runs."""

    sessions: int = 10_000
    create_concurrency: int = 64
    unary_concurrency: int = 64
    unary_seconds: float = 3.0
    unary_rounds: int = 5
    list_page_size: int = 100
    outage_s: float = 5.0
    subscribers: int = 100
    subscriber_channels: int = 10
    fanout_changes_per_s: float = 100.0
    fanout_seconds: float = 10.0
    ramp_changes_per_s: tuple[float, ...] = (200.0, 300.0, 500.0, 800.0)
    ramp_seconds: float = 4.0
    echo_stream_messages: int = 2000
    journal_concurrency: int = 128
    journal_seconds: float = 5.0
    timeout_s: float = 240.0
    #: Added to the default configuration (the full run uses the defaults).
    server_config: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def quick() -> Sizes:
        return Sizes(
            sessions=30,
            create_concurrency=8,
            unary_concurrency=8,
            unary_seconds=0.3,
            unary_rounds=1,
            outage_s=0.5,
            subscribers=4,
            subscriber_channels=2,
            fanout_changes_per_s=20.0,
            fanout_seconds=1.0,
            ramp_changes_per_s=(40.0,),
            ramp_seconds=0.5,
            echo_stream_messages=50,
            journal_concurrency=8,
            journal_seconds=0.5,
            timeout_s=60.0,
            server_config={
                "policy": {
                    "default": {"initial_delay_s": 0.1, "max_delay_s": 0.5, "jitter_s": 0.1}
                },
                "manager": {"restore_jitter_s": 0.1},
            },
        )


def _name(i: int) -> str:
    return f"sessions/s{i:05d}"


def _config(sizes: Sizes) -> dict[str, Any]:
    # NOTE: the engine is named: the default engine is the real one, and benchmarks must
    # never leave loopback.
    return {**sizes.server_config, "engine": "sim", "engines": ["sim"]}


@dataclass
class Bench:
    """One server under test and the bench's clients to it."""

    sizes: Sizes
    data_dir: Path
    echo: Proc
    server: Proc | None = None
    channel: grpc.aio.Channel | None = None
    sessions: Any = None
    simulator: Any = None
    tracker: Tracker | None = None
    names: list[str] = field(default_factory=list)
    rss_idle: int = 0

    async def open(self) -> None:
        self.server = spawn_server(self.data_dir, _config(self.sizes))
        await self._connect()

    async def _connect(self) -> None:
        assert self.server is not None
        self.channel = grpc.aio.insecure_channel(self.server.target, options=CHANNEL_OPTIONS)
        self.sessions, self.simulator = stubs(self.channel)

    async def close_clients(self) -> None:
        if self.tracker is not None:
            await self.tracker.stop()
            self.tracker = None
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

    async def close(self) -> None:
        await self.close_clients()
        if self.server is not None:
            self.server.stop()
            self.server = None


def _random_get(bench: Bench) -> Callable[[], Any]:
    requests = [svc.GetSessionRequest(name=n) for n in bench.names]

    def call() -> Any:
        return bench.sessions.GetSession(random.choice(requests))

    return call


# 2. Scale -----------------------------------------------------------------------------------


async def scale(bench: Bench) -> dict[str, Any]:
    """Creates the sessions, pairs each through SimulatorService.ScanQrCode as soon as it shows
    a QR code, and waits until all are CONNECTED. Memory is the server process's RSS."""
    assert bench.server is not None
    sizes = bench.sizes
    bench.names = [_name(i) for i in range(sizes.sessions)]
    to_scan: asyncio.Queue[str] = asyncio.Queue()

    def on_state(name: str, state: int) -> None:
        if state == QR_PENDING:
            to_scan.put_nowait(name)

    tracker = Tracker(bench.sessions, on_state)
    bench.tracker = tracker
    tracker.start()
    await asyncio.wait_for(tracker.snapshot_complete.wait(), 30)
    await asyncio.sleep(1.0)
    rss_before = bench.server.rss_bytes()
    bench.rss_idle = rss_before
    cpu_before = bench.server.cpu_seconds()
    create_errors = scan_errors = 0
    failed: set[str] = set()
    first_errors: list[str] = []
    gate = asyncio.Semaphore(sizes.create_concurrency)

    async def create(i: int) -> None:
        nonlocal create_errors
        async with gate:
            try:
                await bench.sessions.CreateSession(svc.CreateSessionRequest(session_id=f"s{i:05d}"))
            except grpc.aio.AioRpcError as error:
                create_errors += 1
                failed.add(_name(i))
                if len(first_errors) < 3:
                    first_errors.append(f"{error.code().name}: {error.details()}")

    async def scanner() -> None:
        nonlocal scan_errors
        while True:
            name = await to_scan.get()
            try:
                await bench.simulator.ScanQrCode(sim.ScanQrCodeRequest(name=name))
            except grpc.aio.AioRpcError:
                scan_errors += 1

    began = time.monotonic()
    scanners = [asyncio.create_task(scanner()) for _ in range(sizes.create_concurrency)]
    await asyncio.gather(*(create(i) for i in range(sizes.sessions)))
    created_s = time.monotonic() - began
    # NOTE: a create that failed is reported (create_errors), and its session left out after.
    bench.names = [n for n in bench.names if n not in failed]
    expected = len(bench.names)
    ok = await tracker.wait_for(lambda: tracker.count(CONNECTED) >= expected, sizes.timeout_s)
    ok = ok and not failed
    all_connected_s = time.monotonic() - began
    for task in scanners:
        task.cancel()
    await asyncio.gather(*scanners, return_exceptions=True)
    rss_connected = bench.server.rss_bytes()
    await asyncio.sleep(2.0)
    rss_settled = bench.server.rss_bytes()
    connected = max(1, tracker.count(CONNECTED))
    return {
        "sessions": sizes.sessions,
        "all_connected": ok,
        "connected": tracker.count(CONNECTED),
        "create_s": created_s,
        "all_connected_s": all_connected_s,
        "create_errors": create_errors,
        "create_error_examples": first_errors,
        "scan_errors": scan_errors,
        "rss_idle_mb": rss_before / KB / KB,
        "rss_connected_mb": rss_settled / KB / KB,
        "rss_growth_kb_per_session": (rss_settled - rss_before) / KB / connected,
        "rss_growth_kb_per_session_at_done": (rss_connected - rss_before) / KB / connected,
        "server_cpu_s": bench.server.cpu_seconds() - cpu_before,
    }


# 1. Unary -----------------------------------------------------------------------------------


async def unary(bench: Bench) -> dict[str, Any]:
    """GetSession with N calls in flight next to the bare echo with the same client, in
    interleaved rounds; then ListSessions pages of 100 over all sessions."""
    assert bench.server is not None
    sizes = bench.sizes
    name = bench.names[len(bench.names) // 2]
    request = svc.GetSessionRequest(name=name)
    payload = (await bench.sessions.GetSession(request)).SerializeToString()
    echo_channel = grpc.aio.insecure_channel(bench.echo.target, options=CHANNEL_OPTIONS)
    echo_call: Any = echo_channel.unary_unary(
        echo.UNARY, request_serializer=None, response_deserializer=pb.Session.FromString
    )

    def get() -> Any:
        return bench.sessions.GetSession(request)

    def ping() -> Any:
        return echo_call(payload)

    # The same call on a second server with API keys and the metrics endpoint on.
    key = secrets.token_urlsafe(32)
    secured_dir = bench.data_dir.parent / "secured"
    secured_dir.mkdir(parents=True, exist_ok=True)
    keys_file = bench.data_dir.parent / "api_keys"
    keys_file.write_text(key + "\n")
    secured = spawn_server(
        secured_dir,
        {
            **_config(sizes),
            "api_keys_file": str(keys_file),
            "metrics_listen": "127.0.0.1:0",
        },
    )
    secured_channel = grpc.aio.insecure_channel(secured.target, options=CHANNEL_OPTIONS)
    secured_sessions, _ = stubs(secured_channel)
    auth = (("authorization", f"Bearer {key}"),)
    await secured_sessions.CreateSession(
        svc.CreateSessionRequest(session_id=name.removeprefix("sessions/"), skip_start=True),
        metadata=auth,
    )

    def get_secured() -> Any:
        return secured_sessions.GetSession(request, metadata=auth)

    rounds: list[dict[str, Any]] = []
    calls: list[tuple[str, Callable[[], Any], Proc]] = [
        ("echo", ping, bench.echo),
        ("get", get, bench.server),
        ("get_secured", get_secured, secured),
    ]
    try:
        for _, call, _ in calls:
            await closed_loop(call, sizes.unary_concurrency, min(0.5, sizes.unary_seconds))
        for _ in range(sizes.unary_rounds):
            row: dict[str, Any] = {}
            for label, call, proc in calls:
                cpu = proc.cpu_seconds()
                result = closed_loop(call, sizes.unary_concurrency, sizes.unary_seconds)
                measured = await result
                count = measured["calls_per_s"] * sizes.unary_seconds
                measured["server_cpu_us_per_call"] = (
                    (proc.cpu_seconds() - cpu) / count * 1e6 if count else float("nan")
                )
                row[label] = measured
            row["ratio"] = row["get"]["calls_per_s"] / row["echo"]["calls_per_s"]
            row["ratio_secured"] = row["get_secured"]["calls_per_s"] / row["echo"]["calls_per_s"]
            rounds.append(row)
    finally:
        await echo_channel.close()
        await secured_channel.close()
        secured.stop()
    listing = await _list_sessions(bench)
    return {"concurrency": sizes.unary_concurrency, "rounds": rounds, "list": listing}


async def _list_sessions(bench: Bench) -> dict[str, Any]:
    sizes = bench.sizes
    cursors: dict[int, str] = {}
    counter = iter(range(1 << 30))
    walks = 0

    async def page(worker: int) -> None:
        nonlocal walks
        response = await bench.sessions.ListSessions(
            svc.ListSessionsRequest(
                page_size=sizes.list_page_size, page_token=cursors.get(worker, "")
            )
        )
        cursors[worker] = response.next_page_token
        if not response.next_page_token:
            walks += 1

    def call() -> Any:
        return page(next(counter) % sizes.unary_concurrency)

    began = time.monotonic()
    token, seen = "", 0
    while True:  # one full walk, page after page
        response = await bench.sessions.ListSessions(
            svc.ListSessionsRequest(page_size=sizes.list_page_size, page_token=token)
        )
        seen += len(response.sessions)
        token = response.next_page_token
        if not token:
            break
    full_walk_s = time.monotonic() - began
    loaded = await closed_loop(call, sizes.unary_concurrency, sizes.unary_seconds)
    return {
        "page_size": sizes.list_page_size,
        "full_walk_s": full_walk_s,
        "full_walk_sessions": seen,
        **loaded,
    }


# 3. Reconnect storm -------------------------------------------------------------------------


async def storm(bench: Bench) -> dict[str, Any]:
    """The network goes down for `outage_s` and comes back; every session must come back
    CONNECTED, connects paced by the global limit, GetSession answering fast throughout."""
    assert bench.server is not None and bench.tracker is not None
    sizes, tracker = bench.sizes, bench.tracker
    policy = await bench.sessions.GetPolicy(svc.GetPolicyRequest())
    max_delay = ts(policy.default_rule.max_delay)
    rate = policy.connect_rate
    bound = max_delay + sizes.sessions / rate + sizes.outage_s
    prober = ProbeProcess(bench.server.target, bench.names, bench.data_dir.parent, interval=0.01)
    tracker.recorded = []
    tracker.timeline.clear()
    tracker.start_sampling(0.25)
    await prober.start()
    await asyncio.sleep(1.0)
    cpu = bench.server.cpu_seconds()
    # NOTE: a session is back once it is CONNECTED with a state change after the drop (also
    # when the watcher had to resync and saw it in a snapshot).
    dropped: set[str] = set()
    returned: set[str] = set()
    down_wall = time.time()

    def on_change(name: str, cause: int, state: int, changed: float) -> None:
        if state != CONNECTED:
            dropped.add(name)
            returned.discard(name)
        elif changed >= down_wall:
            dropped.add(name)
            returned.add(name)

    tracker.on_change = on_change
    resyncs_before = tracker.resyncs
    # NOTE: the simulated WhatsApp counts the connects that reach it: the limit is checked
    # where a herd would hit, not where the server thinks it let connects go.
    await bench.simulator.GetNetworkStats(sim.GetNetworkStatsRequest(reset=True))
    down_wall, down = time.time(), time.monotonic()
    await bench.simulator.SetNetwork(sim.SetNetworkRequest(reachable=False))
    lowest = sizes.sessions

    def watch_low() -> bool:
        nonlocal lowest
        lowest = min(lowest, tracker.count(CONNECTED))
        return False

    await tracker.wait_for(watch_low, sizes.outage_s)
    all_dropped_s = time.monotonic() - down if len(dropped) >= len(bench.names) else float("nan")
    await bench.simulator.SetNetwork(sim.SetNetworkRequest(reachable=True))
    up = time.monotonic()

    def back() -> bool:
        watch_low()
        n = len(bench.names)
        return len(returned) >= n and tracker.count(CONNECTED) >= n

    ok = await tracker.wait_for(back, bound + 30)
    done = time.monotonic()
    seen = await bench.simulator.GetNetworkStats(sim.GetNetworkStatsRequest())
    await asyncio.sleep(1.0)
    await prober.stop()
    await tracker.stop_sampling()
    recorded, tracker.recorded = tracker.recorded or [], None
    cpu_used = bench.server.cpu_seconds() - cpu
    tracker.on_change = None
    opened = svc.SessionChange.OPENED
    attempts = [
        t
        for t, cause, _, message in recorded
        if t >= down_wall and (cause == opened or message.startswith(UNREACHABLE_PREFIX))
    ]
    opens = [t for t, cause, _, _ in recorded if t >= down_wall and cause == opened]
    per_second: dict[int, int] = {}
    for t in attempts:
        second = int(t - down_wall)
        per_second[second] = per_second.get(second, 0) + 1
    during = prober.between(down, done)
    p99_by_second: dict[int, float] = {}
    buckets: dict[int, list[float]] = {}
    for at, lat in prober.samples:
        if down - 1 <= at <= done + 1:
            buckets.setdefault(int(at - down), []).append(lat)
    for second, values in buckets.items():
        p99_by_second[second] = latency_ms(values)["p99_ms"]
    return {
        "sessions": sizes.sessions,
        "outage_s": sizes.outage_s,
        "all_reconnected": ok,
        "lowest_connected": lowest,
        "dropped": len(dropped),
        "all_dropped_within_outage": len(dropped) >= len(bench.names),
        "all_dropped_s": all_dropped_s,
        "returned": len(returned),
        "reconnected_s": done - down,
        "reconnected_after_up_s": done - up,
        "bound_s": bound,
        "connect_rate_limit": rate,
        "connect_attempts": len(attempts),
        "max_connects_in_1s": max_in_window(attempts, 1.0),
        "sim_connects": seen.connects,
        "sim_peak_connects_per_second": seen.peak_connects_per_second,
        "max_opens_in_1s": max_in_window(opens, 1.0),
        "journal_events": len(recorded),
        "watcher_resyncs": tracker.resyncs - resyncs_before,
        "get_session": latency_ms(during),
        "probe_errors": prober.errors,
        "server_cpu_s": cpu_used,
        "timeline": [(round(t - down, 3), counts) for t, counts in tracker.timeline],
        "connects_per_second": sorted(per_second.items()),
        "get_p99_ms_per_second": sorted(p99_by_second.items()),
    }


# 4. Fan-out ---------------------------------------------------------------------------------


async def fanout(bench: Bench) -> dict[str, Any]:
    """`subscribers` WatchSessions streams on all sessions (resumed from a token: no snapshot)
    while state changes happen at a steady rate; then the rate goes up until delivery falls
    behind; last the bare server-streaming echo with the same client code."""
    assert bench.server is not None and bench.tracker is not None
    sizes, tracker = bench.sizes, bench.tracker
    channels = [
        grpc.aio.insecure_channel(bench.server.target, options=CHANNEL_OPTIONS)
        for _ in range(sizes.subscriber_channels)
    ]
    subscribers: list[Subscriber] = []
    try:
        for i in range(sizes.subscribers):
            sessions, _ = stubs(channels[i % len(channels)])

            def stream(token: str, sessions: Any = sessions) -> Any:
                return sessions.WatchSessions(svc.WatchSessionsRequest(resume_token=token))

            subscribers.append(Subscriber(stream, tracker.token))
        for subscriber in subscribers:
            subscriber.start()
        await asyncio.sleep(1.0)
        steady = await _fan_step(bench, subscribers, sizes.fanout_changes_per_s,
                                 sizes.fanout_seconds)  # fmt: skip
        ramp: list[dict[str, Any]] = []
        for rate in sizes.ramp_changes_per_s:
            step = await _fan_step(bench, subscribers, rate, sizes.ramp_seconds)
            ramp.append(step)
            if step["behind"]:
                break
        steady["stream_errors"] = sum(1 for s in subscribers if s.error is not None)
    finally:
        for subscriber in subscribers:
            await subscriber.stop()
        for channel in channels:
            await channel.close()
    baseline = await _echo_stream(bench)
    ceiling = max([step["delivered_msgs_per_s"] for step in ramp] or [0.0])
    return {
        "subscribers": sizes.subscribers,
        "steady": steady,
        "ramp": ramp,
        "ceiling_msgs_per_s": ceiling,
        "echo_stream_msgs_per_s": baseline,
        "ceiling_ratio": ceiling / baseline if baseline else float("nan"),
    }


async def _fan_step(
    bench: Bench, subscribers: Sequence[Subscriber], changes_per_s: float, seconds: float
) -> dict[str, Any]:
    assert bench.server is not None and bench.tracker is not None
    tracker = bench.tracker
    before = {id(s): (s.gaps, s.resyncs) for s in subscribers}
    collectors = []
    for subscriber in subscribers:
        subscriber.collector = Collector()
        collectors.append(subscriber.collector)
    cpu = bench.server.cpu_seconds()
    began = time.monotonic()
    driven = await drive_changes(bench.simulator, bench.names, changes_per_s, seconds)
    elapsed = time.monotonic() - began
    delivered = sum(c.messages for c in collectors)
    cpu_used = bench.server.cpu_seconds() - cpu
    # NOTE: then let the streams catch up (bounded), so the next step starts clean.
    await asyncio.sleep(0.2)
    head = token_seq(tracker.token)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_caught_up(subscribers, head), 15)
    undelivered = sum(max(0, head - s.last) for s in subscribers if s.error is None)
    latencies = [lat for c in collectors for lat in c.latencies]
    offered = driven["changes_per_s"] * len(subscribers)
    lat = latency_ms(latencies)
    resyncs = sum(s.resyncs - before[id(s)][1] for s in subscribers)
    gaps = sum(s.gaps - before[id(s)][0] for s in subscribers)
    delivered_rate = delivered / elapsed
    return {
        "changes_per_s": driven["changes_per_s"],
        "inject_errors": driven["inject_errors"],
        "offered_msgs_per_s": offered,
        "delivered_msgs_per_s": delivered_rate,
        "latency": lat,
        "resyncs": resyncs,
        "silent_gaps": gaps,
        "undelivered_after_catch_up": undelivered,
        "server_cpu_share": cpu_used / elapsed,
        "behind": bool(delivered_rate < 0.9 * offered or lat["p99_ms"] > 1000 or resyncs > 0),
    }


async def _caught_up(subscribers: Sequence[Subscriber], head: int) -> None:
    # NOTE: polls: a hundred subscribers, checked a few times a second, need no event each.
    while any(s.last < head and s.error is None for s in subscribers):  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def _echo_stream(bench: Bench) -> float:
    """Messages per second the bare grpc.aio server-streaming echo pushes to the same number
    of streams, each message a real WatchSessionsResponse parsed by the same client code."""
    sizes = bench.sizes
    session = await bench.sessions.GetSession(svc.GetSessionRequest(name=bench.names[0]))
    message = svc.WatchSessionsResponse(
        resume_token=bench.tracker.token if bench.tracker else "",
        change=svc.SessionChange(session=session, cause=svc.SessionChange.OPENED),
    )
    request = echo.stream_request(sizes.echo_stream_messages, message.SerializeToString())
    channels = [
        grpc.aio.insecure_channel(bench.echo.target, options=CHANNEL_OPTIONS)
        for _ in range(sizes.subscriber_channels)
    ]
    try:
        subscribers = []
        for i in range(sizes.subscribers):
            call: Any = channels[i % len(channels)].unary_stream(
                echo.STREAM,
                request_serializer=None,
                response_deserializer=svc.WatchSessionsResponse.FromString,
            )

            def stream(token: str, call: Any = call) -> Any:
                return call(request)

            subscribers.append(Subscriber(stream, ""))
        began = time.monotonic()
        for subscriber in subscribers:
            subscriber.start()
        tasks = [s._task for s in subscribers if s._task is not None]
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        elapsed = time.monotonic() - began
        return sum(s.collector.messages for s in subscribers) / elapsed
    finally:
        for channel in channels:
            await channel.close()


# 6. Journal ---------------------------------------------------------------------------------


async def journal(bench: Bench) -> dict[str, Any]:
    """Durable changes per second through the API (UpdateSession answers after the commit),
    with GetSession probed at 100/s at the same time."""
    assert bench.server is not None
    sizes = bench.sizes
    counter = iter(range(1 << 40))
    requests = list(bench.names)

    def update() -> Any:
        n = next(counter)
        return bench.sessions.UpdateSession(
            svc.UpdateSessionRequest(
                name=requests[n % len(requests)],
                labels={"bench": str(n)},
                update_mask={"paths": ["labels"]},
            )
        )

    prober = Prober(_random_get(bench), interval=0.01)
    prober.start()
    await asyncio.sleep(0.5)
    began = time.monotonic()
    cpu = bench.server.cpu_seconds()
    loaded = await closed_loop(update, sizes.journal_concurrency, sizes.journal_seconds)
    elapsed = time.monotonic() - began
    cpu_used = bench.server.cpu_seconds() - cpu
    await prober.stop()
    return {
        "events_per_s": loaded["calls_per_s"],
        "update": loaded,
        "get_session_during": latency_ms(prober.between(began, began + elapsed)),
        "server_cpu_share": cpu_used / elapsed,
        "in_process": await _journal_in_process(bench),
    }


async def _journal_in_process(bench: Bench) -> dict[str, Any]:
    """The journal itself: a second server process (bench/journal_server.py, its own data
    directory and sessions) appends through `EventJournal.append` from many tasks, while this
    process probes its GetSession over gRPC. The main server stays up, idle."""
    sizes = bench.sizes
    data_dir = bench.data_dir.parent / "journal-harness"
    proc = spawn_journal_server(
        data_dir,
        _config(sizes),
        sessions=sizes.sessions,
        tasks=sizes.journal_concurrency * 2,
        seconds=sizes.journal_seconds,
    )
    channel = grpc.aio.insecure_channel(proc.target)
    try:
        stub, _ = stubs(channel)
        last = svc.GetSessionRequest(name=f"sessions/j{sizes.sessions - 1:05d}")
        deadline = time.monotonic() + 120
        while True:  # the harness creates its sessions after it starts listening
            try:
                await stub.GetSession(last)
                break
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        requests = [svc.GetSessionRequest(name=f"sessions/j{i:05d}") for i in range(sizes.sessions)]
        prober = Prober(lambda: stub.GetSession(random.choice(requests)), interval=0.01)
        prober.start()
        await asyncio.sleep(0.5)
        began = time.monotonic()
        cpu = proc.cpu_seconds()
        proc.process.send_signal(signal.SIGUSR1)
        line = await asyncio.to_thread(_result_line, proc, sizes.journal_seconds + 60)
        elapsed = time.monotonic() - began
        cpu_used = proc.cpu_seconds() - cpu
        await prober.stop()
        result: dict[str, Any] = json.loads(line)
        result["get_session_during"] = latency_ms(prober.between(began, began + elapsed))
        result["probe_errors"] = prober.errors
        result["server_cpu_share"] = cpu_used / elapsed
        return result
    finally:
        await channel.close()
        proc.stop()


def _result_line(proc: Proc, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in reversed(proc.log):
            if line.startswith("journal result: "):
                return line.removeprefix("journal result: ")
        time.sleep(0.05)
    raise TimeoutError("the journal harness reported no result")


# 5. Restore ---------------------------------------------------------------------------------


async def restore(bench: Bench) -> dict[str, Any]:
    """SIGTERM, then a new server process over the same data directory: time until every
    session is CONNECTED again (restore concurrency and jitter from the configuration)."""
    assert bench.server is not None
    sizes = bench.sizes
    await bench.close_clients()
    stopping = time.monotonic()
    exit_code = bench.server.stop()
    shutdown_s = time.monotonic() - stopping
    spawned_wall = time.time()
    bench.server = spawn_server(bench.data_dir, _config(sizes))
    started = bench.server.started
    listening_s = bench.server.listening - started
    await bench._connect()
    tracker = Tracker(bench.sessions)
    # NOTE: the snapshot shows what was stored (CONNECTED before the restart); a session is
    # back only when it OPENED again in this process.
    reopened: set[str] = set()
    opened = svc.SessionChange.OPENED

    def on_change(name: str, cause: int, state: int, changed: float) -> None:
        # A snapshot written by this process (after the spawn) counts as well: the session
        # may have reconnected before this watcher subscribed.
        if state == CONNECTED and (cause == opened or changed >= spawned_wall):
            reopened.add(name)
        elif state != CONNECTED:
            reopened.discard(name)

    tracker.on_change = on_change
    bench.tracker = tracker
    tracker.start()
    await asyncio.wait_for(tracker.snapshot_complete.wait(), 60)
    stale_connected = tracker.count(CONNECTED) - len(reopened)
    ok = await tracker.wait_for(lambda: len(reopened) >= len(bench.names), sizes.timeout_s)
    done = time.monotonic()
    tracker.on_change = None
    return {
        "sessions": sizes.sessions,
        "shutdown_s": shutdown_s,
        "shutdown_exit_code": exit_code,
        "all_connected": ok,
        "connected": tracker.count(CONNECTED),
        "reopened": len(reopened),
        "reported_connected_before_reopened": stale_connected,
        "listening_s": listening_s,
        "all_connected_s": done - started,
        "rss_mb": bench.server.rss_bytes() / KB / KB,
    }
