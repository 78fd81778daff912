"""The typed Python client (`wasessions.SessionsClient`) against a real in-process server."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from wasessions import (
    AlreadyExistsError,
    BlockingSessionsClient,
    EventKind,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ReconnectPolicy,
    SessionsClient,
    WaitTimeoutError,
    WatchEvent,
)
from wasessions.errors import PermissionDeniedError, UnauthenticatedError, UnavailableError
from wasessions.v1 import session_pb2 as pb
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc

from tests.conftest import ServerFactory
from tests.helpers import FAST, Running
from tests.security_helpers import make_pki

S = pb.Session


#: QR windows long enough that a code is still current when a test scans it.
LONG_QR = {"qr": {"first_timeout_s": 30.0, "timeout_s": 30.0}}


@pytest.fixture
async def client(make_server: ServerFactory) -> AsyncIterator[SessionsClient]:
    running = await make_server(LONG_QR)
    async with SessionsClient(running.server.target) as c:
        yield c


async def next_event(events: Any, kind: EventKind | None = None, **where: str) -> WatchEvent:
    """The next event (of `kind`, matching `where` on state/cause/name), skipping others."""
    async with asyncio.timeout(10):
        async for event in events:
            if kind is not None and event.kind is not kind:
                continue
            if all(getattr(event, k) == v for k, v in where.items()):
                return event  # type: ignore[no-any-return]
    raise AssertionError("watch ended")


async def test_crud_and_listing(client: SessionsClient) -> None:
    created = await client.create_session("b", labels={"team": "x"}, skip_start=True)
    assert created.name == "sessions/b"
    assert created.state == S.STOPPED
    assert dict(created.labels) == {"team": "x"}
    await client.create_session("a", skip_start=True)
    await client.create_session("c", skip_start=True)

    got = await client.get_session("sessions/b")
    assert got.name == "sessions/b"
    assert (await client.get_session("b")).name == "sessions/b"

    # list_sessions follows the pages: 3 sessions with a page size of 1.
    page = await client.list_sessions_page(page_size=1)
    assert [s.name for s in page.sessions] == ["sessions/a"] and page.next_page_token
    listed = await client.list_sessions(page_size=1)
    assert [s.name for s in listed] == ["sessions/a", "sessions/b", "sessions/c"]
    assert await client.list_sessions(states=["connected"]) == []
    assert len(await client.list_sessions(states=["STOPPED", S.FAILED])) == 3

    updated = await client.update_labels("b", {"env": "prod"})
    assert dict(updated.labels) == {"team": "x", "env": "prod"}
    replaced = await client.update_labels("b", {"only": "1"}, replace=True)
    assert dict(replaced.labels) == {"only": "1"}
    assert dict((await client.remove_labels("b", ["only"])).labels) == {}

    started = await client.start_session("a")
    assert started.state in (S.CONNECTING, S.QR_PENDING)
    await client.wait_for_state("a", "QR_PENDING", timeout=10)
    stopped = await client.stop_session("a")
    assert stopped.state == S.STOPPED

    await client.delete_session("c")
    with pytest.raises(NotFoundError):
        await client.get_session("c")

    policy = await client.get_policy()
    assert {r.code for r in policy.rules} >= {401, 408, 440, 515}


async def test_errors_carry_code_reason_and_field_violations(client: SessionsClient) -> None:
    with pytest.raises(InvalidArgumentError) as bad:
        await client.create_session("Not Valid!")
    error = bad.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_SESSION_ID"
    assert error.domain == "wasessions"
    assert [v.field for v in error.field_violations] == ["session_id"]
    assert error.field_violations[0].description
    assert str(error).startswith("INVALID_ARGUMENT INVALID_SESSION_ID: ")
    assert error.to_dict()["field_violations"][0]["field"] == "session_id"

    with pytest.raises(NotFoundError) as missing:
        await client.get_session("nobody")
    assert missing.value.reason == "SESSION_NOT_FOUND"
    assert missing.value.field_violations == ()

    await client.create_session("dup", skip_start=True)
    with pytest.raises(AlreadyExistsError) as dup:
        await client.create_session("dup", skip_start=True)
    assert dup.value.code is grpc.StatusCode.ALREADY_EXISTS and dup.value.reason

    # Not a raw AioRpcError, and a state error is precise too.
    with pytest.raises(FailedPreconditionError) as not_running:
        async for _ in client.qr_codes("dup"):
            pass
    assert not_running.value.reason == "SESSION_NOT_RUNNING"
    assert not isinstance(not_running.value, grpc.aio.AioRpcError)

    with pytest.raises(InvalidArgumentError) as token:
        async for _ in client.watch(resume_token="not-a-token"):
            pass
    assert token.value.reason == "INVALID_RESUME_TOKEN"
    assert [v.field for v in token.value.field_violations] == ["resume_token"]


async def test_unreachable_server_is_unavailable() -> None:
    async with SessionsClient("127.0.0.1:1", timeout=5) as client:
        with pytest.raises(UnavailableError) as down:
            await client.list_sessions()
    assert down.value.code is grpc.StatusCode.UNAVAILABLE


async def test_watch_gives_up_after_its_policy(caplog: pytest.LogCaptureFixture) -> None:
    """No server at all: the watch retries with backoff, then raises UNAVAILABLE."""
    policy = ReconnectPolicy(initial_s=0.01, max_s=0.05, jitter_s=0.01, give_up_after_s=0.3)
    caplog.set_level("INFO", logger="wasessions.client")
    async with SessionsClient("127.0.0.1:1") as client:
        watch = client.watch(reconnect=policy)
        with pytest.raises(UnavailableError):
            await anext(watch)
    retries = [r for r in caplog.records if "reconnect attempt" in r.getMessage()]
    assert len(retries) >= 2  # it did retry before giving up
    assert watch.resume_token == ""


async def test_qr_codes_scan_and_wait_for_state(client: SessionsClient) -> None:
    await client.create_session("q")
    codes = client.qr_codes("q")
    first = await anext(codes)
    assert first.value.startswith("2@") and first.sequence == 1 and not first.outcome
    assert first.expire_time is not None
    await client.simulator.scan("q")
    rest = [c async for c in codes]
    assert rest[-1].outcome == "PAIRED" and rest[-1].value == ""
    connected = await client.wait_for_state("q", "CONNECTED", timeout=10)
    assert connected.state == S.CONNECTED and connected.has_credentials
    assert connected.account.phone_number.startswith("+")
    seen = await client.simulator.network_stats(reset=True)
    assert seen.connects >= 2 and seen.peak_connects_per_second >= 1  # QR, then restart (515)
    assert (await client.simulator.network_stats()).connects == 0  # counting afresh
    # Already linked: no QR codes, a precise error.
    with pytest.raises(FailedPreconditionError) as linked:
        await anext(client.qr_codes("q"))
    assert linked.value.reason == "SESSION_ALREADY_LINKED"

    with pytest.raises(WaitTimeoutError) as late:
        await client.wait_for_state("q", "LOGGED_OUT", timeout=0.2)
    assert "LOGGED_OUT" in str(late.value) and "CONNECTED" in str(late.value)
    assert isinstance(late.value, TimeoutError)
    with pytest.raises(ValueError, match="unknown state"):
        await client.wait_for_state("q", "SLEEPING")


async def test_qr_window_over_ends_with_expired(srv: Running) -> None:
    """With the FAST timings (3 short codes) the window ends unscanned."""
    async with SessionsClient(srv.server.target) as client:
        await client.create_session("x")
        codes = [c async for c in client.qr_codes("x")]
        assert codes[-2].sequence == FAST["qr"]["max_codes"]  # every code was shown
        assert codes[-1].outcome == "EXPIRED"
        failed = await client.wait_for_state("x", "FAILED", timeout=10)
    assert failed.required_action == S.START_SESSION


async def test_pairing_code(client: SessionsClient) -> None:
    await client.create_session("p")
    await client.wait_for_state("p", "QR_PENDING", timeout=10)
    code = await client.request_pairing_code("p", "+15551234567")
    assert len(code) == 8 and "-" not in code
    await client.simulator.enter_pairing_code("p", f"{code[:4]}-{code[4:]}")
    linked = await client.wait_for_state("p", "CONNECTED", timeout=10)
    assert linked.account.phone_number == "+15551234567"
    with pytest.raises(InvalidArgumentError) as bad:
        await client.request_pairing_code("p", "5551234")
    assert [v.field for v in bad.value.field_violations] == ["phone_number"]


async def test_watch_snapshot_changes_and_resume(client: SessionsClient) -> None:
    await client.create_session("w1", skip_start=True)
    async with client.watch() as events:
        snap = await next_event(events)
        assert snap.kind is EventKind.SNAPSHOT and snap.name == "sessions/w1"
        assert snap.state == "STOPPED"
        done = await next_event(events)
        assert done.kind is EventKind.SNAPSHOT_COMPLETE
        assert events.resume_token == done.resume_token

        await client.start_session("w1")
        started = await next_event(events, EventKind.CHANGE)
        assert started.cause == "STARTED" and started.name == "sessions/w1"
        await next_event(events, EventKind.CHANGE, state="QR_PENDING")
        await client.stop_session("w1")
        await next_event(events, EventKind.CHANGE, state="STOPPED")
        token = events.resume_token

    # Changes while nobody watched: resuming replays exactly those, without a snapshot.
    await client.update_labels("w1", {"k": "v"})
    await client.delete_session("w1")
    async with client.watch(resume_token=token) as resumed:
        change = await next_event(resumed)
        assert change.kind is EventKind.CHANGE and change.cause == "LABELS_UPDATED"
        assert change.session is not None and dict(change.session.labels) == {"k": "v"}
        deleted = await next_event(resumed)
        assert deleted.kind is EventKind.DELETED and deleted.name == "sessions/w1"


async def test_watch_names_filter(client: SessionsClient) -> None:
    await client.create_session("mine", skip_start=True)
    await client.create_session("other", skip_start=True)
    async with client.watch(["mine"]) as events:
        snap = await next_event(events)
        assert snap.name == "sessions/mine"
        assert (await next_event(events)).kind is EventKind.SNAPSHOT_COMPLETE
        await client.update_labels("other", {"a": "1"})
        await client.update_labels("mine", {"b": "2"})
        change = await next_event(events, EventKind.CHANGE)
        assert change.name == "sessions/mine"


KEY = "client-test-key-0123456789"


async def test_api_key_is_sent_as_bearer(make_server: ServerFactory, tmp_path: Path) -> None:
    """Against a server that checks keys: calls and streams pass with the key, and without it
    the error is UNAUTHENTICATED with its reason (a stream is not retried on it)."""
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\nread:read-only-key-0123456789\n")
    running = await make_server({"api_keys_file": str(keys)})
    async with SessionsClient(running.server.target, api_key=KEY) as keyed:
        await keyed.create_session("k", skip_start=True)
        async with keyed.watch(["k"]) as events:
            assert (await next_event(events)).name == "sessions/k"
    async with SessionsClient(running.server.target) as anonymous:
        with pytest.raises(UnauthenticatedError) as missing:
            await anonymous.get_session("k")
        assert missing.value.code is grpc.StatusCode.UNAUTHENTICATED and missing.value.reason
        with pytest.raises(UnauthenticatedError):
            await anext(anonymous.watch())
    async with SessionsClient(running.server.target, api_key="read-only-key-0123456789") as ro:
        assert (await ro.get_session("k")).name == "sessions/k"
        with pytest.raises(PermissionDeniedError):
            await ro.start_session("k")


async def test_blocking_facade(make_server: ServerFactory) -> None:
    """The blocking client runs in a thread here: the in-process server needs this loop."""

    running = await make_server(LONG_QR)

    def scenario() -> tuple[list[str], str, str]:
        with BlockingSessionsClient(running.server.target) as client:
            client.create_session("blk")
            states: list[str] = []
            codes = client.qr_codes("blk")
            first = next(codes)
            client.sim_scan("blk")
            outcome = [c.outcome for c in codes][-1]
            for event in client.watch(["blk"]):
                states.append(event.state)
                if event.state == "CONNECTED":
                    break
            try:
                client.get_session("missing")
            except NotFoundError as error:
                reason = error.reason
            assert client.wait_for_state("blk", "CONNECTED", timeout=10).has_credentials
            assert client.sim_network_stats().connects >= 2  # the QR connect, the restart
            return states, first.value, outcome + " " + reason

    states, value, rest = await asyncio.to_thread(scenario)
    assert value.startswith("2@")
    assert rest == "PAIRED SESSION_NOT_FOUND"
    assert states[-1] == "CONNECTED"


async def test_a_ready_channel_is_used_and_left_open(make_server: ServerFactory) -> None:
    """`channel=`: the client calls through the caller's channel and leaves it open."""
    running = await make_server(LONG_QR)
    target = running.server.target
    channel = grpc.aio.insecure_channel(target)
    try:
        async with SessionsClient(channel=channel) as client:
            created = await client.create_session("chan", skip_start=True)
            assert created.name == "sessions/chan" and client.target == ""
        # Closed client, open channel: a second client (and the raw stub) still get through.
        async with SessionsClient(channel=channel) as again:
            assert (await again.get_session("chan")).state == S.STOPPED
        stub = svc_grpc.SessionServiceStub(channel)
        got = await stub.GetSession(svc.GetSessionRequest(name="sessions/chan"), timeout=5)
        assert got.name == "sessions/chan"
        assert channel.get_state() is grpc.ChannelConnectivity.READY
    finally:
        await channel.close()
    with pytest.raises(ValueError, match="either a ready channel or a target"):
        SessionsClient(target, channel=channel)
    with pytest.raises(ValueError, match="needs a target"):
        SessionsClient()

    made: list[grpc.aio.Channel] = []

    def make_channel() -> grpc.aio.Channel:
        made.append(grpc.aio.insecure_channel(target))
        return made[-1]

    def blocking() -> str:
        with BlockingSessionsClient(channel=make_channel) as client:
            return client.get_session("chan").name

    assert await asyncio.to_thread(blocking) == "sessions/chan"
    assert len(made) == 1


async def test_tls_and_mutual_tls_from_client_and_cli(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """TLS with a CA the test makes: the library with channel credentials, and the CLI's
    --ca-file / --client-cert / --client-key (a real console-script subprocess)."""
    pki = make_pki(tmp_path / "pki")
    running = await make_server(
        {
            "tls_cert": str(pki.server_cert),
            "tls_key": str(pki.server_key),
            "tls_client_ca": str(pki.ca),
        }
    )
    target = running.server.target
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )
    async with SessionsClient(target, tls=creds) as secure:
        await secure.create_session("tls", skip_start=True)

    async def cli(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "wa-sessions"),
            "--server",
            target,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    mtls = ["--ca-file", str(pki.ca), "--client-cert", str(pki.client_cert)]
    rc, out, err = await cli("get", "tls", "--json", *mtls, "--client-key", str(pki.client_key))
    assert rc == 0, err
    assert json.loads(out)["name"] == "sessions/tls"
    # Without the client certificate the server refuses the handshake: one error line.
    rc, out, err = await cli("get", "tls", "--ca-file", str(pki.ca), "--timeout", "5")
    assert rc == 1 and err.startswith("wa-sessions: error: ") and err.count("\n") == 1
    rc, out, err = await cli("get", "tls", *mtls)
    assert (rc, err) == (1, "wa-sessions: error: --client-cert and --client-key go together\n")
