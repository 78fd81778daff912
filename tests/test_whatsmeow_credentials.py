"""The whatsmeow engine's `has_credentials`: a cache of each store, read off the event loop at
a connect, a pairing and a close, and by `refresh_credentials`."""

from __future__ import annotations

# isort: off
from tests.test_whatsmeow import (
    FakeClient,
    _connection,
    _next,
    _open,
    _showing_qr,
)  # (strips proxy variables)

# isort: on
import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from neonize.events import DisconnectedEv, LoggedOutEv, PairStatusEv
from neonize.proto.Neonize_pb2 import JID, ConnectFailureReason, Device, PairStatus
from wasessions_server.engines import whatsmeow
from wasessions_server.engines.base import Closed, PairSuccess
from wasessions_server.engines.whatsmeow import STORE_FILE, WhatsmeowEngine
from wasessions_server.policy import QrSchedule
from wasessions_server.store import CredentialVault, FileCredentialVault


def _store_device(vault: CredentialVault) -> None:
    """What whatsmeow's Save leaves behind, as far as the engine reads it: a device row."""
    with contextlib.closing(sqlite3.connect(vault.ensure() / STORE_FILE)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS whatsmeow_device (jid TEXT PRIMARY KEY)")
        db.execute("INSERT INTO whatsmeow_device VALUES ('15550001234:7@s.whatsapp.net')")


def _delete_device(vault: CredentialVault) -> None:
    with contextlib.closing(sqlite3.connect(vault.path / STORE_FILE)) as db, db:
        db.execute("DELETE FROM whatsmeow_device")


class StoreReads:
    """Records every real store read and the thread it ran on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[threading.Thread] = []
        #: Runs after each read, before its answer is returned.
        self.after: Callable[[], None] = lambda: None
        real = whatsmeow.store_has_device

        def read(path: Path) -> bool:
            self.threads.append(threading.current_thread())
            stored = real(path)
            self.after()
            return stored

        monkeypatch.setattr(whatsmeow, "store_has_device", read)

    @property
    def on_the_loop(self) -> int:
        return sum(thread is threading.main_thread() for thread in self.threads)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> StoreReads:
    return StoreReads(monkeypatch)


def _engine_and_device(tmp_path: Path) -> tuple[WhatsmeowEngine, CredentialVault]:
    """An engine, and a vault whose store holds a device the engine has not read yet."""
    vault = FileCredentialVault(tmp_path / "creds" / "s1")
    _store_device(vault)
    return WhatsmeowEngine(tmp_path / "engine", QrSchedule(0.2, 0.1, 3)), vault


async def test_has_credentials_never_opens_the_store_on_the_loop(
    tmp_path: Path, reads: StoreReads
) -> None:
    engine, vault = _engine_and_device(tmp_path)
    assert await engine.refresh_credentials(vault)
    assert len(reads.threads) == 1 and reads.on_the_loop == 0
    assert all(engine.has_credentials(vault) for _ in range(1000))
    assert len(reads.threads) == 1
    # A wipe shows at once (the store file is gone), before anyone refreshes; a store made
    # anew (as a connect does, which reads it too) is read again.
    vault.wipe()
    assert not engine.has_credentials(vault)
    whatsmeow._prepare_store(vault)
    assert not await engine.refresh_credentials(vault)
    assert not engine.has_credentials(vault)
    assert len(reads.threads) == 2 and reads.on_the_loop == 0
    await engine.aclose()


async def test_a_vault_never_read_is_read_once(tmp_path: Path, reads: StoreReads) -> None:
    """Only where nobody refreshed first (the sessions layer does, at load)."""
    engine, vault = _engine_and_device(tmp_path)
    assert engine.has_credentials(vault) and engine.has_credentials(vault)
    assert len(reads.threads) == 1
    await engine.aclose()


async def test_a_slow_read_does_not_overwrite_a_newer_one(
    tmp_path: Path, reads: StoreReads
) -> None:
    engine, vault = _engine_and_device(tmp_path)
    started, go_on = threading.Event(), threading.Event()

    def first_read_hangs() -> None:
        if len(reads.threads) == 1:
            started.set()
            go_on.wait(5)

    reads.after = first_read_hangs
    slow = asyncio.ensure_future(engine.refresh_credentials(vault))
    assert await asyncio.to_thread(started.wait, 5)
    _delete_device(vault)  # the read still hanging saw the device
    assert not await engine.refresh_credentials(vault)
    go_on.set()
    assert await slow is False
    assert not engine.has_credentials(vault)
    await engine.aclose()


async def _paired(tmp_path: Path) -> tuple[whatsmeow.WhatsmeowConnection, object]:
    """A connection that showed a QR code and paired; whatsmeow saved the device first."""
    connection, events = await _showing_qr(tmp_path, QrSchedule(5, 5, 2))
    vault = connection.target.vault
    whatsmeow._prepare_store(vault)  # as a connect does, and reads it
    assert not await connection.engine.refresh_credentials(vault)
    connection._on_login_status("success")
    assert not connection.engine.has_credentials(vault)
    _store_device(vault)
    jid = JID(User="15550001234", Server="s.whatsapp.net", Device=7)
    connection.library.event_loop_started()
    connection._on_event_loop_started(Device(JID=jid, PushName="Ann"))
    connection._on_library_event(PairStatusEv(ID=jid, Status=PairStatus.SUCCESS))
    assert isinstance(await _next(events), PairSuccess)
    # Read before the event was handed on: a record committed for it says so.
    assert connection.engine.has_credentials(vault)
    return connection, events


async def test_the_cache_follows_a_pairing_and_the_library_deleting_its_store(
    tmp_path: Path, reads: StoreReads
) -> None:
    connection, events = await _paired(tmp_path)
    vault = connection.target.vault
    # The phone removes the device: whatsmeow reports LoggedOut and deletes at the same time.
    connection._on_library_event(
        LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.LOGGED_OUT)
    )
    deleter = threading.Timer(0.3, _delete_device, (vault,))
    deleter.start()
    started = time.monotonic()
    closed = await _next(events)  # type: ignore[arg-type]
    assert isinstance(closed, Closed) and closed.code == 401
    assert time.monotonic() - started >= 0.25, "handed on before the delete showed"
    assert not connection.engine.has_credentials(vault)
    assert reads.on_the_loop == 0 and len(reads.threads) >= 3
    deleter.join()


async def test_a_delete_that_never_shows_is_waited_for_a_bounded_time(
    tmp_path: Path, reads: StoreReads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whatsmeow, "STORE_DELETE_WAIT_S", 0.3)
    connection, events = await _paired(tmp_path)
    connection._on_library_event(
        LoggedOutEv(OnConnect=True, Reason=ConnectFailureReason.MAIN_DEVICE_GONE)
    )
    closed = await _next(events)  # type: ignore[arg-type]
    assert isinstance(closed, Closed) and closed.code == 403
    # whatsmeow's delete failed: the device is still there, and has_credentials says so.
    assert connection.engine.has_credentials(connection.target.vault)


async def test_any_close_reads_the_store_again(tmp_path: Path, reads: StoreReads) -> None:
    connection = await _connection(tmp_path)
    vault = connection.target.vault
    _store_device(vault)
    events = await _open(connection)
    assert not reads.threads and connection.engine.has_credentials(vault)
    _delete_device(vault)  # behind the engine's back
    connection._on_library_event(DisconnectedEv(status=True))
    assert isinstance(await _next(events), Closed)
    assert not connection.engine.has_credentials(vault)
    assert reads.on_the_loop == 1  # the one first read, in has_credentials above


async def test_a_logout_reads_the_store_again(tmp_path: Path, reads: StoreReads) -> None:
    connection = await _connection(tmp_path)
    vault = connection.target.vault
    _store_device(vault)
    await _open(connection)
    assert connection.engine.has_credentials(vault)

    class DeletingClient(FakeClient):
        def logout(self) -> None:
            super().logout()
            _delete_device(vault)  # whatsmeow's Logout deletes the store before it returns

    connection._client = DeletingClient()
    await connection.logout()
    assert connection._client.calls == ["logout", "stop"]
    assert not connection.engine.has_credentials(vault)
