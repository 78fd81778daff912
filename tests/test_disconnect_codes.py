"""Every row of DESIGN.md's code table, injected through SimulatorService on a linked session."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import ServerFactory
from tests.helpers import Running, S

# code -> (final state, required action, credentials kept?)
TERMINAL = {
    401: (S.LOGGED_OUT, S.SCAN_QR, False),
    403: (S.FAILED, S.CONTACT_SUPPORT, True),
    402: (S.FAILED, S.CONTACT_SUPPORT, True),
    405: (S.FAILED, S.UPDATE_CLIENT, True),
    406: (S.FAILED, S.CONTACT_SUPPORT, True),
    411: (S.LOGGED_OUT, S.SCAN_QR, False),
    440: (S.FAILED, S.RESOLVE_CONFLICT, True),
}
RECONNECTING = (503, 428, 408, 500, 499, 999)


@pytest.mark.parametrize("code", sorted(TERMINAL))
async def test_terminal_codes(srv: Running, code: int) -> None:
    state, action, kept = TERMINAL[code]
    await srv.linked("s1")
    await srv.inject("s1", code)
    session = await srv.wait_state("s1", state)
    assert session.required_action == action
    assert session.last_disconnect.code == code
    assert session.has_credentials is kept
    assert srv.creds_dir("s1").exists() is kept
    assert session.retry.attempt == 0, "a terminal code is never retried"
    if not kept:
        assert not session.account.jid, "a logged-out session is linked to no account"


@pytest.mark.parametrize("code", RECONNECTING)
async def test_reconnecting_codes_come_back(srv: Running, code: int) -> None:
    linked = await srv.linked("s1")
    await srv.inject("s1", code)
    # The simulated WhatsApp accepts the same credentials again: the retry opens.
    session = await srv.wait_state("s1", S.CONNECTED, last_disconnect__code=code)
    assert session.has_credentials
    assert session.account.jid == linked.account.jid
    assert session.required_action == S.NONE


async def test_515_reconnects_at_once_without_counting(make_server: ServerFactory) -> None:
    # A huge backoff makes any counted retry visible as a long wait.
    # The pairing's 515 and three more in a row: within the 515 row's bound of restarts.
    policy = {
        "default": {"initial_delay_s": 30.0, "max_delay_s": 30.0},
        "codes": {"515": {"max_attempts": 5}},
    }
    srv = await make_server({"policy": policy})
    before = await srv.linked("s1")
    for _ in range(3):
        await srv.inject("s1", 515)
        session = await srv.get("s1")
        async with asyncio.timeout(2.0):
            while (
                session.state != S.CONNECTED
                or session.state_change_time.ToNanoseconds()
                <= before.state_change_time.ToNanoseconds()
            ):
                await asyncio.sleep(0.01)
                session = await srv.get("s1")
        assert session.last_disconnect.code == 515
        assert session.retry.attempt == 0
        before = session


async def test_500_is_retried_a_few_times_then_failed_with_credentials_kept(
    make_server: ServerFactory,
) -> None:
    srv = await make_server({"policy": {"default": {"max_attempts": 6}}})
    await srv.linked("s1")
    # Credentials the simulated WhatsApp cannot read: every connect closes with 500.
    creds = srv.creds_dir("s1") / "creds.json"
    creds.write_text("{not json")
    await srv.inject("s1", 500)
    session = await srv.wait_state("s1", S.FAILED, timeout=10)
    assert session.last_disconnect.code == 500
    # The 500 row retries 3 times although the default row would allow 6.
    assert session.retry.attempt == session.retry.max_attempts == 3
    assert session.required_action == S.START_SESSION
    assert session.has_credentials, "credentials are never wiped on a guess"
    assert creds.read_text() == "{not json"


async def test_408_while_retrying_asks_to_check_the_network(srv: Running) -> None:
    from wasessions.v1 import simulator_service_pb2 as sim

    await srv.linked("s1")
    await srv.sim.SetNetwork(sim.SetNetworkRequest(reachable=False))
    session = await srv.wait_state("s1", S.RECONNECTING)
    assert session.required_action == S.CHECK_NETWORK
    assert session.last_disconnect.code == 408
    assert session.last_disconnect.reason == "CONNECTION_LOST"
    await srv.sim.SetNetwork(sim.SetNetworkRequest(reachable=True))
    await srv.wait_state("s1", S.CONNECTED)


async def test_unknown_code_uses_the_default_row_and_is_bounded(srv: Running) -> None:
    from wasessions.v1 import simulator_service_pb2 as sim

    await srv.linked("s1")
    await srv.sim.SetNetwork(sim.SetNetworkRequest(reachable=False))
    await srv.wait_state("s1", S.RECONNECTING)
    # Every retry fails while the network is down; the default row gives up after 3.
    session = await srv.wait_state("s1", S.FAILED, timeout=10)
    assert session.required_action == S.START_SESSION
    assert session.retry.attempt == session.retry.max_attempts == 3
    assert session.has_credentials
