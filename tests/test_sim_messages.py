"""The sim engine's messages on their own (no server): sends, failures, inbound, receipts.

No pacing is involved: the engine sends when asked; the outbox paces (tested with the server).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
from wasessions_server.engines.base import (
    Closed,
    ConnectTarget,
    EngineEvent,
    MessageReceived,
    Opened,
    OutgoingMessage,
    PairSuccess,
    Qr,
    Receipt,
    ReceiptKind,
    SendInterrupted,
    SendOutcomeUnknown,
    SendRefused,
)
from wasessions_server.engines.sim import Delivery, SimConnection, SimEngine
from wasessions_server.policy import QrSchedule
from wasessions_server.store import FileCredentialVault

CHAT = "15551234567@s.whatsapp.net"
FRIEND = "15557654321@s.whatsapp.net"
Events = AsyncGenerator[EngineEvent, None]


def _engine(tmp_path: Path) -> SimEngine:
    return SimEngine(tmp_path / "sim", QrSchedule(5, 5, 2))


def _vault(tmp_path: Path, session_id: str = "s1") -> FileCredentialVault:
    return FileCredentialVault(tmp_path / "creds" / session_id)


async def _next(events: Events) -> EngineEvent:
    return await asyncio.wait_for(anext(events), 5)


async def _link(engine: SimEngine, vault: FileCredentialVault, session_id: str = "s1") -> None:
    connection = await engine.connect(ConnectTarget(session_id, vault))
    events = connection.events()
    assert isinstance(await _next(events), Qr)
    engine.scan_qr(session_id)
    assert isinstance(await _next(events), PairSuccess)
    assert isinstance(await _next(events), Closed)
    await events.aclose()


async def _open(
    engine: SimEngine, vault: FileCredentialVault, session_id: str = "s1"
) -> tuple[SimConnection, Events]:
    connection = await engine.connect(ConnectTarget(session_id, vault))
    events = connection.events()
    assert isinstance(await _next(events), Opened)
    return connection, events


async def _linked(tmp_path: Path) -> tuple[SimEngine, SimConnection, Events]:
    engine = _engine(tmp_path)
    vault = _vault(tmp_path)
    await _link(engine, vault)
    connection, events = await _open(engine, vault)
    return engine, connection, events


async def test_a_send_is_recorded_under_the_callers_id(tmp_path: Path) -> None:
    engine, connection, _ = await _linked(tmp_path)
    assert engine.fixes_message_ids
    sent = await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    assert sent.whatsapp_id == "3EB0AAAA"
    chosen = await connection.send(OutgoingMessage("", CHAT, reaction_to="3EB0AAAA", reaction="👍"))
    assert chosen.whatsapp_id.startswith("3EB0") and chosen.whatsapp_id != "3EB0AAAA"
    assert engine.delivered("s1") == [
        Delivery("3EB0AAAA", CHAT, "hello"),
        Delivery(chosen.whatsapp_id, CHAT, ""),
    ]
    assert engine.delivered("other") == []
    await engine.aclose()


async def test_copies_under_one_id_are_one_message_for_the_recipient(tmp_path: Path) -> None:
    engine, connection, _ = await _linked(tmp_path)
    for _ in range(3):
        await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    await connection.send(OutgoingMessage("3EB0BBBB", CHAT, text="again"))
    assert len(engine.delivered("s1")) == 4
    assert engine.recipients_view("s1") == [
        Delivery("3EB0AAAA", CHAT, "hello"),
        Delivery("3EB0BBBB", CHAT, "again"),
    ]
    await engine.aclose()


async def test_reject_refuses_count_sends_and_keeps_the_connection(tmp_path: Path) -> None:
    engine, connection, _ = await _linked(tmp_path)
    engine.inject_send_failure("s1", "REJECT", "recipient is not on WhatsApp", 2)
    for _ in range(2):
        with pytest.raises(SendRefused, match="not on WhatsApp"):
            await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    assert engine.delivered("s1") == [Delivery("3EB0AAAA", CHAT, "hello")]
    assert connection.phase == "open"
    await engine.aclose()


async def test_drop_connection_interrupts_before_whatsapp_took_it(tmp_path: Path) -> None:
    engine, connection, events = await _linked(tmp_path)
    engine.inject_send_failure("s1", "DROP_CONNECTION", "", 1)
    with pytest.raises(SendInterrupted):
        await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    closed = await _next(events)
    assert isinstance(closed, Closed) and closed.code == 428
    assert engine.delivered("s1") == []
    with pytest.raises(SendInterrupted):
        await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    await engine.aclose()


async def test_drop_after_accept_delivers_then_leaves_the_outcome_unknown(
    tmp_path: Path,
) -> None:
    engine, connection, events = await _linked(tmp_path)
    engine.inject_send_failure("s1", "DROP_AFTER_ACCEPT", "", 1)
    with pytest.raises(SendOutcomeUnknown):
        await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    closed = await _next(events)
    assert isinstance(closed, Closed) and closed.code == 428
    assert engine.delivered("s1") == [Delivery("3EB0AAAA", CHAT, "hello")]
    # The outbox resends under the same id after the reconnect: one message for the recipient.
    connection, _ = await _open(engine, _vault(tmp_path))
    await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    assert len(engine.delivered("s1")) == 2
    assert engine.recipients_view("s1") == [Delivery("3EB0AAAA", CHAT, "hello")]
    await engine.aclose()


async def test_a_send_while_the_network_is_down_is_interrupted(tmp_path: Path) -> None:
    engine, connection, events = await _linked(tmp_path)
    engine.set_network(False)
    with pytest.raises(SendInterrupted):
        await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    with pytest.raises(SendInterrupted):
        await connection.mark_read(FRIEND, FRIEND, ("3EB0CCCC",))
    closed = await _next(events)
    assert isinstance(closed, Closed) and closed.code == 408
    assert engine.delivered("s1") == []
    await engine.aclose()


async def test_receive_while_connected(tmp_path: Path) -> None:
    engine, _, events = await _linked(tmp_path)
    whatsapp_id = engine.receive("s1", "+15557654321", "hi")
    event = await _next(events)
    assert isinstance(event, MessageReceived)
    assert (event.whatsapp_id, event.chat, event.sender, event.text) == (
        whatsapp_id,
        FRIEND,
        FRIEND,
        "hi",
    )
    # A repeated id is a redelivery: the same message again.
    assert engine.receive("s1", FRIEND, "hi", whatsapp_id) == whatsapp_id
    again = await _next(events)
    assert isinstance(again, MessageReceived) and again.whatsapp_id == whatsapp_id
    await engine.aclose()


async def test_receive_while_not_connected_arrives_at_the_next_connect(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    vault = _vault(tmp_path)
    await _link(engine, vault)
    first = engine.receive("s1", FRIEND, "one")
    second = engine.receive("s1", FRIEND, "two", "ABC123")
    assert second == "ABC123"
    _, events = await _open(engine, vault)
    got = [await _next(events), await _next(events)]
    assert [(e.whatsapp_id, e.text) for e in got if isinstance(e, MessageReceived)] == [
        (first, "one"),
        ("ABC123", "two"),
    ]
    await engine.aclose()


async def test_a_message_is_handled_only_once_the_consumer_reads_on(tmp_path: Path) -> None:
    engine, connection, events = await _linked(tmp_path)
    vault = _vault(tmp_path)
    whatsapp_id = engine.receive("s1", FRIEND, "hi")
    assert isinstance(await _next(events), MessageReceived)
    # The consumer stops without asking for the next event: WhatsApp delivers it again.
    await events.aclose()
    await connection.close()
    connection, events = await _open(engine, vault)
    event = await _next(events)
    assert isinstance(event, MessageReceived) and event.whatsapp_id == whatsapp_id
    # Reading on (here: to the close) hands it back as handled: not delivered again.
    engine.inject_disconnect("s1", 428, "")
    assert isinstance(await _next(events), Closed)
    _, events = await _open(engine, vault)
    later = engine.receive("s1", FRIEND, "later")
    event = await _next(events)
    assert isinstance(event, MessageReceived) and event.whatsapp_id == later
    await engine.aclose()


async def test_acknowledge_sends_a_receipt_now_or_at_the_next_connect(tmp_path: Path) -> None:
    engine, connection, events = await _linked(tmp_path)
    await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    engine.acknowledge("s1", CHAT, ["3EB0AAAA"], "DELIVERED")
    receipt = await _next(events)
    assert isinstance(receipt, Receipt)
    assert (receipt.chat, receipt.whatsapp_ids, receipt.kind) == (
        CHAT,
        ("3EB0AAAA",),
        ReceiptKind.DELIVERED,
    )
    await events.aclose()
    await connection.close()
    engine.acknowledge("s1", CHAT, ["3EB0AAAA"], ReceiptKind.READ)
    _, events = await _open(engine, _vault(tmp_path))
    # The DELIVERED one was never read past: it comes again, then the READ.
    kinds = [await _next(events), await _next(events)]
    assert [r.kind for r in kinds if isinstance(r, Receipt)] == [
        ReceiptKind.DELIVERED,
        ReceiptKind.READ,
    ]
    await engine.aclose()


async def test_mark_read_sends_read_receipts(tmp_path: Path) -> None:
    engine, connection, _ = await _linked(tmp_path)
    await connection.mark_read(FRIEND, FRIEND, ("A1", "A2"))
    assert engine.read_receipts("s1") == [(FRIEND, FRIEND, ("A1", "A2"))]
    await connection.close()
    with pytest.raises(SendInterrupted):
        await connection.mark_read(FRIEND, FRIEND, ("A3",))
    await engine.aclose()


async def test_deliveries_and_pending_messages_outlive_the_engine(tmp_path: Path) -> None:
    engine, connection, _ = await _linked(tmp_path)
    await connection.send(OutgoingMessage("3EB0AAAA", CHAT, text="hello"))
    await connection.close()
    whatsapp_id = engine.receive("s1", FRIEND, "while away")
    await engine.aclose()

    engine = _engine(tmp_path)
    assert engine.delivered("s1") == [Delivery("3EB0AAAA", CHAT, "hello")]
    _, events = await _open(engine, _vault(tmp_path))
    event = await _next(events)
    assert isinstance(event, MessageReceived) and event.whatsapp_id == whatsapp_id
    await engine.aclose()


_KILLED_AFTER_SEND = """
import asyncio, os, signal, sys
from pathlib import Path
from wasessions_server.engines.base import ConnectTarget, OutgoingMessage
from wasessions_server.engines.sim import SimEngine
from wasessions_server.policy import QrSchedule
from wasessions_server.store import FileCredentialVault

async def main() -> None:
    root = Path(sys.argv[1])
    engine = SimEngine(root / "sim", QrSchedule(5, 5, 2))
    connection = await engine.connect(ConnectTarget("s1", FileCredentialVault(root / "creds/s1")))
    events = connection.events()
    await anext(events)  # Opened
    await connection.send(OutgoingMessage("3EB0AAAA", "15551234567@s.whatsapp.net", text="x"))
    engine.receive("s1", "+15557654321", "in", "IN1")
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_deliveries_and_inbound_messages_survive_a_kill_9(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    await _link(engine, _vault(tmp_path))
    await engine.aclose()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_AFTER_SEND, str(tmp_path), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    engine = _engine(tmp_path)
    assert engine.delivered("s1") == [Delivery("3EB0AAAA", CHAT, "x")]
    _, events = await _open(engine, _vault(tmp_path))
    event = await _next(events)
    assert isinstance(event, MessageReceived) and event.whatsapp_id == "IN1"
    await engine.aclose()
