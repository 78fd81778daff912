"""The session object and the registry without a gRPC server: a scripted engine, a real
journal, and the decisions, counts and races of the run loop."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from wasessions_server.config import policy_from_mapping
from wasessions_server.engines import Opened, PairSuccess
from wasessions_server.errors import ServiceError, Status
from wasessions_server.events import EventJournal
from wasessions_server.model import (
    Account,
    Cause,
    Disconnect,
    JournalEntry,
    RequiredAction,
    SessionRecord,
    State,
)
from wasessions_server.sessions import ManagerSettings, SessionRegistry
from wasessions_server.sessions.transitions import Connecting, LoggedOut, Stopped
from wasessions_server.store import FileCredentialStore, MemoryStore

from tests.fake_engine import (
    ACCOUNT,
    CREDS,
    FakeEngine,
    Hang,
    Plan,
    Refuse,
    Step,
    closed,
)

RegistryFactory = Callable[..., Awaitable[SessionRegistry]]


def fast(codes: dict[str, Any] | None = None, **default: Any) -> ManagerSettings:
    policy = policy_from_mapping(
        {
            "default": {
                "initial_delay_s": 0.01,
                "max_delay_s": 0.05,
                "multiplier": 2.0,
                "jitter_s": 0.0,
                "max_attempts": 3,
                **default,
            },
            "codes": codes or {},
        }
    )
    return ManagerSettings(
        policy=policy,
        stable_after_s=0.3,
        connect_rate=10_000.0,
        restore_jitter_s=0.0,
        connect_timeout_s=2.0,
        close_timeout_s=1.0,
    )


def linked_then(after: Callable[[int], list[Step]]) -> Plan:
    """Connect 1 pairs (and WhatsApp restarts it with 515); connect n > 1 does `after(n)`."""

    def plan(session_id: str, n: int) -> list[Step]:
        return [PairSuccess(ACCOUNT), closed(515)] if n == 1 else after(n)

    return plan


def opens(n: int) -> list[Step]:
    return [Opened(ACCOUNT)]


@pytest.fixture
async def make_registry(
    session_journal: EventJournal, tmp_path: Path
) -> AsyncIterator[RegistryFactory]:
    made: list[SessionRegistry] = []

    async def factory(
        engine: FakeEngine, settings: ManagerSettings | None = None
    ) -> SessionRegistry:
        assert not made, "one registry per journal"
        registry = SessionRegistry(
            session_journal,
            FileCredentialStore(tmp_path / "credentials"),
            {"fake": engine},
            settings or fast(),
            default_engine="fake",
        )
        await registry.start()
        made.append(registry)
        return registry

    yield factory
    for registry in made:
        await registry.shutdown()


@pytest.fixture
def entries(session_journal: EventJournal) -> list[JournalEntry]:
    seen: list[JournalEntry] = []
    session_journal.add_listener(seen.append)
    return seen


async def until(
    registry: SessionRegistry,
    session_id: str,
    check: Callable[[SessionRecord], bool],
    timeout: float = 5.0,
) -> SessionRecord:
    deadline = time.monotonic() + timeout
    while True:
        record = registry.get(session_id)
        if check(record):
            return record
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.005)


def in_state(state: State) -> Callable[[SessionRecord], bool]:
    return lambda record: record.state is state


async def linked(registry: SessionRegistry, session_id: str = "s1") -> SessionRecord:
    await registry.create(session_id, labels={}, engine="", start=True, request_id="")
    return await until(registry, session_id, in_state(State.CONNECTED))


# The code table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "state", "required", "creds_kept", "connects"),
    [
        (428, State.CONNECTED, RequiredAction.NONE, True, 3),  # reconnect
        (515, State.CONNECTED, RequiredAction.NONE, True, 3),  # restart
        (403, State.FAILED, RequiredAction.CONTACT_SUPPORT, True, 2),  # fail
        (440, State.FAILED, RequiredAction.RESOLVE_CONFLICT, True, 2),  # fail
        (401, State.LOGGED_OUT, RequiredAction.SCAN_QR, False, 2),  # logout
    ],
)
async def test_each_action_of_the_code_table(
    make_registry: RegistryFactory,
    entries: list[JournalEntry],
    tmp_path: Path,
    code: int,
    state: State,
    required: RequiredAction,
    creds_kept: bool,
    connects: int,
) -> None:
    engine = FakeEngine(linked_then(opens))
    registry = await make_registry(engine)
    await linked(registry)
    entries.clear()
    engine.live("s1").push(closed(code))
    record = await until(
        registry, "s1", lambda r: r.last_disconnect is not None and r.last_disconnect.code == code
    )
    record = await until(registry, "s1", in_state(state))
    await asyncio.sleep(0.05)  # nothing else follows
    assert record.required_action is required
    assert engine.connects["s1"] == connects
    assert record.has_credentials is creds_kept
    assert (tmp_path / "credentials" / "s1" / CREDS).exists() is creds_kept
    passed = [e.record.state for e in entries if e.record is not None]
    if code == 428:
        assert State.RECONNECTING in passed
    if code == 515:
        assert State.RECONNECTING not in passed, "a restart is not a counted retry"
        assert record.retry is None
    if state is State.LOGGED_OUT:
        assert record.account is None


async def test_515_restarts_at_once_up_to_its_rule_then_backs_off(
    make_registry: RegistryFactory, entries: list[JournalEntry]
) -> None:
    engine = FakeEngine(linked_then(lambda n: [closed(515)]))
    registry = await make_registry(engine, fast({"515": {"max_attempts": 2}}))
    connects_at: list[tuple[JournalEntry, int]] = []
    registry.journal.add_listener(lambda e: connects_at.append((e, engine.connects.get("s1", 0))))
    await registry.create("s1", labels={}, engine="", start=True, request_id="")
    failed = await until(registry, "s1", in_state(State.FAILED))
    first_retry = next(
        (e, n)
        for e, n in connects_at
        if e.record is not None and e.record.state is State.RECONNECTING
    )
    # The pairing's connect, then two restarts at once; only then the first counted retry.
    assert first_retry[1] == 3
    assert first_retry[0].record is not None and first_retry[0].record.retry is not None
    assert first_retry[0].record.retry.attempt == 1
    # Each of the two retries restarts twice too; then the 515 row's two retries are used up.
    assert engine.connects["s1"] == 9
    assert failed.retry is not None and (failed.retry.attempt, failed.retry.max_attempts) == (2, 2)


async def test_retries_are_counted_and_given_up_after_max_attempts(
    make_registry: RegistryFactory, entries: list[JournalEntry], caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine(linked_then(lambda n: opens(n) if n == 2 else [Refuse("no such host")]))
    registry = await make_registry(engine)
    await linked(registry)
    entries.clear()
    with caplog.at_level("INFO", logger="wasessions_server.sessions.session"):
        engine.live("s1").push(closed(428))
        failed = await until(registry, "s1", in_state(State.FAILED))
    announced = [
        e.record.retry.attempt
        for e in entries
        if e.record is not None
        and e.record.retry is not None
        and e.cause is Cause.CLOSED
        and e.record.state is State.RECONNECTING
    ]
    assert announced == [1, 2, 3]
    assert [e.cause for e in entries].count(Cause.RETRY_STARTED) == 3
    assert engine.connects["s1"] == 2 + 3
    assert failed.required_action is RequiredAction.START_SESSION
    assert failed.retry is not None and failed.retry.attempt == 3
    assert failed.last_disconnect is not None and "no such host" in failed.last_disconnect.message
    # One line per retry, with its cause.
    lines = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(lines) == 3, lines
    assert "retry 2/3" in lines[1] and "no such host" in lines[1] and "408" in lines[1]


async def test_a_stable_connection_resets_the_attempts(
    make_registry: RegistryFactory, entries: list[JournalEntry]
) -> None:
    engine = FakeEngine(linked_then(lambda n: [Refuse()] if n in (3, 5) else opens(n)))
    registry = await make_registry(engine)
    await linked(registry)
    entries.clear()
    engine.live("s1").push(closed(428))
    await until(registry, "s1", lambda r: engine.connects["s1"] == 4 and r.state is State.CONNECTED)
    await asyncio.sleep(0.4)  # longer than stable_after_s
    engine.live("s1").push(closed(428))
    await until(registry, "s1", lambda r: engine.connects["s1"] == 6 and r.state is State.CONNECTED)
    announced = [
        e.record.retry.attempt
        for e in entries
        if e.record is not None
        and e.record.state is State.RECONNECTING
        and e.cause is Cause.CLOSED
        and e.record.retry is not None
    ]
    assert announced == [1, 2, 1, 2]


# Operations racing the run loop --------------------------------------------------------------


async def test_stop_during_a_connect_that_hangs(make_registry: RegistryFactory) -> None:
    engine = FakeEngine(lambda sid, n: [Hang()])
    registry = await make_registry(engine)
    created = await registry.create("s1", labels={}, engine="", start=True, request_id="")
    assert created.state is State.CONNECTING
    await asyncio.sleep(0.05)
    began = time.monotonic()
    stopped = await registry.stop_session("s1")
    assert time.monotonic() - began < 1.0
    assert stopped.state is State.STOPPED
    assert registry.get("s1").state is State.STOPPED
    await asyncio.sleep(0.05)
    assert engine.connects["s1"] == 1 and not engine.connections


async def test_delete_during_the_retry_wait(make_registry: RegistryFactory, tmp_path: Path) -> None:
    engine = FakeEngine(linked_then(lambda n: opens(n) if n == 2 else [Refuse()]))
    registry = await make_registry(engine, fast(initial_delay_s=30.0, max_delay_s=30.0))
    await linked(registry)
    engine.live("s1").push(closed(428))
    await until(registry, "s1", in_state(State.RECONNECTING))
    await registry.delete_session("s1")
    with pytest.raises(ServiceError) as raised:
        registry.get("s1")
    assert raised.value.reason == "SESSION_NOT_FOUND"
    assert registry.snapshot(None) == []
    assert "s1" in engine.revoked, "the device is unlinked even without a connection"
    assert not (tmp_path / "credentials" / "s1").exists()
    await asyncio.sleep(0.1)
    assert engine.connects["s1"] == 2
    assert [r.session_id for r in await registry.journal.load_sessions()] == []


async def test_operations_and_reads_refused_as_they_should(make_registry: RegistryFactory) -> None:
    engine = FakeEngine(lambda sid, n: [])
    registry = await make_registry(engine)
    with pytest.raises(ServiceError) as raised:
        await registry.create("s1", labels={}, engine="nope", start=True, request_id="")
    assert (raised.value.status, raised.value.reason) == (Status.INVALID_ARGUMENT, "UNKNOWN_ENGINE")
    assert [v.field for v in raised.value.violations] == ["engine"]
    await registry.create("s1", labels={}, engine="", start=False, request_id="r1")
    again = await registry.create("s1", labels={}, engine="", start=False, request_id="r1")
    assert again.session_id == "s1"
    with pytest.raises(ServiceError) as raised:
        registry.qr_codes("s1")
    assert raised.value.reason == "SESSION_NOT_RUNNING"
    with pytest.raises(ServiceError) as raised:
        await registry.request_pairing_code("s1", "+15550001")
    assert raised.value.reason == "NOT_IN_QR_PHASE"


# Typed transitions ---------------------------------------------------------------------------


def test_transitions_set_only_their_fields() -> None:
    record = SessionRecord(
        "s1",
        "fake",
        state=State.CONNECTED,
        account=Account("j", "p", "n"),
        last_disconnect=Disconnect(428, "CONNECTION_CLOSED", "m", 1.0),
        labels={"a": "1"},
    )
    relinked = Connecting(Cause.RELINK_REQUESTED, forget_account=True).apply(record, 5.0, False)
    assert (relinked.state, relinked.account) == (State.CONNECTING, None)
    assert relinked.labels == {"a": "1"}
    assert (relinked.update_time, relinked.state_change_time) == (5.0, 5.0)
    assert not relinked.has_credentials
    assert Connecting(Cause.STARTED).apply(record, 5.0, True).account == record.account
    out = LoggedOut(Cause.LOGGED_OUT_BY_REQUEST, RequiredAction.SCAN_QR, "bye").apply(
        record, 6.0, False
    )
    assert out.account is None and out.last_disconnect == record.last_disconnect
    # Only a change of state moves state_change_time.
    again = Connecting(Cause.STARTED).apply(relinked, 7.0, False)
    assert (again.update_time, again.state_change_time) == (7.0, 5.0)
    with pytest.raises(TypeError):
        Stopped(Cause.STOPPED_BY_REQUEST, "x", requierd_action=RequiredAction.NONE)  # type: ignore[call-arg]


# Journal listeners ---------------------------------------------------------------------------


async def test_listeners_get_the_record_before_each_change(
    make_registry: RegistryFactory, entries: list[JournalEntry]
) -> None:
    registry = await make_registry(FakeEngine(linked_then(opens)))
    await linked(registry)
    await registry.stop_session("s1")
    await registry.delete_session("s1")
    assert entries[0].cause is Cause.CREATED and entries[0].before is None
    for previous, entry in itertools.pairwise(entries):
        assert entry.before is not None
        assert previous.record is not None
        assert entry.before.state is previous.record.state
    assert entries[-1].record is None


# Storage refused -----------------------------------------------------------------------------


async def test_a_refused_close_is_kept_as_the_truth_and_stored_once_possible(
    make_registry: RegistryFactory,
    entries: list[JournalEntry],
    session_store: MemoryStore,
) -> None:
    engine = FakeEngine(linked_then(opens))
    registry = await make_registry(engine)
    await linked(registry)
    session_store.fail_writes = True
    engine.live("s1").push(closed(403))
    deadline = time.monotonic() + 3
    while True:
        try:
            registry.get("s1")
        except ServiceError as error:
            assert (error.status, error.reason) == (Status.UNAVAILABLE, "STORAGE_UNAVAILABLE")
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    # Watchers were told nothing that is not stored; the stored record is still CONNECTED.
    assert [r.state for r in registry.snapshot(None)] == [State.CONNECTED]
    assert registry.serving("s1") is False
    with pytest.raises(ServiceError):
        registry.list_page("", frozenset(), 10)
    session_store.fail_writes = False
    # Stored within the rewrite's longest backoff, with no other change to carry it.
    async with asyncio.timeout(2.0):
        while True:
            try:
                record = registry.get("s1")
                break
            except ServiceError:
                await asyncio.sleep(0.005)
    assert record.state is State.FAILED
    assert record.required_action is RequiredAction.CONTACT_SUPPORT
    stored = entries[-1]
    assert stored.record is not None and stored.record.state is State.FAILED
    assert stored.before is not None and stored.before.state is State.CONNECTED


# Handing a session over ----------------------------------------------------------------------


async def test_release_stops_running_a_session_without_changing_it(
    make_registry: RegistryFactory,
) -> None:
    engine = FakeEngine(linked_then(opens))
    registry = await make_registry(engine)
    await linked(registry)
    await registry.release("s1")
    with pytest.raises(ServiceError):
        registry.get("s1")
    connection = engine.live("s1")
    assert connection.closed and not connection.logged_out
    stored = await registry.journal.load_sessions()
    assert [(r.session_id, r.state) for r in stored] == [("s1", State.CONNECTED)]


async def test_a_released_session_can_be_adopted_again(make_registry: RegistryFactory) -> None:
    engine = FakeEngine(linked_then(opens))
    registry = await make_registry(engine)
    await linked(registry)
    await registry.release("s1")
    stored = await registry.journal.load_sessions()
    await registry.adopt(stored)
    await registry.adopt(stored)  # already here: not a second object for the same session
    restored = await until(registry, "s1", lambda r: r.state is State.CONNECTED)
    assert restored.has_credentials
    assert engine.connects["s1"] == 3
    assert [r.session_id for r in registry.snapshot(None)] == ["s1"]
