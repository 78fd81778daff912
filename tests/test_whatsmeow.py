"""The whatsmeow engine with a real neonize client and no network (loopback only)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import datetime
import hashlib
import itertools
import os
import signal
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
FAKE_HOST = "web.whatsapp.com"


# NOTE: neonize honours https_proxy; Go reads the environment when the library loads.
for _name in list(os.environ):
    if _name.lower() in PROXY_VARIABLES:
        del os.environ[_name]


def _fake_whatsapp_tls(folder: Path) -> Path:
    """A CA, a certificate for web.whatsapp.com it signed, and a bundle (the system's CAs plus
    that CA) for a server process's SSL_CERT_FILE."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wa-sessions test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FAKE_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(FAKE_HOST)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "cert.pem").write_bytes(cert.public_bytes(pem))
    (folder / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    system = ssl.get_default_verify_paths().cafile
    bundle = Path(system).read_bytes() if system and Path(system).is_file() else b""
    (folder / "bundle.pem").write_bytes(bundle + b"\n" + ca.public_bytes(pem))
    return folder / "bundle.pem"


from neonize.events import (  # noqa: E402
    EVENT_TO_INT,
    ConnectedEv,
    DisconnectedEv,
    KeepAliveTimeoutEv,
    PairStatusEv,
)
from neonize.proto.Neonize_pb2 import JID, Device, PairStatus  # noqa: E402
from wasessions.v1 import session_service_pb2 as svc  # noqa: E402
from wasessions.v1 import session_service_pb2_grpc as svc_grpc  # noqa: E402
from wasessions_server.engines.base import (  # noqa: E402
    Activity,
    Closed,
    ConnectTarget,
    Opened,
    PairSuccess,
    Qr,
)
from wasessions_server.engines.whatsmeow import (  # noqa: E402
    STORE_FILE,
    Library,
    Phase,
    WhatsmeowConnection,
    WhatsmeowEngine,
    store_has_device,
)
from wasessions_server.engines.whatsmeow_events import SUBSCRIBED  # noqa: E402
from wasessions_server.errors import ServiceError  # noqa: E402
from wasessions_server.main import LIBRARY_EXIT_TIMEOUT_S  # noqa: E402
from wasessions_server.policy import QR_WINDOW_OVER_MESSAGE, QrSchedule  # noqa: E402
from wasessions_server.store import FileCredentialVault  # noqa: E402

from tests.conftest import ServerFactory  # noqa: E402
from tests.helpers import (  # noqa: E402
    FAST,
    Running,
    S,
    spawn_server,
    start_server,
    stop_server,
    write_config,
)

BACKOFF: dict[str, Any] = {
    "initial_delay_s": 0.2,
    "max_delay_s": 5.0,
    "multiplier": 2.0,
    "jitter_s": 0.0,
}


def _config(max_attempts: int = 3, **manager: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "engine": "whatsmeow",
        "policy": {"default": {**BACKOFF, "max_attempts": max_attempts}},
    }
    if manager:
        config["manager"] = manager
    return config


async def _follow(
    srv: Running,
    session_id: str,
    until: int,
    timeout: float,
    action: Callable[[], Awaitable[Any]] | None = None,
) -> list[Any]:
    """Every committed version of the session (WatchSessions misses none) until it is in
    `until`; `action` runs once the watch is subscribed. Meanwhile GetSession is asked again
    and again and must answer within a sane time."""
    stream = srv.sessions.WatchSessions(svc.WatchSessionsRequest(names=[f"sessions/{session_id}"]))
    slowest = 0.0
    following = True

    async def probe() -> None:
        nonlocal slowest
        while following:
            started = time.monotonic()
            with contextlib.suppress(grpc.aio.AioRpcError):
                await srv.get(session_id)
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.05)

    prober = asyncio.create_task(probe())
    seen: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            async for message in stream:
                kind = message.WhichOneof("event")
                if kind == "snapshot_complete" and action is not None:
                    await action()
                elif kind == "change" or (kind == "snapshot" and action is None):
                    session = message.snapshot if kind == "snapshot" else message.change.session
                    seen.append(session)
                    if session.state == until:
                        break
    except TimeoutError:
        raise AssertionError(
            f"{session_id} never reached {until}: {[(s.state, s.retry.attempt) for s in seen]}"
        ) from None
    finally:
        following = False
        stream.cancel()
        await prober
    assert slowest < 5.0, f"GetSession took {slowest:.1f} s"
    return seen


def _assert_retried_then_failed(sessions: list[Any], text: str) -> None:
    states = [s.state for s in sessions]
    assert states[0] in (S.CONNECTING, S.RECONNECTING), states
    assert states[-1] == S.FAILED, states
    waiting = [
        s for s in sessions if s.state == S.RECONNECTING and s.retry.next_attempt_time.seconds
    ]
    assert len(waiting) >= 2, states
    for session in waiting:
        assert session.last_disconnect.code == 408
        assert text in session.last_disconnect.message, session.last_disconnect.message
        assert session.required_action == S.CHECK_NETWORK
    delays = [
        s.retry.next_attempt_time.ToNanoseconds() - s.last_disconnect.time.ToNanoseconds()
        for s in waiting
    ]
    assert all(b > a for a, b in itertools.pairwise(delays)), delays
    failed = sessions[-1]
    assert failed.required_action == S.START_SESSION
    assert failed.retry.attempt == failed.retry.max_attempts == 3
    assert failed.last_disconnect.code == 408


async def test_no_network_retries_with_backoff_then_fails(make_server: ServerFactory) -> None:
    srv = await make_server(_config())
    sessions = await _follow(srv, "s1", S.FAILED, 30, lambda: srv.create("s1"))
    _assert_retried_then_failed(sessions, "web.whatsapp.com")
    # The credentials folder is untouched: the store is there, with no device in it.
    store = srv.creds_dir("s1") / STORE_FILE
    assert store.is_file() and oct(store.stat().st_mode & 0o777) == "0o600"
    assert not sessions[-1].has_credentials
    assert (await srv.get("s1")).engine == "whatsmeow"


def _store_a_device(store: Path) -> None:
    """A linked device as whatsmeow stores it (keys are random: no phone ever sees them)."""
    random = os.urandom
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        db.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key, "
            "signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, "
            "adv_account_sig, adv_account_sig_key, adv_device_sig, push_name) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "15550001234:7@s.whatsapp.net", 1234, random(32), random(32), random(32), 1,
                random(64), random(32), b"", random(64), random(32), random(64), "Ann",
            ),
        )  # fmt: skip


async def test_a_linked_session_keeps_its_device_and_is_restored(tmp_path: Path) -> None:
    """With a stored device the library takes its logged-in path: no network is a 408 like any
    other, the device stays (has_credentials says so throughout), and after a restart the
    session reconnects by itself instead of waiting for a QR scan.

    NOTE: the device is stored while the server is down: the engine reads a store at a connect,
    a pairing and a close, not behind its own back."""
    data = tmp_path / "data"
    srv = await start_server(data, _config())
    try:
        await srv.create("d1")
        await srv.wait_state("d1", S.FAILED, timeout=30)
        store = srv.creds_dir("d1") / STORE_FILE
    finally:
        await stop_server(srv)
    _store_a_device(store)
    srv = await start_server(data, _config())
    try:
        start = svc.StartSessionRequest(name="sessions/d1")
        sessions = await _follow(srv, "d1", S.FAILED, 30, lambda: srv.sessions.StartSession(start))
        _assert_retried_then_failed(sessions, "web.whatsapp.com")
        assert all(s.has_credentials for s in sessions), [s.has_credentials for s in sessions]
        await srv.sessions.StartSession(svc.StartSessionRequest(name="sessions/d1"))
        await srv.wait_state("d1", S.RECONNECTING, timeout=10)
    finally:
        await stop_server(srv)
    assert store_has_device(store), "the shutdown must not touch the device"
    again = await start_server(data, _config())
    try:
        restored = await _follow(again, "d1", S.RECONNECTING, timeout=30)
        assert restored[-1].has_credentials and restored[-1].last_disconnect.code == 408
    finally:
        await stop_server(again)


async def test_a_refusing_proxy_is_a_network_error(make_server: ServerFactory) -> None:
    srv = await make_server(_config())
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    proxy = f"http://127.0.0.1:{port}"
    sessions = await _follow(srv, "p1", S.FAILED, 30, lambda: srv.create("p1", proxy=proxy))
    _assert_retried_then_failed(sessions, "refused")


@pytest.fixture
async def silent_proxy() -> AsyncIterator[str]:
    """Accepts connections and never answers (the library has no timeout of its own here)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.slow
async def test_a_silent_proxy_is_cut_off_by_the_manager(
    make_server: ServerFactory, silent_proxy: str
) -> None:
    srv = await make_server(_config(max_attempts=2, connect_timeout_s=1.5))
    await srv.create("h1", proxy=silent_proxy)
    other = await srv.create("h2", skip_start=True)
    session = await srv.wait_state("h1", S.RECONNECTING, timeout=10)
    assert session.last_disconnect.code == 408
    # The server keeps answering while the library hangs.
    assert (await srv.get("h2")).name == other.name
    session = await srv.wait_state("h1", S.FAILED, timeout=20)
    assert session.last_disconnect.code == 408
    assert session.retry.attempt == 2


class MuteWhatsApp:
    """A proxy whose tunnel ends at a fake web.whatsapp.com: TLS and the WebSocket upgrade
    succeed, then the Noise handshake is never answered."""

    def __init__(self, folder: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.upgraded = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection = self.listener.accept()[0]
                self.sockets.append(connection)
                threading.Thread(target=self._tunnel, args=(connection,), daemon=True).start()

    def _tunnel(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError, StopIteration):
            connect = _read_head(connection)
            assert connect.startswith(f"CONNECT {FAKE_HOST}:443".encode()), connect
            connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            tls = self.context.wrap_socket(connection, server_side=True)
            self.sockets.append(tls)
            upgrade = _read_head(tls).decode()
            key = next(
                line.split(":", 1)[1].strip()
                for line in upgrade.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
            accept = base64.b64encode(digest.digest()).decode()
            tls.sendall(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".encode()
            )
            self.upgraded.set()
            while tls.recv(4096):  # the client's Noise hello: never answered
                pass

    def close(self) -> None:
        self.listener.close()
        for connection in self.sockets:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # NOTE: wakes the thread blocked in recv
            with contextlib.suppress(OSError):
                connection.close()


def _read_head(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            raise StopIteration
        data += chunk
    return data


@pytest.mark.slow
def test_the_library_handshake_timeout_is_a_network_error(tmp_path: Path) -> None:
    """A real server process whose Go library trusts a test CA (SSL_CERT_FILE is read when the
    library loads), so the connect gets as far as whatsmeow's Noise handshake."""
    bundle = _fake_whatsapp_tls(tmp_path)
    mute = MuteWhatsApp(tmp_path)
    config = write_config(tmp_path / "config.toml", {**FAST, "engine": "whatsmeow"})
    previous = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(bundle)
    try:
        server = spawn_server(tmp_path / "data", config)
    finally:
        if previous is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = previous
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = svc_grpc.SessionServiceStub(channel)
            stub.CreateSession(svc.CreateSessionRequest(session_id="t1", proxy=mute.url))
            assert mute.upgraded.wait(10), "the library never reached the fake endpoint"
            # whatsmeow's fixed 20 s Noise handshake timeout, then the manager's backoff.
            deadline = time.monotonic() + 40
            while True:
                session = stub.GetSession(svc.GetSessionRequest(name="sessions/t1"), timeout=5)
                if session.last_disconnect.code or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert session.last_disconnect.code == 408, session
        assert "noise handshake failed" in session.last_disconnect.message, session
        assert session.state in (S.RECONNECTING, S.CONNECTING)
        assert not session.has_credentials
    finally:
        mute.close()  # NOTE: first, so a handshake in progress ends at once
        server.process.terminate()
        server.process.wait(timeout=60)


@pytest.mark.slow
def test_shutdown_does_not_wait_for_threads_stuck_in_the_library(tmp_path: Path) -> None:
    """A connect hanging inside the library (a proxy that never answers) does not keep the
    process alive past main's documented bound."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = write_config(tmp_path / "config.toml", {**FAST, "engine": "whatsmeow"})
    server = spawn_server(tmp_path / "data", config)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = svc_grpc.SessionServiceStub(channel)
            stub.CreateSession(svc.CreateSessionRequest(session_id="hang", proxy=proxy))
            deadline = time.monotonic() + 10
            while not accepted and time.monotonic() < deadline:
                time.sleep(0.05)
            assert accepted, "the library never reached the proxy"
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=LIBRARY_EXIT_TIMEOUT_S + 15) == 0
        assert time.monotonic() - started < LIBRARY_EXIT_TIMEOUT_S + 10
        assert any("still inside the WhatsApp library" in line for line in server.log)
    finally:
        if server.process.poll() is None:
            server.process.kill()
        listener.close()
        for connection in accepted:
            connection.close()


async def test_fifty_sessions_without_network_do_not_starve(make_server: ServerFactory) -> None:
    srv = await make_server(_config(max_attempts=2))
    ids = [f"m{i:02d}" for i in range(50)]
    await asyncio.gather(*(srv.create(i) for i in ids))
    slowest = 0.0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        started = time.monotonic()
        sessions = [await srv.get(i) for i in ids[::7]]
        slowest = max(slowest, time.monotonic() - started)
        states = {s.state for s in sessions}
        if states == {S.FAILED}:
            break
        await asyncio.sleep(0.05)
    finals = await asyncio.gather(*(srv.get(i) for i in ids))
    assert {s.state for s in finals} == {S.FAILED}, {s.state for s in finals}
    assert all(s.last_disconnect.code == 408 for s in finals)
    assert slowest < 5.0, slowest  # NOTE: a sanity bound; timings belong in bench/


# The connection's own logic, driven with the library's event types --------------------------


class FakeClient:
    """Stands in for neonize's client once a connection exists."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stop(self) -> None:
        self.calls.append("stop")

    def disconnect(self) -> None:
        self.calls.append("disconnect")

    def logout(self) -> None:
        self.calls.append("logout")


async def _connection(tmp_path: Path, qr: QrSchedule | None = None) -> WhatsmeowConnection:
    engine = WhatsmeowEngine(tmp_path / "engine", qr or QrSchedule(0.2, 0.1, 3))
    target = ConnectTarget("u1", FileCredentialVault(tmp_path / "creds" / "u1"))
    connection = WhatsmeowConnection(engine, target)
    connection._client = FakeClient()
    return connection


async def _released(connection: WhatsmeowConnection) -> None:
    assert connection._teardown is not None
    await asyncio.wait_for(asyncio.shield(connection._teardown), 2)


async def _next(events: AsyncIterator[Any]) -> Any:
    return await asyncio.wait_for(anext(events), 2.0)


async def _showing_qr(
    tmp_path: Path, qr: QrSchedule
) -> tuple[WhatsmeowConnection, AsyncIterator[Any]]:
    """A connection that showed its first QR code."""
    connection = await _connection(tmp_path, qr)
    events = connection.events()
    connection._on_qr_code("2@only")
    assert isinstance(await _next(events), Qr)
    return connection, events


async def _open(connection: WhatsmeowConnection) -> AsyncIterator[Any]:
    me = Device(JID=JID(User="15550001234", Server="s.whatsapp.net"), PushName="Ann")
    connection.library.event_loop_started()
    connection._on_event_loop_started(me)
    connection._on_library_event(ConnectedEv(status=True))
    events = connection.events()
    opened = await _next(events)
    assert isinstance(opened, Opened) and opened.account.phone_number == "+15550001234"
    assert isinstance(await _next(events), Activity)
    return events


async def test_the_library_reconnect_is_stopped_at_once(tmp_path: Path) -> None:
    connection = await _connection(tmp_path)
    events = await _open(connection)
    client = connection._client
    connection._on_library_event(DisconnectedEv(status=True))
    closed = await _next(events)
    assert closed == Closed(428, "Connection Terminated by Server")
    # Stopped by the engine itself, before the manager does anything.
    await _released(connection)
    assert client.calls == ["stop"]
    # whatsmeow reconnected behind the manager's back anyway: stopped again, nothing reported.
    connection._on_library_event(ConnectedEv(status=True))
    await _released(connection)
    assert client.calls == ["stop", "stop"]
    assert connection._events.empty()


async def test_keepalive_gives_up_before_the_library_does(tmp_path: Path) -> None:
    connection = await _connection(tmp_path)
    events = await _open(connection)
    connection._on_library_event(
        KeepAliveTimeoutEv(ErrorCount=4, LastSuccess=int(time.time() - 130))
    )
    closed = await _next(events)
    assert isinstance(closed, Closed) and closed.code == 408
    await _released(connection)
    assert connection._client.calls == ["stop"]


async def test_qr_codes_follow_the_schedule_then_the_window_closes(tmp_path: Path) -> None:
    connection = await _connection(tmp_path)
    events = connection.events()
    connection._on_qr_code("2@first")
    first = await _next(events)
    assert isinstance(first, Qr) and (first.value, first.sequence) == ("2@first", 1)
    # The library hands out the next codes later; each is shown when it comes.
    connection._on_qr_code("2@second")
    connection._on_qr_code("2@third")
    second, third = await _next(events), await _next(events)
    assert [second.sequence, third.sequence] == [2, 3]
    # Each is shown when the one before expires, for the schedule's 0.1 s.
    assert 0.05 < second.expire_time - first.expire_time < 0.3
    with pytest.raises(ServiceError):
        await _connection_pairing_outside_qr(tmp_path)
    closed = await _next(events)
    assert closed == Closed(408, QR_WINDOW_OVER_MESSAGE)
    await _released(connection)
    # NOTE: a QR phase is ended with Disconnect, never Stop (that would crash the process).
    assert connection._client.calls == ["disconnect"]


async def _connection_pairing_outside_qr(tmp_path: Path) -> str:
    connection = await _connection(tmp_path)
    return await connection.request_pairing_code("+15550001234")


async def test_the_qr_timeout_status_ends_the_window(tmp_path: Path) -> None:
    connection, events = await _showing_qr(tmp_path, QrSchedule(5, 5, 6))
    connection._on_login_status("timeout")
    assert await _next(events) == Closed(408, QR_WINDOW_OVER_MESSAGE)


async def test_library_callbacks_reach_the_connection(tmp_path: Path) -> None:
    """neonize's own dispatch (the callbacks Go calls) feeds the connection: the event loop's
    first message, then a library event through neonize's handler table."""
    connection = await _connection(tmp_path)
    client = connection._make_client(tmp_path / "store.db")
    assert not client._stop_finalizer.alive  # the engine stops its clients itself
    assert set(client.event.list_func) == {EVENT_TO_INT[e] for e in SUBSCRIBED}

    def deliver(message: Any, code: int) -> None:
        raw = message.SerializeToString()
        buffer = ctypes.create_string_buffer(raw, len(raw))
        client.event.execute(b"u1", ctypes.addressof(buffer), len(raw), code)

    jid = JID(
        User="15550001234",
        Server="s.whatsapp.net",
        Device=0,
        RawAgent=0,
        Integrator=0,
        IsEmpty=False,
    )
    me = Device(JID=jid, PushName="Ann", Platform="", BussinessName="", Initialized=True)
    deliver(me, 0)
    deliver(DisconnectedEv(status=True), EVENT_TO_INT[DisconnectedEv])
    deliver(me, 99)  # an event type neonize does not know: logged, not raised
    events = connection.events()
    assert await _next(events) == Closed(428, "Connection Terminated by Server")
    assert connection._me is not None and connection._me.push_name == "Ann"
    # The event loop had started, so the close stopped the client.
    assert connection._established.is_set() and connection.library.now is Library.STOPPED


async def test_a_scan_stops_the_qr_window_then_pairing_and_connected_follow(tmp_path: Path) -> None:
    connection, events = await _showing_qr(tmp_path, QrSchedule(0.2, 0.1, 2))
    connection._on_login_status("success")
    await asyncio.sleep(0.5)  # longer than the whole window: it must not close now
    jid = JID(User="15550001234", Server="s.whatsapp.net", Device=3)
    connection._on_event_loop_started(Device(JID=jid, PushName=""))
    connection._on_library_event(PairStatusEv(ID=jid, Status=PairStatus.SUCCESS, BusinessName="B"))
    paired = await _next(events)
    assert isinstance(paired, PairSuccess) and paired.account.jid == "15550001234:3@s.whatsapp.net"
    connection._on_library_event(ConnectedEv(status=True))
    opened = await _next(events)
    assert isinstance(opened, Opened) and opened.account.phone_number == "+15550001234"
    assert connection._restart_timer is None and connection.phase is Phase.OPEN


async def test_the_library_client_is_released_only_as_far_as_is_safe(tmp_path: Path) -> None:
    library = (await _connection(tmp_path)).library
    assert library.take_release() is None
    assert library.qr_channel_opened()
    assert library.take_release() is Library.DISCONNECTED and library.take_release() is None
    assert not library.qr_channel_opened()
    assert library.event_loop_started()
    assert library.take_release() is Library.STOPPED and library.take_release() is None
    assert library.running_again() and library.take_release() is Library.STOPPED
    library.returned()
    assert not library.event_loop_started() and not library.running_again()
    assert library.take_release() is None and library.now is Library.RETURNED


async def test_a_release_asked_for_while_one_runs_is_carried_out(tmp_path: Path) -> None:
    """The QR phase is ended with Disconnect; the library's event loop starts meanwhile: Stop
    follows once the Disconnect returns."""

    class SlowDisconnect(FakeClient):
        def __init__(self) -> None:
            super().__init__()
            self.called, self.go_on = threading.Event(), threading.Event()

        def disconnect(self) -> None:
            super().disconnect()
            self.called.set()
            self.go_on.wait(5)

    connection = await _connection(tmp_path)
    client = connection._client = SlowDisconnect()
    connection._on_qr_code("2@only")
    connection._end(None)
    assert await asyncio.to_thread(client.called.wait, 5)
    connection.library.event_loop_started()
    connection._on_event_loop_started(Device(JID=JID(User="15550001234"), PushName=""))
    client.go_on.set()
    await _released(connection)
    assert client.calls == ["disconnect", "stop"]


def _phase(connection: WhatsmeowConnection) -> Phase:
    """NOTE: a call, so mypy does not carry an earlier `is` check over to the next one."""
    return connection.phase


async def test_a_connection_phase_only_moves_forward(tmp_path: Path) -> None:
    connection, events = await _showing_qr(tmp_path, QrSchedule(5, 5, 2))
    connection._on_login_status("success")
    assert _phase(connection) is Phase.SCANNED
    with pytest.raises(ServiceError):
        await connection.request_pairing_code("+15550001234")
    connection._on_qr_code("2@late")
    assert _phase(connection) is Phase.SCANNED
    jid = JID(User="15550001234", Server="s.whatsapp.net", Device=3)
    connection.library.event_loop_started()
    connection._on_event_loop_started(Device(JID=jid, PushName="Ann"))
    success = PairStatusEv(ID=jid, Status=PairStatus.SUCCESS)
    connection._on_library_event(success)
    assert isinstance(await _next(events), PairSuccess) and _phase(connection) is Phase.PAIRED
    connection._on_library_event(ConnectedEv(status=True))
    connection._on_library_event(ConnectedEv(status=True))
    connection._on_library_event(success)
    assert isinstance(await _next(events), Opened) and isinstance(await _next(events), Activity)
    assert connection._events.empty() and _phase(connection) is Phase.OPEN
    await connection.close()
    assert _phase(connection) is Phase.CLOSED
    assert not any(connection._advance(phase) for phase in Phase)
