"""Backoff, exhausted attempts, retry-now, stable resets and the connect rate limit."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions_server.sessions.pacing import ConnectRateLimiter

from tests.conftest import ServerFactory
from tests.helpers import Running, S

SLOW_BACKOFF = {
    "policy": {
        "default": {
            "initial_delay_s": 0.2,
            "max_delay_s": 5.0,
            "multiplier": 2.0,
            "jitter_s": 0.0,
            "max_attempts": 4,
        }
    }
}


async def _network(srv: Running, up: bool) -> None:
    await srv.sim.SetNetwork(sim.SetNetworkRequest(reachable=up))


async def test_network_down_backs_off_exponentially_then_recovers(
    make_server: ServerFactory,
) -> None:
    srv = await make_server(SLOW_BACKOFF)
    await srv.linked("s1")
    await _network(srv, False)
    waits = []
    for attempt in (1, 2, 3):
        session = await srv.wait_state("s1", S.RECONNECTING, retry__attempt=attempt)
        while not session.retry.HasField("next_attempt_time"):
            session = await srv.get("s1")
        waits.append(
            session.retry.next_attempt_time.ToNanoseconds()
            - session.last_disconnect.time.ToNanoseconds()
        )
        assert session.retry.max_attempts == 4
        assert session.required_action == S.CHECK_NETWORK
        assert session.has_credentials
    # initial 0.2 s, then 0.4 s, then 0.8 s (no jitter here): each wait doubles.
    assert waits[1] > waits[0] * 1.5 and waits[2] > waits[1] * 1.5, waits
    await _network(srv, True)
    session = await srv.wait_state("s1", S.CONNECTED, timeout=5)
    assert session.required_action == S.NONE
    assert not session.HasField("retry") or session.retry.attempt == 0


async def test_attempts_exhausted_end_failed_start_session(srv: Running) -> None:
    await srv.linked("s1")
    await _network(srv, False)
    session = await srv.wait_state("s1", S.FAILED, timeout=10)
    assert session.required_action == S.START_SESSION
    assert session.retry.attempt == session.retry.max_attempts == 3
    assert session.has_credentials and srv.creds_dir("s1").exists()
    # A manual StartSession is the way back.
    await _network(srv, True)
    await srv.sessions.StartSession(svc.StartSessionRequest(name="sessions/s1"))
    await srv.wait_state("s1", S.CONNECTED)


async def test_440_is_never_reconnected(srv: Running) -> None:
    await srv.linked("s1")
    await srv.inject("s1", 440)
    await srv.wait_state("s1", S.FAILED)
    await asyncio.sleep(0.5)  # several backoff periods of the FAST policy
    session = await srv.get("s1")
    assert session.state == S.FAILED and session.required_action == S.RESOLVE_CONFLICT
    assert session.retry.attempt == 0


async def test_start_on_reconnecting_retries_now(make_server: ServerFactory) -> None:
    srv = await make_server(
        {"policy": {"default": {"initial_delay_s": 30.0, "max_delay_s": 30.0, "jitter_s": 0.0}}}
    )
    await srv.linked("s1")
    await srv.inject("s1", 503)
    session = await srv.wait_state("s1", S.RECONNECTING, retry__attempt=1)
    assert session.retry.next_attempt_time.seconds > session.last_disconnect.time.seconds + 20
    await srv.sessions.StartSession(svc.StartSessionRequest(name="sessions/s1"))
    await srv.wait_state("s1", S.CONNECTED, timeout=3)


async def test_a_stable_connection_resets_the_attempts(make_server: ServerFactory) -> None:
    srv = await make_server(
        {
            "policy": {"default": {"max_attempts": 2}},
            "manager": {"stable_after_s": 0.3},
        }
    )
    await srv.linked("s1")
    # Flapping: each close comes right after an open, so attempts keep counting.
    await srv.inject("s1", 428)
    await srv.wait_state("s1", S.CONNECTED, last_disconnect__code=428)
    await srv.inject("s1", 503)
    flapping = await srv.wait_state("s1", S.RECONNECTING, last_disconnect__code=503)
    assert flapping.retry.attempt == 2
    await srv.wait_state("s1", S.CONNECTED, last_disconnect__code=503)
    # After staying up past stable_after_s, a close starts again at attempt 1.
    await asyncio.sleep(0.5)
    await srv.inject("s1", 408)
    fresh = await srv.wait_state("s1", S.RECONNECTING, last_disconnect__code=408)
    assert fresh.retry.attempt == 1
    await srv.wait_state("s1", S.CONNECTED, last_disconnect__code=408)


async def test_stop_keeps_credentials_and_does_not_reconnect(srv: Running) -> None:
    await srv.linked("s1")
    stopped = await srv.sessions.StopSession(svc.StopSessionRequest(name="sessions/s1"))
    assert stopped.state == S.STOPPED and stopped.required_action == S.NONE
    assert stopped.has_credentials and srv.creds_dir("s1").exists()
    await asyncio.sleep(0.3)
    assert (await srv.get("s1")).state == S.STOPPED
    started = await srv.sessions.StartSession(svc.StartSessionRequest(name="sessions/s1"))
    assert started.state == S.CONNECTING
    await srv.wait_state("s1", S.CONNECTED)


async def test_logout_unlinks_and_wipes(srv: Running) -> None:
    await srv.linked("s1")
    creds = (srv.creds_dir("s1") / "creds.json").read_bytes()
    out = await srv.sessions.LogoutSession(svc.LogoutSessionRequest(name="sessions/s1"))
    assert out.state == S.LOGGED_OUT and out.required_action == S.SCAN_QR
    assert not out.has_credentials and not srv.creds_dir("s1").exists()
    # The device was unlinked on WhatsApp's side: the old credentials no longer log in.
    srv.creds_dir("s1").mkdir(mode=0o700)
    (srv.creds_dir("s1") / "creds.json").write_bytes(creds)
    await srv.sessions.StartSession(svc.StartSessionRequest(name="sessions/s1"))
    session = await srv.wait_state("s1", S.LOGGED_OUT, last_disconnect__code=401)
    assert not session.has_credentials


@pytest.mark.parametrize("rate", [50.0, 200.0])
async def test_connect_rate_limiter_spaces_connects(rate: float) -> None:
    limiter = ConnectRateLimiter(rate)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def connect() -> None:
        await limiter.acquire()
        times.append(loop.time())

    await asyncio.gather(*(connect() for _ in range(20)))
    times.sort()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Never a burst: 20 connects take at least 19 intervals.
    assert times[-1] - times[0] >= 19 / rate * 0.9
    assert min(gaps) >= 0


async def test_the_simulated_whatsapp_never_sees_more_connects_than_the_limit(
    make_server: ServerFactory,
) -> None:
    """A whole-service drop: every session reconnects at once, and the simulator (WhatsApp's
    side) counts the connects that reach it: never more than the limit in any second."""
    srv = await make_server(
        {"manager": {"connect_rate": 20.0}, "policy": {"default": {"max_attempts": 50}}}
    )
    names = [f"herd{i:02d}" for i in range(30)]
    for name in names:
        await srv.create(name)
    for name in names:
        await srv.wait_state(name, S.QR_PENDING, timeout=10)
        await srv.scan(name)
    for name in names:
        await srv.wait_state(name, S.CONNECTED, timeout=15)
    before = await srv.sim.GetNetworkStats(sim.GetNetworkStatsRequest(reset=True))
    assert before.connects >= 2 * len(names)  # each: the QR connect and the restart after 515
    assert before.peak_connects_per_second <= 20
    await _network(srv, False)
    await _network(srv, True)
    for name in names:
        await srv.wait_state(name, S.CONNECTED, timeout=15, last_disconnect__code=408)
    after = await srv.sim.GetNetworkStats(sim.GetNetworkStatsRequest())
    assert after.connects >= len(names)
    assert 10 <= after.peak_connects_per_second <= 20
