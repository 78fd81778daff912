"""Disk full: writes fail with a clear UNAVAILABLE (or INTERNAL) error and a log line, nothing
already stored is damaged, and the server recovers when space returns.

The data directory lives on a small tmpfs when this machine lets the test mount one (tests run
as root); otherwise the same scenario runs through a fault-injection seam: the store's and
the credential vault's writes fail the way a full disk makes them fail."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions_server.errors import StorageError
from wasessions_server.store import SqliteStore
from wasessions_server.store.credentials import FileCredentialVault

from tests.helpers import Running, S, error_info, start_server, stop_server

FULL_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL}


class SmallDisk:
    """A data directory whose disk can be filled up and freed again."""

    def __init__(self, root: Path, mounted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.mounted = mounted
        self._monkeypatch = monkeypatch
        self._full = False
        self._filler = root / "filler"

    def fill(self, running: Running) -> None:
        if self.mounted:
            fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                for chunk in (1 << 16, 1 << 12, 1 << 8, 1):
                    with contextlib.suppress(OSError):
                        while os.write(fd, b"\0" * chunk):
                            pass
            finally:
                os.close(fd)
            # NOTE: prove the disk really is full.
            probe = os.open(self.root / "probe", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with pytest.raises(OSError) as raised:
                    os.write(probe, b"\0" * 8192)
            finally:
                os.close(probe)
                os.unlink(self.root / "probe")
            assert raised.value.errno == errno.ENOSPC
            return
        self._full = True
        store = running.server.store
        assert isinstance(store, SqliteStore)
        real_write = store.write_batch

        async def write_batch(entries: Any) -> None:
            if self._full:
                raise StorageError(f"cannot write to {store.path}: database or disk is full")
            await real_write(entries)

        self._monkeypatch.setattr(store, "write_batch", write_batch)
        real_vault_write = FileCredentialVault.write

        def vault_write(vault: FileCredentialVault, name: str, data: bytes) -> None:
            if self._full:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_vault_write(vault, name, data)

        self._monkeypatch.setattr(FileCredentialVault, "write", vault_write)

    def free(self) -> None:
        if self.mounted:
            self._filler.unlink()
        self._full = False


def _try_mount(where: Path) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


@pytest.fixture(params=["tmpfs", "seam"])
def small_disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SmallDisk]:
    root = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mounted = request.param == "tmpfs" and _try_mount(root)
    if not mounted:
        root.mkdir(parents=True, exist_ok=True)
    try:
        yield SmallDisk(root, mounted, monkeypatch)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], check=False)


CONFIG = {"qr": {"first_timeout_s": 60.0, "timeout_s": 20.0, "max_codes": 3}}


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _session_service_health(
    running: Running, service: str = "wasessions.v1.SessionService"
) -> int:
    health = health_pb2_grpc.HealthStub(running.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def _wait_health(running: Running, status: int, timeout: float = 10.0) -> None:
    health = health_pb2_grpc.HealthStub(running.channel)
    request = health_pb2.HealthCheckRequest(service="wasessions.v1.SessionService")
    async with asyncio.timeout(timeout):
        async for reply in health.Watch(request):
            if reply.status == status:
                return


async def _refused_write(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    code, reason, _ = error_info(raised.value)
    assert code in FULL_CODES, raised.value
    assert "disk" in (raised.value.details() or "") or "log" in (raised.value.details() or "")
    return code, reason


async def test_disk_full_refuses_writes_damages_nothing_and_recovers(
    small_disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = small_disk.root / "data"
    running = await start_server(data_dir, CONFIG)
    try:
        linked = await running.linked("before")
        creds_before = (running.creds_dir("before") / "creds.json").read_bytes()
        await running.create("labelled", skip_start=True, labels={"a": "1"})
        await running.create("waiting")
        await running.wait_state("waiting", S.QR_PENDING)

        small_disk.fill(running)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            refused = await _refused_write(running.create("during", skip_start=True))
            assert refused == (grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE")
            refused = await _refused_write(
                running.sessions.UpdateSession(
                    svc.UpdateSessionRequest(
                        name="sessions/labelled",
                        labels={"a": "2"},
                        update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
                    )
                )
            )
            assert refused == (grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE")
            # Pairing writes credentials: it fails cleanly too.
            refused = await _refused_write(
                running.sim.ScanQrCode(sim.ScanQrCodeRequest(name="sessions/waiting"))
            )
            assert refused == (grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE")
            # While the store cannot be written, SessionService says so.
            assert await _session_service_health(running) == NOT_SERVING
            assert await _session_service_health(running, service="") == SERVING
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("NOT_SERVING" in e for e in errors), errors
        for method in ("CreateSession", "UpdateSession", "ScanQrCode"):
            lines = [e for e in errors if e.startswith(f"{method}: storage failed")]
            assert lines, caplog.text
            # The log line says what happened, in the words of the OS or SQLite.
            assert "full" in lines[0] or "No space" in lines[0], lines[0]

        # What was stored is intact, and reads still work.
        assert (await running.get("labelled")).labels == {"a": "1"}
        assert (await running.get("before")).state == S.CONNECTED
        assert (running.creds_dir("before") / "creds.json").read_bytes() == creds_before
        assert not (running.creds_dir("waiting") / "creds.json").exists()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await running.get("during")
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND

        small_disk.free()
        # Space is back: health says so by itself, before anything else is written.
        await _wait_health(running, SERVING)
        # And the same writes now succeed.
        assert (await running.create("after", skip_start=True)).state == S.STOPPED
        updated = await running.sessions.UpdateSession(
            svc.UpdateSessionRequest(
                name="sessions/labelled",
                labels={"a": "3"},
                update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
            )
        )
        assert updated.labels == {"a": "3"}
        await running.sim.ScanQrCode(sim.ScanQrCodeRequest(name="sessions/waiting"))
        await running.wait_state("waiting", S.CONNECTED)
    finally:
        await stop_server(running)

    db = sqlite3.connect(data_dir / "wasessions.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [r[0] for r in db.execute("SELECT seq FROM journal ORDER BY seq")]
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a gap in the journal"
    finally:
        db.close()
    # A restart finds everything that was stored, and nothing that was refused.
    again = await start_server(data_dir, CONFIG)
    try:
        listed = await again.sessions.ListSessions(svc.ListSessionsRequest())
        assert [s.name for s in listed.sessions] == [
            "sessions/after",
            "sessions/before",
            "sessions/labelled",
            "sessions/waiting",
        ]
        assert (await again.get("labelled")).labels == {"a": "3"}
        restored = await again.wait_state("before", S.CONNECTED)
        assert restored.account.jid == linked.account.jid
        await again.wait_state("waiting", S.CONNECTED)
    finally:
        await stop_server(again)


async def test_a_close_the_store_refuses_is_not_served_as_connected_and_is_stored_later(
    small_disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    # A long backoff: after the close the session stays RECONNECTING, its truth does not move.
    config = {**CONFIG, "policy": {"default": {"initial_delay_s": 30.0, "max_delay_s": 30.0}}}
    running = await start_server(small_disk.root / "data", config)
    try:
        await running.linked("s1")
        await running.create("other", skip_start=True)
        health = health_pb2_grpc.HealthStub(running.channel).Watch(
            health_pb2.HealthCheckRequest(service="sessions/s1")
        )
        serving = health_pb2.HealthCheckResponse.SERVING
        assert (await health.read()).status == serving
        small_disk.fill(running)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="wasessions_server.sessions"):
            await running.inject("s1", 428)
            # The close happened but could not be stored: no read serves the stale CONNECTED.
            deadline = asyncio.get_running_loop().time() + 5.0
            while True:
                try:
                    session = await running.get("s1")
                except grpc.aio.AioRpcError as error:
                    assert error_info(error)[:2] == (
                        grpc.StatusCode.UNAVAILABLE,
                        "STORAGE_UNAVAILABLE",
                    )
                    break
                assert session.state == S.CONNECTED
                assert asyncio.get_running_loop().time() < deadline, "the close never showed"
                await asyncio.sleep(0.01)
            for call in (
                running.sessions.ListSessions(svc.ListSessionsRequest()),
                running.sessions.WatchQrCodes(svc.WatchQrCodesRequest(name="sessions/s1")).read(),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await call
                assert error_info(raised.value)[:2] == (
                    grpc.StatusCode.UNAVAILABLE,
                    "STORAGE_UNAVAILABLE",
                )
            # Its health no longer says SERVING either.
            status = await asyncio.wait_for(health.read(), 5.0)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            health.cancel()
            # Another session, whose state is stored and true, is still read.
            assert (await running.get("other")).state == S.STOPPED
            await asyncio.sleep(0.5)  # retried in the background meanwhile: one ERROR line
            refused = [
                r
                for r in caplog.records
                if r.levelno >= logging.ERROR and r.name == "wasessions_server.sessions.session"
            ]
            assert len(refused) == 1, caplog.text
            assert "could not be stored" in refused[0].getMessage()

            small_disk.free()
            # Stored as soon as the store takes writes again, not at the next change.
            async with asyncio.timeout(3.0):
                while True:
                    try:
                        session = await running.get("s1")
                        break
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.02)
            assert session.state == S.RECONNECTING
            assert session.last_disconnect.code == 428
            assert any("stored again" in r.getMessage() for r in caplog.records), caplog.text
            listed = await running.sessions.ListSessions(svc.ListSessionsRequest())
            assert [s.state for s in listed.sessions] == [S.STOPPED, S.RECONNECTING]
    finally:
        await stop_server(running)
