"""kill -9 the server (a real process) while 200 messages are queued and being sent: after the
restart every message acknowledged QUEUED is delivered, each under exactly one whatsapp_id in
the simulated WhatsApp's ListDelivered, none lost; a WatchMessages consumer that stored its
token resumes with no gap and no duplicate. Pacing is off (`max_per_minute = 0`)."""

from __future__ import annotations

import base64
import contextlib
import signal
import threading
import time
from pathlib import Path

import grpc
from wasessions.v1 import message_pb2 as mpb
from wasessions.v1 import message_service_pb2 as msvc
from wasessions.v1 import message_service_pb2_grpc as msvc_grpc
from wasessions.v1 import session_service_pb2 as svc
from wasessions.v1 import session_service_pb2_grpc as svc_grpc
from wasessions.v1 import simulator_service_pb2 as sim
from wasessions.v1 import simulator_service_pb2_grpc as sim_grpc

from tests.helpers import S, ServerProcess, merge, spawn_server, write_config
from tests.security_helpers import SIM_FAST, terminate

M = mpb.Message
COUNT = 200


class Client:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.sessions = svc_grpc.SessionServiceStub(self.channel)
        self.messages = msvc_grpc.MessageServiceStub(self.channel)
        self.sim = sim_grpc.SimulatorServiceStub(self.channel)

    def wait_state(self, session_id: str, state: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            got = self.sessions.GetSession(svc.GetSessionRequest(name=f"sessions/{session_id}"))
            if got.state == state:
                return
            assert time.monotonic() < deadline, got
            time.sleep(0.02)


def _seq(token: str) -> int:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    return int(raw.rsplit(":", 1)[1])


class Consumer:
    """Follows WatchMessages from a thread, keeping every event's token (its stored cursor)."""

    def __init__(self, client: Client, token: str) -> None:
        self.client = client
        self.token = token
        self.seqs: list[int] = []
        self.events: list[mpb.Message] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(20)

    def _run(self) -> None:
        request = msvc.WatchMessagesRequest(parent="sessions/-", resume_token=self.token)
        with contextlib.suppress(grpc.RpcError, ValueError):
            for item in self.client.messages.WatchMessages(request):
                if item.WhichOneof("kind") == "event":
                    self.seqs.append(_seq(item.resume_token))
                    self.events.append(item.event.message)
                if item.WhichOneof("kind") != "resync":
                    self.token = item.resume_token


def test_kill_9_while_sending_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", merge(SIM_FAST, {"messages": {"max_per_minute": 0}}))
    server: ServerProcess = spawn_server(data, config)
    client = Client(server.target)
    client.sessions.CreateSession(svc.CreateSessionRequest(session_id="k"))
    client.wait_state("k", S.QR_PENDING)
    client.sim.ScanQrCode(sim.ScanQrCodeRequest(name="sessions/k"))
    client.wait_state("k", S.CONNECTED)
    started = next(
        iter(client.messages.WatchMessages(msvc.WatchMessagesRequest(parent="sessions/-")))
    )
    consumer = Consumer(client, started.resume_token)
    consumer.start()
    acked: dict[str, mpb.Message] = {}

    def send_all() -> None:
        for i in range(COUNT):
            try:
                reply = client.messages.SendMessage(
                    msvc.SendMessageRequest(
                        parent="sessions/k", to="+15551234567", text=f"m{i}", request_id=f"r{i}"
                    )
                )
            except grpc.RpcError:
                return
            acked[f"r{i}"] = reply

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    deadline = time.monotonic() + 20
    while len(acked) < COUNT // 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    sender.join(20)
    consumer.join()
    client.channel.close()
    assert acked, "nothing was acknowledged before the kill"

    server = spawn_server(data, config)
    try:
        client = Client(server.target)
        resumed = Consumer(client, consumer.token)
        resumed.start()
        # The client retries what it never got an answer for, under the same request_id.
        for i in range(COUNT):
            reply = client.messages.SendMessage(
                msvc.SendMessageRequest(
                    parent="sessions/k", to="+15551234567", text=f"m{i}", request_id=f"r{i}"
                )
            )
            if f"r{i}" in acked:
                assert reply.name == acked[f"r{i}"].name
            acked[f"r{i}"] = reply
        deadline = time.monotonic() + 60
        while True:
            final = [
                client.messages.GetMessage(msvc.GetMessageRequest(name=m.name))
                for m in acked.values()
            ]
            if all(m.status == M.SENT for m in final):
                break
            assert time.monotonic() < deadline, [M.Status.Name(m.status) for m in final]
            time.sleep(0.1)
        copies = client.sim.ListDelivered(sim.ListDeliveredRequest(name="sessions/k")).messages
        by_text: dict[str, set[str]] = {}
        for copy in copies:
            by_text.setdefault(copy.text, set()).add(copy.whatsapp_id)
        for i in range(COUNT):
            message = next(m for m in final if m.name == acked[f"r{i}"].name)
            assert by_text.get(f"m{i}") == {message.whatsapp_id}, (i, by_text.get(f"m{i}"))
        time.sleep(1.0)  # the last events reach the consumer
    finally:
        client.channel.close()
        terminate(server.process)
    resumed.join()
    seqs = consumer.seqs + resumed.seqs
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or a duplicate"
    sent_events = {m.name for m in consumer.events + resumed.events if m.status == M.SENT}
    assert sent_events == {m.name for m in acked.values()}


def test_kill_9_while_receiving_stores_every_inbound_message_once(tmp_path: Path) -> None:
    """An inbound message is durable before WhatsApp is told it was handled: what the server
    had not stored comes again after the restart, and a redelivery is stored once."""
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", merge(SIM_FAST, {"messages": {"max_per_minute": 0}}))
    server = spawn_server(data, config)
    client = Client(server.target)
    client.sessions.CreateSession(svc.CreateSessionRequest(session_id="k"))
    client.wait_state("k", S.QR_PENDING)
    client.sim.ScanQrCode(sim.ScanQrCodeRequest(name="sessions/k"))
    client.wait_state("k", S.CONNECTED)
    for i in range(COUNT):
        client.sim.ReceiveMessage(
            sim.ReceiveMessageRequest(
                name="sessions/k", sender="+15557654321", text=f"in{i}", whatsapp_id=f"IN{i}"
            )
        )
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    client.channel.close()
    server = spawn_server(data, config)
    try:
        client = Client(server.target)
        deadline = time.monotonic() + 30
        while True:
            page = client.messages.ListMessages(
                msvc.ListMessagesRequest(parent="sessions/k", direction=M.INBOUND, page_size=1000)
            )
            if len(page.messages) >= COUNT or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # a duplicate, if any, would land now
        page = client.messages.ListMessages(
            msvc.ListMessagesRequest(parent="sessions/k", direction=M.INBOUND, page_size=1000)
        )
        ids = sorted(m.whatsapp_id for m in page.messages)
        assert ids == sorted(f"IN{i}" for i in range(COUNT))
    finally:
        client.channel.close()
        terminate(server.process)
