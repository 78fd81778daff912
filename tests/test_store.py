"""The `SessionStore` and `MessageStore` contracts, checked the same way for every
implementation (SQLite and the in-memory store today; PostgreSQL joins the parametrisation in
cluster mode)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from wasessions_server.errors import StorageError
from wasessions_server.events import EventJournal, MessageJournal
from wasessions_server.message_model import (
    Direction,
    EventType,
    MessageEntry,
    MessageRecord,
    MessageStatus,
)
from wasessions_server.model import Cause, JournalEntry, SessionRecord, State
from wasessions_server.store import MemoryStore, MessageStore, SessionStore, SqliteStore


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    opened: SessionStore = (
        SqliteStore(tmp_path / "store.db") if request.param == "sqlite" else MemoryStore()
    )
    yield opened
    await opened.close()


def _record(session_id: str, state: State = State.STOPPED, **labels: str) -> SessionRecord:
    return SessionRecord(session_id=session_id, engine="sim", state=state, labels=labels)


def _entry(seq: int, record: SessionRecord | None, session_id: str = "") -> JournalEntry:
    sid = record.session_id if record is not None else session_id
    return JournalEntry(seq, sid, Cause.CREATED if record else Cause.DELETED, record, float(seq))


async def test_batches_apply_to_the_registry_and_the_journal(store: SessionStore) -> None:
    assert await store.load_sessions() == []
    assert await store.bounds() == (1, 0)
    await store.write_batch([_entry(1, _record("b")), _entry(2, _record("a"))])
    await store.write_batch([_entry(3, _record("b", State.CONNECTED, x="1"))])
    loaded = await store.load_sessions()
    assert [r.session_id for r in loaded] == ["a", "b"]
    assert loaded[1].state is State.CONNECTED and loaded[1].labels == {"x": "1"}
    await store.write_batch([_entry(4, None, "a")])
    assert [r.session_id for r in await store.load_sessions()] == ["b"]
    read = await store.read_after(1, 4, 10)
    assert read is not None
    assert [(e.seq, e.session_id, e.record is None) for e in read] == [
        (2, "a", False),
        (3, "b", False),
        (4, "a", True),
    ]
    assert read[1].record == _record("b", State.CONNECTED, x="1")
    assert all(e.before is None for e in read), "`before` is never stored"
    limited = await store.read_after(0, 4, 2)
    assert limited is not None and [e.seq for e in limited] == [1, 2]
    assert await store.bounds() == (1, 4)


async def test_pruning_keeps_the_newest_and_the_head(store: SessionStore) -> None:
    await store.write_batch([_entry(n, _record(f"s{n}")) for n in range(1, 11)])
    await store.prune(3)
    assert await store.bounds() == (8, 10)
    assert await store.read_after(2, 10, 100) is None, "pruned positions cannot be served"
    kept = await store.read_after(7, 10, 100)
    assert kept is not None and [e.seq for e in kept] == [8, 9, 10]
    await store.prune(0)
    # NOTE: with every entry pruned, numbering still goes on after the head.
    assert await store.bounds() == (11, 10)
    assert len(await store.load_sessions()) == 10, "pruning the journal keeps the registry"


async def test_probe_writes_nothing_visible(store: SessionStore) -> None:
    await store.write_batch([_entry(1, _record("a"))])
    await store.probe_writable()
    assert await store.bounds() == (1, 1)
    assert [r.session_id for r in await store.load_sessions()] == ["a"]


async def test_a_journal_reopened_on_a_store_goes_on_numbering(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    journal = await EventJournal.open(SqliteStore(path))
    first = await journal.append("a", _record("a"), Cause.CREATED)
    second = await journal.append(
        "a", _record("a", State.CONNECTED), Cause.OPENED, before=first.record
    )
    assert (first.seq, second.seq) == (1, 2)
    assert second.before == first.record
    await journal.close()
    again = await EventJournal.open(SqliteStore(path))
    try:
        third = await again.append("b", _record("b"), Cause.CREATED)
        assert third.seq == 3 and again.head == 3
        assert [r.session_id for r in await again.load_sessions()] == ["a", "b"]
    finally:
        await again.close()


async def test_a_refused_commit_marks_the_journal_unwritable_until_a_probe_succeeds() -> None:
    store = MemoryStore()
    journal = await EventJournal.open(store)
    seen: list[bool] = []
    journal.add_writable_listener(seen.append)
    try:
        store.fail_writes = True
        with pytest.raises(StorageError, match="disk is full"):
            await journal.append("a", _record("a"), Cause.CREATED)
        assert journal.writable is False and journal.write_failures == 1
        assert await store.load_sessions() == []
        store.fail_writes = False
        recovered = asyncio.Event()
        journal.add_writable_listener(lambda writable: recovered.set() if writable else None)
        async with asyncio.timeout(5):
            await recovered.wait()
        assert journal.writable and seen == [False, True]
        # The refused sequence number is free again: no gap.
        entry = await journal.append("a", _record("a"), Cause.CREATED)
        assert entry.seq == 1
    finally:
        await journal.close()


# The MessageStore contract -------------------------------------------------------------------


def _message(
    message_id: str, status: MessageStatus = MessageStatus.QUEUED, **kw: Any
) -> MessageRecord:
    values: dict[str, Any] = {
        "session_id": "s1",
        "message_id": message_id,
        "direction": Direction.OUTBOUND,
        "status": status,
        "chat": "15551234567@s.whatsapp.net",
        "text": "t",
        "update_time": 100.0,
        **kw,
    }
    return MessageRecord(**values)


@pytest.fixture(params=["sqlite", "memory"])
async def message_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqliteStore | MemoryStore]:
    opened = SqliteStore(tmp_path / "store.db") if request.param == "sqlite" else MemoryStore()
    yield opened
    await opened.close()


async def test_messages_and_their_events_are_written_together(
    message_store: MessageStore,
) -> None:
    assert await message_store.message_bounds() == (0, 0)
    a, b = _message("a", request_id="r1", whatsapp_id="W1"), _message("b")
    await message_store.write_messages(
        [MessageEntry(1, EventType.QUEUED, a, 1.0), MessageEntry(2, EventType.QUEUED, b, 2.0)]
    )
    sent = dataclasses.replace(a, status=MessageStatus.SENT)
    await message_store.write_messages([MessageEntry(3, EventType.STATUS_CHANGED, sent, 3.0)])
    assert await message_store.message_bounds() == (0, 3)
    assert await message_store.get_message("s1", "a") == sent
    assert await message_store.find_request("s1", "r1") == sent
    assert await message_store.find_request("s1", "r2") is None
    found = await message_store.find_whatsapp_ids(
        "s1", Direction.OUTBOUND, a.chat, "", ["W1", "nope"]
    )
    assert found == [sent]
    replay = await message_store.read_messages_after(1, 3, 10, None)
    assert replay is not None and [(e.seq, e.record.message_id) for e in replay] == [
        (2, "b"),
        (3, "a"),
    ]
    assert await message_store.read_messages_after(0, 3, 10, "other") == []
    listed = await message_store.list_messages("s1", None, None, frozenset(), None, 10)
    assert [r.message_id for _, r in listed] == ["b", "a"]  # newest first
    older = await message_store.list_messages("s1", None, None, frozenset(), listed[0][0], 10)
    assert [r.message_id for _, r in older] == ["a"]
    queued = await message_store.list_messages(None, None, None, frozenset({"QUEUED"}), None, 10)
    assert [r.message_id for _, r in queued] == ["b"]
    assert [r.message_id for r in await message_store.pending_messages("s1", 10)] == ["b"]


async def test_pruning_keeps_pending_messages_and_says_what_is_gone(
    message_store: MessageStore,
) -> None:
    old_final = _message("done", MessageStatus.SENT, update_time=10.0)
    old_queued = _message("waiting", update_time=10.0, expire_time=50.0)
    await message_store.write_messages(
        [
            MessageEntry(1, EventType.QUEUED, old_final, 10.0),
            MessageEntry(2, EventType.QUEUED, old_queued, 10.0),
        ]
    )
    assert [r.message_id for r in await message_store.expired_messages(60.0, 10)] == ["waiting"]
    await message_store.prune_messages(20.0)
    assert await message_store.get_message("s1", "done") is None
    assert await message_store.get_message("s1", "waiting") is not None
    assert await message_store.message_bounds() == (2, 2)
    assert await message_store.read_messages_after(0, 2, 10, None) is None
    assert await message_store.read_messages_after(2, 2, 10, None) == []
    await message_store.delete_session_messages("s1")
    assert await message_store.get_message("s1", "waiting") is None
    assert (await message_store.message_bounds())[1] == 2  # the head never goes back


async def test_a_message_journal_reopened_goes_on_numbering(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    journal = await MessageJournal.open(store)
    await asyncio.gather(*(journal.append(EventType.QUEUED, _message(str(i))) for i in range(5)))
    journal_id = store.message_journal_id
    await journal.close()
    await store.close()
    reopened = SqliteStore(tmp_path / "m.db")
    journal = await MessageJournal.open(reopened)
    assert reopened.message_journal_id == journal_id != reopened.journal_id
    assert (await journal.append(EventType.QUEUED, _message("next"))).seq == 6
    await journal.close()
    await reopened.close()
