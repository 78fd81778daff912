"""kill -9 the server again and again while sessions pair, disconnect and reconnect; after each
restart: SQLite passes integrity_check, no credential file is torn, every running session with
credentials is restored, and the journal has no gap a resume could fall into silently."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import pytest
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions_server.events import parse_token

from tests.helpers import S, merge, spawn_server, write_config
from tests.security_helpers import SIM_FAST, terminate
from tests.test_security_data import SyncClient

CYCLES = int(os.environ.get("WASESSIONS_KILL_CYCLES", "6"))
RUNNING_STATES = {"CONNECTING", "QR_PENDING", "PAIRING", "CONNECTED", "RECONNECTING"}
CODES = [428, 503, 515, 408, 500]


class Workload:
    """Pairs, disconnects and reconnects sessions from a thread until stopped; remembers the
    newest resume token a watcher saw."""

    def __init__(self, target: str, cycle: int, rng: random.Random) -> None:
        self.client = SyncClient(target)
        self.cycle = cycle
        self.rng = rng
        self.stop = threading.Event()
        self.token = ""
        self.calls = 0
        self._threads = [
            threading.Thread(target=self._work, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(20)
        self.client.channel.close()

    def _watch(self) -> None:
        with contextlib.suppress(grpc.RpcError, ValueError):
            for item in self.client.sessions.WatchSessions(svc.WatchSessionsRequest()):
                self.token = item.resume_token
                if self.stop.is_set():
                    return

    def _work(self) -> None:
        number = 0
        while not self.stop.is_set():
            try:
                self._step(number)
            except (grpc.RpcError, ValueError):
                if self.stop.is_set():
                    return
                time.sleep(0.01)
            number += 1

    def _step(self, number: int) -> None:
        sessions, sim_ = self.client.sessions, self.client.sim
        op = self.rng.random()
        if op < 0.3:
            sessions.CreateSession(
                svc.CreateSessionRequest(session_id=f"c{self.cycle}-{number}"), timeout=5
            )
        listed = sessions.ListSessions(svc.ListSessionsRequest(page_size=1000), timeout=5)
        for session in listed.sessions:
            if session.state == S.QR_PENDING:
                with contextlib.suppress(grpc.RpcError):
                    sim_.ScanQrCode(sim.ScanQrCodeRequest(name=session.name), timeout=5)
        connected = [s.name for s in listed.sessions if s.state == S.CONNECTED]
        if connected and op > 0.5:
            sim_.InjectDisconnect(
                sim.InjectDisconnectRequest(
                    name=self.rng.choice(connected), code=self.rng.choice(CODES)
                ),
                timeout=5,
            )
        stopped = [s.name for s in listed.sessions if s.state in (S.STOPPED, S.FAILED)]
        if stopped and op > 0.9:
            sessions.StartSession(svc.StartSessionRequest(name=self.rng.choice(stopped)), timeout=5)
        self.calls += 1
        time.sleep(0.01)


def _check_at_rest(data_dir: Path) -> tuple[set[str], int]:
    """Checks the data directory of a dead server; returns the sessions that must be restored
    and the journal head."""
    db = sqlite3.connect(data_dir / "wasessions.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [row[0] for row in db.execute("SELECT seq FROM journal ORDER BY seq")]
        head_row = db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        records = [json.loads(r[0]) for r in db.execute("SELECT record FROM sessions")]
    finally:
        db.close()
    head = int(head_row[0]) if head_row else 0
    if seqs:
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a gap in the journal"
        assert seqs[-1] == head
    creds_root = data_dir / "credentials"
    with_creds = set()
    for folder in creds_root.iterdir() if creds_root.exists() else ():
        if folder.name.startswith(".trash-"):
            continue
        for file in folder.iterdir():
            if file.name.endswith(".tmp"):
                continue  # an abandoned temp file: swept at start, never read
            creds = json.loads(file.read_bytes())  # torn files do not parse
            assert {"jid", "token", "nonce"} <= set(creds), file
            with_creds.add(folder.name)
    world = data_dir / "engines" / "sim" / "world.json"
    if world.exists():
        assert "secret" in json.loads(world.read_bytes())
    must_restore = {
        r["session_id"]
        for r in records
        if r["state"] in RUNNING_STATES and r["session_id"] in with_creds
    }
    return must_restore, head


def _check_resume(client: SyncClient, token: str, head: int) -> None:
    """A token from before the crash resumes without a resync and without a gap."""
    point = parse_token(token)
    assert point is not None and point.seq <= head
    stream = client.sessions.WatchSessions(svc.WatchSessionsRequest(resume_token=token), timeout=30)
    expected = point.seq
    try:
        for item in stream:
            kind = item.WhichOneof("event")
            assert kind not in ("resync", "snapshot", "snapshot_complete"), kind
            seq = parse_token(item.resume_token)
            assert seq is not None
            if kind in ("change", "deleted"):
                assert seq.seq == expected + 1, f"gap: {expected} -> {seq.seq}"
                expected = seq.seq
            elif kind == "heartbeat" and expected >= head:
                break
    finally:
        stream.cancel()


@pytest.mark.slow
def test_kill_9_again_and_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "config.toml",
        merge(SIM_FAST, {"manager": {"restore_jitter_s": 0.2}, "qr": {"first_timeout_s": 2.0}}),
    )
    rng = random.Random(20261126)
    total_calls = 0
    token = ""
    restored_total = 0
    for cycle in range(CYCLES + 1):
        must_restore: set[str] = set()
        head = 0
        if cycle:
            must_restore, head = _check_at_rest(data_dir)
        server = spawn_server(data_dir, config)
        client = SyncClient(server.target)
        for session_id in sorted(must_restore):
            client.wait_state(session_id, S.CONNECTED, timeout=30)
        restored_total += len(must_restore)
        if token:
            _check_resume(client, token, head)
        if cycle == CYCLES:
            client.channel.close()
            assert terminate(server.process, server.target) == 0
            break
        work = Workload(server.target, cycle, rng)
        work.start()
        time.sleep(rng.uniform(0.5, 1.5))
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        work.join()
        client.channel.close()
        total_calls += work.calls
        token = work.token or token
    print(f"kill loop: {total_calls} steps, {restored_total} restores")
    # The loop did real work: sessions were linked, and restored after kills.
    assert total_calls > CYCLES
    assert restored_total > 0
    final, _ = _check_at_rest(data_dir)
    assert final  # linked sessions survived every kill
