"""The messages layer without a gRPC server: a scripted engine (tests/fake_engine.py), the
session registry, the in-memory store, and every outbox, inbox and receipt semantic.

Pacing is off (`max_per_minute=0`) unless the test is about pacing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from wasessions_server.config import config_from_mapping
from wasessions_server.engines import Opened
from wasessions_server.engines.base import (
    MessageReceived,
    Receipt,
    ReceiptKind,
    SendInterrupted,
    SendOutcomeUnknown,
    SendRefused,
)
from wasessions_server.errors import ConfigError, ServiceError, Status
from wasessions_server.events import (
    Event,
    EventJournal,
    MessageJournal,
    MessageResync,
    ResumePoint,
    Started,
)
from wasessions_server.message_model import (
    Direction,
    EventType,
    MessageEntry,
    MessageRecord,
    MessageStatus,
)
from wasessions_server.messages import Messages, MessageSettings, Outgoing
from wasessions_server.model import State
from wasessions_server.sessions import SessionRegistry
from wasessions_server.store import FileCredentialStore, MemoryStore, SqliteStore

from tests.fake_engine import ACCOUNT, FakeEngine, Step, closed
from tests.test_sessions_unit import fast, in_state, linked_then, until

BOB = "15551234567@s.whatsapp.net"
CAROL = "15557654321@s.whatsapp.net"
NO_PACING = MessageSettings(max_per_minute=0)


class World:
    def __init__(self, registry: SessionRegistry, messages: Messages, engine: FakeEngine) -> None:
        self.registry = registry
        self.messages = messages
        self.engine = engine

    async def linked(self, session_id: str = "s1") -> None:
        await self.registry.create(session_id, labels={}, engine="", start=True, request_id="")
        await until(self.registry, session_id, in_state(State.CONNECTED))

    async def send(self, text: str = "hi", session_id: str = "s1", **kw: object) -> MessageRecord:
        outgoing = Outgoing(chat=kw.pop("chat", BOB), text=text, **kw)  # type: ignore[arg-type]
        return await self.messages.send(session_id, outgoing)

    async def status(
        self, record: MessageRecord, status: MessageStatus, timeout: float = 5.0
    ) -> MessageRecord:
        deadline = time.monotonic() + timeout
        while True:
            current = await self.messages.get(record.session_id, record.message_id)
            if current.status is status:
                return current
            assert time.monotonic() < deadline, current
            await asyncio.sleep(0.005)


WorldFactory = Callable[..., Awaitable[World]]


def opens(n: int) -> list[Step]:
    return [Opened(ACCOUNT)]


@pytest.fixture
async def make_world(
    session_store: MemoryStore, session_journal: EventJournal, tmp_path: Path
) -> AsyncIterator[WorldFactory]:
    made: list[SessionRegistry] = []

    async def factory(
        engine: FakeEngine | None = None, settings: MessageSettings = NO_PACING
    ) -> World:
        engine = engine or FakeEngine(linked_then(opens))
        messages = Messages(await MessageJournal.open(session_store), settings)
        registry = SessionRegistry(
            session_journal,
            FileCredentialStore(tmp_path / "credentials"),
            {"fake": engine},
            fast(),
            default_engine="fake",
            messages=messages,
        )
        await registry.start()
        made.append(registry)
        return World(registry, messages, engine)

    yield factory
    for registry in made:
        await registry.shutdown()


# The outbox ----------------------------------------------------------------------------------


async def test_a_message_is_queued_durably_then_sent_in_order_under_its_queued_id(
    make_world: WorldFactory, session_store: MemoryStore
) -> None:
    world = await make_world()
    await world.linked()
    world.engine.send_gate.clear()  # WhatsApp is slow: the reply comes before any send
    first = await world.send("one")
    assert first.status is MessageStatus.QUEUED and first.whatsapp_id.startswith("3EB0")
    stored = await session_store.get_message("s1", first.message_id)
    assert stored is not None and stored.status in (MessageStatus.QUEUED, MessageStatus.SENDING)
    others = [await world.send(t) for t in ("two", "three")]
    world.engine.send_gate.set()
    for record in [first, *others]:
        sent = await world.status(record, MessageStatus.SENT)
        assert sent.whatsapp_id == record.whatsapp_id and sent.attempts == 1
        assert sent.sent_time is not None
    assert [m.text for _, m in world.engine.sent] == ["one", "two", "three"]


async def test_a_session_without_credentials_cannot_send(make_world: WorldFactory) -> None:
    world = await make_world()
    await world.registry.create("s1", labels={}, engine="", start=False, request_id="")
    with pytest.raises(ServiceError) as caught:
        await world.send()
    assert (caught.value.status, caught.value.reason) == (
        Status.FAILED_PRECONDITION,
        "SESSION_NOT_LINKED",
    )
    with pytest.raises(ServiceError) as unknown:
        await world.send(session_id="nobody")
    assert unknown.value.reason == "SESSION_NOT_FOUND"


async def test_request_ids_make_racing_retries_one_message(make_world: WorldFactory) -> None:
    world = await make_world()
    await world.linked()
    retries = await asyncio.gather(*(world.send("hello", request_id="r1") for _ in range(10)))
    assert len({r.message_id for r in retries}) == 1
    await world.status(retries[0], MessageStatus.SENT)
    assert len(world.engine.sent) == 1
    again = await world.send("hello", request_id="r1")
    assert again.message_id == retries[0].message_id
    with pytest.raises(ServiceError) as caught:
        await world.send("other text", request_id="r1")
    assert (caught.value.status, caught.value.reason) == (
        Status.ALREADY_EXISTS,
        "REQUEST_ID_REUSED",
    )
    with pytest.raises(ServiceError):
        await world.send("hello", request_id="r1", chat=CAROL)


async def test_a_stopped_session_keeps_its_queue_until_it_connects(
    make_world: WorldFactory,
) -> None:
    world = await make_world()
    await world.linked()
    await world.registry.stop_session("s1")
    queued = await world.send("later")
    await asyncio.sleep(0.1)
    assert (await world.status(queued, MessageStatus.QUEUED)).attempts == 0
    assert world.engine.sent == []
    await world.registry.start_session("s1", relink=False)
    await world.status(queued, MessageStatus.SENT)


async def test_an_interrupted_send_goes_again_after_the_reconnect_under_the_same_id(
    make_world: WorldFactory,
) -> None:
    engine = FakeEngine(linked_then(opens))
    engine.send_failures.append(SendInterrupted("gone"))
    world = await make_world(engine)
    await world.linked()
    record = await world.send("once")
    sent = await world.status(record, MessageStatus.SENT)
    assert sent.attempts == 2
    assert [m.whatsapp_id for _, m in engine.sent] == [record.whatsapp_id]


async def test_a_lost_outcome_is_resent_under_the_same_id_where_the_engine_fixes_ids(
    make_world: WorldFactory,
) -> None:
    engine = FakeEngine(linked_then(opens))
    engine.send_failures.append(SendOutcomeUnknown("maybe"))
    world = await make_world(engine)
    await world.linked()
    record = await world.send("once")
    sent = await world.status(record, MessageStatus.SENT)
    # NOTE: WhatsApp got two copies under one id: the recipient sees one message.
    assert [m.whatsapp_id for _, m in engine.sent] == [record.whatsapp_id] * 2
    assert sent.attempts == 2


async def test_a_lost_outcome_fails_where_the_engine_cannot_fix_ids(
    make_world: WorldFactory,
) -> None:
    engine = FakeEngine(linked_then(opens), fixes_message_ids=False)
    engine.send_failures.append(SendOutcomeUnknown("maybe"))
    world = await make_world(engine)
    await world.linked()
    record = await world.send("once")
    assert record.whatsapp_id == ""
    failed = await world.status(record, MessageStatus.FAILED)
    assert failed.error is not None and failed.error.reason == "SEND_OUTCOME_UNKNOWN"
    await asyncio.sleep(0.2)
    assert len(engine.sent) == 1  # never resent blindly


async def test_attempts_are_bounded(make_world: WorldFactory) -> None:
    engine = FakeEngine(linked_then(opens))
    engine.send_failures.extend(SendInterrupted("gone") for _ in range(3))
    world = await make_world(engine, MessageSettings(max_per_minute=0, max_attempts=2))
    await world.linked()
    record = await world.send("doomed")
    failed = await world.status(record, MessageStatus.FAILED)
    assert failed.error is not None and failed.error.reason == "SEND_ATTEMPTS_EXHAUSTED"
    assert failed.attempts == 2


async def test_a_refusal_is_final_with_its_reason(make_world: WorldFactory) -> None:
    engine = FakeEngine(linked_then(opens))
    engine.send_failures.append(SendRefused("not on WhatsApp", 404))
    world = await make_world(engine)
    await world.linked()
    refused = await world.send("to nobody")
    after = await world.send("next one")
    failed = await world.status(refused, MessageStatus.FAILED)
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == (404, "not on WhatsApp")
    await world.status(after, MessageStatus.SENT)  # the queue goes on


async def test_ttl_expires_a_queued_message(make_world: WorldFactory) -> None:
    world = await make_world()
    await world.linked()
    await world.registry.stop_session("s1")
    record = await world.send("short-lived", ttl_s=0.2)
    expired = await world.status(record, MessageStatus.EXPIRED, timeout=3.0)
    assert expired.error is not None and expired.error.reason == "MESSAGE_EXPIRED"
    await world.registry.start_session("s1", relink=False)
    await until(world.registry, "s1", in_state(State.CONNECTED))
    await asyncio.sleep(0.1)
    assert world.engine.sent == []


async def test_cancel_only_a_queued_message(make_world: WorldFactory) -> None:
    world = await make_world()
    await world.linked()
    await world.registry.stop_session("s1")
    record = await world.send("never")
    cancelled = await world.messages.cancel("s1", record.message_id)
    assert cancelled.status is MessageStatus.CANCELLED
    with pytest.raises(ServiceError) as caught:
        await world.messages.cancel("s1", record.message_id)
    assert (caught.value.status, caught.value.reason) == (
        Status.FAILED_PRECONDITION,
        "MESSAGE_NOT_QUEUED",
    )
    await world.registry.start_session("s1", relink=False)
    await until(world.registry, "s1", in_state(State.CONNECTED))
    await asyncio.sleep(0.1)
    assert world.engine.sent == []


async def test_pacing_spaces_sends_without_bursts(make_world: WorldFactory) -> None:
    world = await make_world(settings=MessageSettings(max_per_minute=600))  # 0.1 s on average
    await world.linked()
    records = [await world.send(str(i)) for i in range(4)]
    for record in records:
        await world.status(record, MessageStatus.SENT)
    times = sorted([(await world.messages.get("s1", r.message_id)).sent_time or 0 for r in records])
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.05 - 0.005, gaps  # jitter keeps every gap at least half the mean


async def test_logout_and_relink_fail_the_queue_and_delete_removes_it(
    make_world: WorldFactory, session_store: MemoryStore
) -> None:
    world = await make_world()
    await world.linked("a")
    await world.linked("b")
    await world.registry.stop_session("a")
    await world.registry.stop_session("b")
    logged_out = await world.send("x", session_id="a")
    relinked = await world.send("y", session_id="b")
    await world.registry.logout_session("a")
    failed = await world.status(logged_out, MessageStatus.FAILED)
    assert failed.error is not None and failed.error.reason == "SESSION_LOGGED_OUT"
    await world.registry.start_session("b", relink=True)
    failed = await world.status(relinked, MessageStatus.FAILED)
    assert failed.error is not None and failed.error.reason == "SESSION_RELINKED"
    await world.registry.delete_session("b")
    assert await session_store.get_message("b", relinked.message_id) is None


async def test_a_401_while_connected_fails_the_queue(make_world: WorldFactory) -> None:
    world = await make_world()
    await world.linked()
    world.engine.send_gate.clear()
    first = await world.send("in flight")
    second = await world.send("queued")
    world.engine.live("s1").push(closed(401))
    await until(world.registry, "s1", in_state(State.LOGGED_OUT))
    failed = await world.status(second, MessageStatus.FAILED)
    assert failed.error is not None and failed.error.reason == "SESSION_LOGGED_OUT"
    world.engine.send_gate.set()
    deadline = time.monotonic() + 5
    while (final := await world.messages.get("s1", first.message_id)).status is (
        MessageStatus.SENDING
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    # NOTE: the send in flight when the 401 came ends by its own outcome (WhatsApp took it).
    assert final.status is MessageStatus.SENT


# The inbox and receipts ----------------------------------------------------------------------


def _inbound(whatsapp_id: str, text: str = "hello") -> MessageReceived:
    return MessageReceived(whatsapp_id, CAROL, CAROL, time.time(), text=text)


async def test_redeliveries_are_stored_once_and_mark_read_waits_for_a_connection(
    make_world: WorldFactory,
) -> None:
    world = await make_world()
    await world.linked()
    connection = world.engine.live("s1")
    for _ in range(3):
        connection.push(_inbound("W1"))
    connection.push(_inbound("W2", "second"))
    deadline = time.monotonic() + 5
    while True:
        page, _ = await world.messages.list_page("s1", None, "INBOUND", frozenset(), None, 10)
        if len(page) == 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    assert sorted(m.whatsapp_id for m in page) == ["W1", "W2"]
    assert all(
        m.status is MessageStatus.RECEIVED and m.direction is Direction.INBOUND for m in page
    )
    await world.registry.stop_session("s1")
    first = next(m for m in page if m.whatsapp_id == "W1")
    await world.messages.mark_read("s1", [first.message_id])
    await asyncio.sleep(0.05)
    assert world.engine.read == []
    await world.registry.start_session("s1", relink=False)
    read = await world.status(first, MessageStatus.READ)
    assert read.read_time is not None
    assert world.engine.read == [("s1", CAROL, CAROL, ("W1",))]


async def test_receipts_only_move_forward(make_world: WorldFactory) -> None:
    world = await make_world()
    await world.linked()
    record = await world.send("hi")
    await world.status(record, MessageStatus.SENT)
    connection = world.engine.live("s1")
    ids = (record.whatsapp_id,)
    for kind in (ReceiptKind.READ, ReceiptKind.DELIVERED):
        connection.push(Receipt(BOB, ids, kind, time.time()))
    await world.status(record, MessageStatus.READ)
    await asyncio.sleep(0.05)
    final = await world.status(record, MessageStatus.READ)
    assert final.delivered_time is not None and final.read_time is not None


# WatchMessages -------------------------------------------------------------------------------


async def test_watch_starts_at_the_present_and_resumes_every_event_in_order(
    make_world: WorldFactory,
) -> None:
    world = await make_world()
    await world.linked()
    stream = world.messages.watch(None, None, 0.2)
    started = await anext(stream)
    assert isinstance(started, Started)
    await world.registry.stop_session("s1")
    records = [await world.send(str(i)) for i in range(300)]  # more than a replay chunk
    # NOTE: a slow consumer: everything was written before it reads one event.
    seen: list[MessageEntry] = []
    while len(seen) < 300:
        item = await anext(stream)
        assert isinstance(item, Event), item
        seen.append(item.entry)
    assert [e.record.message_id for e in seen] == [r.message_id for r in records]
    assert all(e.type is EventType.QUEUED for e in seen)
    await stream.aclose()
    resumed = world.messages.watch(
        "s1", ResumePoint(world.messages.journal.journal_id, seen[99].seq), 0.2
    )
    replay = [await anext(resumed) for _ in range(200)]
    assert [i.entry.seq for i in replay if isinstance(i, Event)] == [e.seq for e in seen[100:]]
    await resumed.aclose()


async def test_a_pruned_or_foreign_token_gets_a_resync(
    make_world: WorldFactory, session_store: MemoryStore
) -> None:
    world = await make_world()
    await world.linked()
    await world.registry.stop_session("s1")
    await world.send("old")
    await session_store.prune_messages(time.time() + 1)
    journal_id = world.messages.journal.journal_id
    stream = world.messages.watch(None, ResumePoint(journal_id, 0), 0.2)
    first = await anext(stream)
    assert isinstance(first, MessageResync) and first.reason == "TOKEN_EXPIRED"
    await stream.aclose()
    other = world.messages.watch(None, ResumePoint("0" * 32, 0), 0.2)
    first = await anext(other)
    assert isinstance(first, MessageResync) and first.reason == "TOKEN_FROM_OTHER_JOURNAL"
    await other.aclose()


# The store after a crash ---------------------------------------------------------------------


async def test_a_send_cut_by_a_crash_goes_again_only_under_a_fixed_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    now = time.time()

    def sending(message_id: str, whatsapp_id: str) -> MessageRecord:
        return MessageRecord(
            "s1",
            message_id,
            Direction.OUTBOUND,
            MessageStatus.SENDING,
            BOB,
            whatsapp_id=whatsapp_id,
            text="t",
            attempts=1,
            create_time=now,
            update_time=now,
            expire_time=now + 60,
        )

    await store.write_messages(
        [
            MessageEntry(1, EventType.QUEUED, sending("fixed", "3EB0AA"), now),
            MessageEntry(2, EventType.QUEUED, sending("unfixed", ""), now),
        ]
    )
    messages = Messages(await MessageJournal.open(store), NO_PACING)
    messages.attach(lambda sid: (_ for _ in ()).throw(AssertionError(sid)), lambda sid: True)
    await messages.start()
    fixed = await store.get_message("s1", "fixed")
    unfixed = await store.get_message("s1", "unfixed")
    assert fixed is not None and fixed.status is MessageStatus.QUEUED
    assert unfixed is not None and unfixed.status is MessageStatus.FAILED
    assert unfixed.error is not None and unfixed.error.reason == "SEND_OUTCOME_UNKNOWN"
    assert (await store.message_bounds())[1] == 4
    await messages.shutdown()
    await store.close()


# Configuration -------------------------------------------------------------------------------


def test_the_messages_section_is_validated_like_every_other() -> None:
    assert config_from_mapping({}).messages == MessageSettings(20, 86_400.0, 5, 7.0)
    given = config_from_mapping({"messages": {"max_per_minute": 0, "retention_days": 1}})
    assert (given.messages.max_per_minute, given.messages.retention_s) == (0, 86_400.0)
    for bad, key in (
        ({"max_per_minute": -1}, "messages.max_per_minute"),
        ({"max_attempts": 0}, "messages.max_attempts"),
        ({"pace": 1}, "messages"),
        ({"default_ttl_s": 10 * 86_400.0}, "messages.default_ttl_s"),
    ):
        with pytest.raises(ConfigError) as caught:
            config_from_mapping({"messages": bad})
        assert str(caught.value).startswith(key), caught.value
