"""The messages of every session: the outbox (queue, idempotency, TTL, pacing, order), the inbox
(dedupe, read receipts) and the receipts of sent messages.

Every change of a message is one entry of the message journal, stored with the message's new
record in one transaction. The sessions layer tells this object when a session's connection
opens and closes, and hands it every `MessageReceived` and `Receipt` of its connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

from wasessions_server.engines.base import (
    Connection,
    MessageReceived,
    OutgoingMessage,
    Receipt,
    SendInterrupted,
    SendOutcomeUnknown,
    SendRefused,
    new_message_id,
)
from wasessions_server.errors import ServiceError, Status, StorageError, invalid_argument
from wasessions_server.events import MessageJournal, MessageWatchItem, ResumePoint, watch_messages
from wasessions_server.message_model import (
    MESSAGES_SEGMENT,
    RECEIPT_RANK,
    Direction,
    EventType,
    MessageError,
    MessageRecord,
    MessageStatus,
)
from wasessions_server.messages.pacing import SendPacer
from wasessions_server.messages.settings import MessageSettings
from wasessions_server.model import NAME_PREFIX, SessionRecord, State

log = logging.getLogger(__name__)

#: The session's record (raises NOT_FOUND for an unknown session).
SessionLookup = Callable[[str], SessionRecord]
#: Whether the engine of a session keeps a whatsapp_id chosen at queue time.
FixesIds = Callable[[str], bool]

_BATCH = 50
_SWEEP_S = 0.5
_PRUNE_S = 60.0
_RECEIPT_STATUS = {
    "DELIVERED": MessageStatus.DELIVERED,
    "READ": MessageStatus.READ,
    "PLAYED": MessageStatus.PLAYED,
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What SendMessage asks for (arguments already checked; `chat` is the JID)."""

    chat: str
    text: str = ""
    reaction_to: str = ""  # a message name
    reaction: str = ""
    reply_to: str = ""  # a message name
    request_id: str = ""
    ttl_s: float = 0.0  # 0: the default


def message_not_found(name: str) -> ServiceError:
    return ServiceError(
        Status.NOT_FOUND,
        "MESSAGE_NOT_FOUND",
        f"message {name} does not exist",
        metadata={"name": name},
    )


def _split(name: str) -> tuple[str, str]:
    session, _, message = name.removeprefix(NAME_PREFIX).partition(MESSAGES_SEGMENT)
    return session, message


def _linked(record: SessionRecord) -> bool:
    return record.has_credentials and record.state is not State.LOGGED_OUT


class Messages:
    """Owns every message change; nothing else writes messages."""

    def __init__(self, journal: MessageJournal, settings: MessageSettings) -> None:
        self.journal = journal
        self.settings = settings
        self._store = journal.store
        self._lookup: SessionLookup | None = None
        self._fixes_ids: FixesIds = lambda session_id: False
        self._pacer = SendPacer(settings.max_per_minute)
        self._open: dict[str, Connection] = {}  # sessions CONNECTED now, with their connection
        self._wanted: set[str] = set()  # sessions that may have work (queued, receipts)
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._requests: dict[tuple[str, str], asyncio.Lock] = {}
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False

    def attach(self, lookup: SessionLookup, fixes_ids: FixesIds) -> None:
        """Called by the session registry that hands this object its sessions' events."""
        self._lookup = lookup
        self._fixes_ids = fixes_ids

    # Start and stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Recovers what a crash interrupted, then starts the TTL sweep and the pruning.

        NOTE: a message SENDING when the server died may or may not have reached WhatsApp:
        with its whatsapp_id fixed it goes again under that id (the recipient keeps one copy);
        without, it is FAILED SEND_OUTCOME_UNKNOWN, never resent blindly.
        """
        # NOTE: every pending record is read once here (work left at the restart).
        for record in await self._store.pending_messages(None, 1_000_000):
            self._wanted.add(record.session_id)
            if record.status is MessageStatus.SENDING:
                await self._recover(record)
        self._background = [
            asyncio.create_task(self._sweep_expired(), name="messages-ttl"),
            asyncio.create_task(self._prune(), name="messages-prune"),
        ]

    def drain(self) -> None:
        self.journal.drain()

    async def shutdown(self) -> None:
        self._stopping = True
        tasks = [*self._background, *self._senders.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self.journal.close()

    # Reads ------------------------------------------------------------------------------------

    async def get(self, session_id: str, message_id: str) -> MessageRecord:
        self._session(session_id)
        record = await self._store.get_message(session_id, message_id)
        if record is None:
            raise message_not_found(f"{NAME_PREFIX}{session_id}{MESSAGES_SEGMENT}{message_id}")
        return record

    async def list_page(
        self,
        session_id: str | None,
        chat: str | None,
        direction: str | None,
        statuses: frozenset[str],
        before: int | None,
        limit: int,
    ) -> tuple[list[MessageRecord], int | None]:
        """Newest first; the position to continue before (None on the last page)."""
        if session_id is not None:
            self._session(session_id)
        rows = await self._store.list_messages(
            session_id,
            chat,
            Direction(direction) if direction else None,
            statuses,
            before,
            limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return [r for _, r in rows], (rows[-1][0] if more and rows else None)

    def watch(
        self, session_id: str | None, resume: ResumePoint | None, heartbeat_s: float
    ) -> AsyncGenerator[MessageWatchItem, None]:
        if session_id is not None:
            self._session(session_id)
        return watch_messages(self.journal, session_id, resume, heartbeat_s)

    # The outbox -------------------------------------------------------------------------------

    async def send(self, session_id: str, outgoing: Outgoing) -> MessageRecord:
        """Queues one message durably and returns it (QUEUED); a retry with the same
        request_id returns the same message."""
        session = self._session(session_id)
        if not outgoing.request_id:
            return await self._queue(session, outgoing)
        key = (session_id, outgoing.request_id)
        lock = self._requests.setdefault(key, asyncio.Lock())
        try:
            # NOTE: retries racing each other: the first queues, the others find its message.
            async with lock:
                known = await self._store.find_request(session_id, outgoing.request_id)
                if known is not None:
                    return _same_request(known, outgoing)
                return await self._queue(self._session(session_id), outgoing)
        finally:
            if not lock.locked() and self._requests.get(key) is lock:
                del self._requests[key]

    async def _queue(self, session: SessionRecord, outgoing: Outgoing) -> MessageRecord:
        session_id = session.session_id
        if not _linked(session):
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "SESSION_NOT_LINKED",
                f"session {session_id} is not linked to a phone ({session.state.value}); link "
                "it (StartSession and a QR scan) before sending",
            )
        for name in (
            outgoing.reply_to,
            outgoing.reaction_to,
        ):
            if name and await self._store.get_message(*_split(name)) is None:
                raise message_not_found(name)
        now = time.time()
        ttl = outgoing.ttl_s or min(self.settings.default_ttl_s, self.settings.retention_s)
        record = MessageRecord(
            session_id=session_id,
            message_id=secrets.token_urlsafe(12),
            direction=Direction.OUTBOUND,
            status=MessageStatus.QUEUED,
            chat=outgoing.chat,
            sender=session.account.jid if session.account else "",
            whatsapp_id=new_message_id() if self._fixes_ids(session_id) else "",
            text=outgoing.text,
            reaction_to=outgoing.reaction_to,
            reaction=outgoing.reaction,
            reply_to=outgoing.reply_to,
            request_id=outgoing.request_id,
            ttl_s=outgoing.ttl_s,
            create_time=now,
            update_time=now,
            expire_time=now + ttl,
        )
        entry = await self.journal.append(EventType.QUEUED, record)
        self._want(session_id)
        return entry.record

    async def cancel(self, session_id: str, message_id: str) -> MessageRecord:
        record = await self.get(session_id, message_id)
        async with self._lock(session_id):
            record = await self.get(session_id, message_id)
            if record.status is not MessageStatus.QUEUED:
                raise ServiceError(
                    Status.FAILED_PRECONDITION,
                    "MESSAGE_NOT_QUEUED",
                    f"message {record.name} is {record.status.value}; only a QUEUED message "
                    "can be cancelled",
                    metadata={"name": record.name},
                )
            return await self._change(record, status=MessageStatus.CANCELLED)

    # The inbox --------------------------------------------------------------------------------

    async def mark_read(self, session_id: str, message_ids: Sequence[str]) -> list[MessageRecord]:
        """Asks for read receipts of inbound messages; they go out while CONNECTED."""
        self._session(session_id)
        records = []
        for index, message_id in enumerate(message_ids):
            record = await self._store.get_message(session_id, message_id)
            if record is None:
                raise message_not_found(f"{NAME_PREFIX}{session_id}{MESSAGES_SEGMENT}{message_id}")
            if record.direction is not Direction.INBOUND:
                raise invalid_argument(
                    f"messages[{index}]",
                    "NOT_AN_INBOUND_MESSAGE",
                    f"messages[{index}] ({record.name}) is OUTBOUND; only received messages are "
                    "marked read",
                )
            records.append(record)
        out = []
        async with self._lock(session_id):
            for record in records:
                current = await self._store.get_message(session_id, record.message_id)
                assert current is not None
                if current.status is MessageStatus.RECEIVED and not current.read_requested:
                    current = await self._change(current, read_requested=True)
                out.append(current)
        self._want(session_id)
        return out

    async def received(self, session_id: str, event: MessageReceived) -> None:
        """Stores an inbound message (once per chat, sender and whatsapp_id); returns when it
        is durable, so the engine may acknowledge it."""
        async with self._lock(session_id):
            known = await self._store.find_whatsapp_ids(
                session_id, Direction.INBOUND, event.chat, event.sender, (event.whatsapp_id,)
            )
            if known:
                return
            now = time.time()
            record = MessageRecord(
                session_id=session_id,
                message_id=secrets.token_urlsafe(12),
                direction=Direction.INBOUND,
                status=MessageStatus.RECEIVED,
                chat=event.chat,
                sender=event.sender,
                whatsapp_id=event.whatsapp_id,
                text=event.text,
                reaction_to=await self._name_of(session_id, event.chat, event.reaction_to),
                reaction=event.reaction,
                reply_to=await self._name_of(session_id, event.chat, event.reply_to),
                create_time=event.time or now,
                update_time=now,
            )
            await self.journal.append(EventType.RECEIVED, record)

    async def _name_of(self, session_id: str, chat: str, whatsapp_id: str) -> str:
        """The name of the message of `chat` with this whatsapp_id ('' when unknown)."""
        if not whatsapp_id:
            return ""
        for direction in (Direction.OUTBOUND, Direction.INBOUND):
            found = await self._store.find_whatsapp_ids(
                session_id, direction, chat, "", (whatsapp_id,)
            )
            if found:
                return found[0].name
        return ""

    # Receipts ---------------------------------------------------------------------------------

    async def receipt(self, session_id: str, receipt: Receipt) -> None:
        """Moves the messages' status forward (never back: a late DELIVERED keeps READ)."""
        status = _RECEIPT_STATUS[receipt.kind.value]
        async with self._lock(session_id):
            for record in await self._store.find_whatsapp_ids(
                session_id, Direction.OUTBOUND, receipt.chat, "", receipt.whatsapp_ids
            ):
                await self._forward(record, status, receipt.time)

    async def _forward(self, record: MessageRecord, status: MessageStatus, when: float) -> None:
        if RECEIPT_RANK.get(record.status, 0) >= RECEIPT_RANK[status]:
            return
        if record.status in (MessageStatus.FAILED, MessageStatus.EXPIRED, MessageStatus.CANCELLED):
            return
        times: dict[str, float] = {}
        if record.sent_time is None:
            times["sent_time"] = when
        if status is MessageStatus.DELIVERED or record.delivered_time is None:
            times["delivered_time"] = when
        if status in (MessageStatus.READ, MessageStatus.PLAYED):
            times["read_time"] = record.read_time or when
        await self._change(record, status=status, **times)

    # Session hooks (constant work: the reconnect path of a storm runs them) --------------------

    def connected(self, session_id: str, connection: Connection) -> None:
        self._open[session_id] = connection
        if session_id in self._wanted:
            self._start_sender(session_id)

    def disconnected(self, session_id: str) -> None:
        self._open.pop(session_id, None)

    async def logged_out(self, session_id: str) -> None:
        await self._fail_queued(session_id, "SESSION_LOGGED_OUT", _LOGGED_OUT)

    async def relinked(self, session_id: str) -> None:
        await self._fail_queued(session_id, "SESSION_RELINKED", _RELINKED)

    async def deleted(self, session_id: str) -> None:
        self._open.pop(session_id, None)
        sender = self._senders.get(session_id)
        if sender is not None:
            sender.cancel()
            await asyncio.wait({sender})
        async with self._lock(session_id):
            await self.journal.flush()
            await self._store.delete_session_messages(session_id)
        self._wanted.discard(session_id)
        self._pacer.forget(session_id)
        self._locks.pop(session_id, None)

    async def _fail_queued(self, session_id: str, reason: str, message: str) -> None:
        """Fails every QUEUED message of the session (one SENDING now ends by its outcome).

        NOTE: a store query per logout or relink, which are rare: not on a reconnect path."""
        async with self._lock(session_id):
            for record in await self._store.pending_messages(session_id, 1_000_000):
                if record.status is MessageStatus.QUEUED:
                    await self._fail(record, reason, message)

    # Sending ----------------------------------------------------------------------------------

    def _want(self, session_id: str) -> None:
        self._wanted.add(session_id)
        if session_id in self._open:
            self._start_sender(session_id)

    def _start_sender(self, session_id: str) -> None:
        task = self._senders.get(session_id)
        connection = self._open.get(session_id)
        if (task is None or task.done()) and connection is not None and not self._stopping:
            self._senders[session_id] = asyncio.create_task(
                self._send_all(session_id, connection), name=f"outbox:{session_id}"
            )

    async def _send_all(self, session_id: str, connection: Connection) -> None:
        """Sends the session's pending work over `connection` while it is the open one."""
        try:
            while session_id in self._wanted and self._open.get(session_id) is connection:
                self._wanted.discard(session_id)
                if not await self._send_pending(session_id, connection):
                    self._wanted.add(session_id)  # left for the next connection
                    break
        except StorageError as error:
            self._wanted.add(session_id)
            log.error("session %s: the outbox could not store a change: %s", session_id, error)
        except asyncio.CancelledError:
            self._wanted.add(session_id)
            raise
        finally:
            if self._senders.get(session_id) is asyncio.current_task():
                del self._senders[session_id]
            # NOTE: a new connection may have opened while this one's last send failed: its
            # `connected` found this task still running and left the work to it.
            if self._open.get(session_id) not in (None, connection):
                self._start_sender(session_id)

    async def _send_pending(self, session_id: str, connection: Connection) -> bool:
        """Sends (in queue order) until nothing is pending: True; False when the connection
        went first."""
        while True:
            batch = await self._store.pending_messages(session_id, _BATCH)
            if not batch:
                return True
            for record in batch:
                if self._open.get(session_id) is not connection:
                    return False
                if record.status is MessageStatus.SENDING:
                    # NOTE: this task is the session's only sender and nothing of it is in
                    # flight: a SENDING record here is one whose outcome was never stored.
                    async with self._lock(session_id):
                        current = await self._store.get_message(session_id, record.message_id)
                        if current is not None and current.status is MessageStatus.SENDING:
                            await self._recover(current)
                elif record.direction is Direction.INBOUND:
                    if not await self._send_read(connection, record):
                        return False
                elif not await self._send_one(connection, record):
                    return False

    async def _send_one(self, connection: Connection, queued: MessageRecord) -> bool:
        session_id = queued.session_id
        async with self._lock(session_id):
            record = await self._store.get_message(session_id, queued.message_id)
            if record is None or record.status is not MessageStatus.QUEUED:
                return True
            if record.expire_time is not None and record.expire_time <= time.time():
                await self._expire(record)
                return True
        await self._pacer.turn(session_id)
        async with self._lock(session_id):
            record = await self._store.get_message(session_id, queued.message_id)
            if record is None or record.status is not MessageStatus.QUEUED:
                return True
            outgoing = await self._outgoing(record)
            record = await self._change(
                record, status=MessageStatus.SENDING, attempts=record.attempts + 1
            )
        try:
            sent = await connection.send(outgoing)
        except SendRefused as refused:
            await self._settle(record, _Failed(refused.code, "SEND_REFUSED", str(refused)))
            return True
        except SendOutcomeUnknown:
            if record.whatsapp_id:
                await self._settle(record, _Retry(outcome_unknown=True))
            else:
                await self._settle(record, _Failed(0, "SEND_OUTCOME_UNKNOWN", _UNKNOWN))
            return False
        except SendInterrupted:
            await self._settle(record, _Retry())
            return False
        except Exception as error:
            # NOTE: an engine bug must not lose the message: it counts as an interrupted try.
            log.warning("session %s: send failed: %s", session_id, type(error).__name__)
            await self._settle(record, _Retry())
            return True
        await self._settle(record, sent.whatsapp_id, sent.time)
        return True

    async def _settle(
        self, sending: MessageRecord, outcome: _Failed | _Retry | str, when: float = 0.0
    ) -> None:
        async with self._lock(sending.session_id):
            record = await self._store.get_message(sending.session_id, sending.message_id)
            if record is None:
                return
            if isinstance(outcome, _Failed):
                if record.status is MessageStatus.SENDING:
                    await self._fail(record, outcome.reason, outcome.message, outcome.code)
            elif isinstance(outcome, _Retry):
                if record.status is not MessageStatus.SENDING:
                    return
                unlinked = self._unlinked_reason(record.session_id)
                if unlinked is not None and outcome.outcome_unknown:
                    # NOTE: it may have reached WhatsApp, and it cannot go again: say so.
                    await self._fail(record, "SEND_OUTCOME_UNKNOWN", _UNKNOWN_UNLINKED)
                elif unlinked is not None:
                    await self._fail(record, unlinked, _LOGGED_OUT)
                elif record.attempts >= self.settings.max_attempts:
                    await self._fail(
                        record,
                        "SEND_ATTEMPTS_EXHAUSTED",
                        f"not sent after {record.attempts} attempts",
                    )
                else:
                    await self._change(record, status=MessageStatus.QUEUED)
            elif record.status is MessageStatus.SENDING or record.status in RECEIPT_RANK:
                # NOTE: a receipt may have come first (DELIVERED before the send returned):
                # the status only moves forward.
                status = record.status if record.status in RECEIPT_RANK else MessageStatus.SENT
                await self._change(
                    record, status=status, whatsapp_id=outcome, sent_time=record.sent_time or when
                )

    async def _send_read(self, connection: Connection, record: MessageRecord) -> bool:
        try:
            await connection.mark_read(record.chat, record.sender, (record.whatsapp_id,))
        except SendInterrupted:
            return False
        except Exception as error:
            log.warning("session %s: mark_read failed: %s", record.session_id, type(error).__name__)
            return False
        async with self._lock(record.session_id):
            current = await self._store.get_message(record.session_id, record.message_id)
            if current is not None and current.read_requested:
                await self._change(
                    current, status=MessageStatus.READ, read_requested=False, read_time=time.time()
                )
        return True

    async def _outgoing(self, record: MessageRecord) -> OutgoingMessage:
        async def whatsapp_id_of(name: str) -> str:
            if not name:
                return ""
            target = await self._store.get_message(*_split(name))
            return target.whatsapp_id if target is not None else ""

        return OutgoingMessage(
            whatsapp_id=record.whatsapp_id,
            chat=record.chat,
            text=record.text,
            reaction_to=await whatsapp_id_of(record.reaction_to),
            reaction=record.reaction,
            reply_to=await whatsapp_id_of(record.reply_to),
        )

    # Background -------------------------------------------------------------------------------

    async def _sweep_expired(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_S)
            try:
                for record in await self._store.expired_messages(time.time(), _BATCH):
                    async with self._lock(record.session_id):
                        current = await self._store.get_message(
                            record.session_id, record.message_id
                        )
                        if current is not None and current.status is MessageStatus.QUEUED:
                            await self._expire(current)
            except StorageError as error:
                log.warning("expiring queued messages failed: %s", error)

    async def _prune(self) -> None:
        while True:
            try:
                await self._store.prune_messages(time.time() - self.settings.retention_s)
            except StorageError as error:
                log.warning("pruning messages failed: %s", error)
            await asyncio.sleep(_PRUNE_S)

    # Changes ----------------------------------------------------------------------------------

    def _unlinked_reason(self, session_id: str) -> str | None:
        """SESSION_LOGGED_OUT when the session can no longer send (logged out, deleted)."""
        try:
            linked = _linked(self._session(session_id))
        except ServiceError:
            linked = False
        return None if linked else "SESSION_LOGGED_OUT"

    def _session(self, session_id: str) -> SessionRecord:
        assert self._lookup is not None, "attach() first"
        return self._lookup(session_id)

    def _lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    async def _change(self, record: MessageRecord, **changes: object) -> MessageRecord:
        updated = dataclasses.replace(record, update_time=time.time(), **changes)  # type: ignore[arg-type]
        entry = await self.journal.append(EventType.STATUS_CHANGED, updated)
        return entry.record

    async def _fail(
        self, record: MessageRecord, reason: str, message: str, code: int = 0
    ) -> MessageRecord:
        return await self._change(
            record, status=MessageStatus.FAILED, error=MessageError(code, reason, message)
        )

    async def _recover(self, record: MessageRecord) -> MessageRecord:
        """A SENDING message whose outcome was lost: again under its fixed id, else FAILED."""
        if record.whatsapp_id:
            return await self._change(record, status=MessageStatus.QUEUED)
        return await self._fail(record, "SEND_OUTCOME_UNKNOWN", _UNKNOWN)

    async def _expire(self, record: MessageRecord) -> MessageRecord:
        return await self._change(
            record,
            status=MessageStatus.EXPIRED,
            error=MessageError(0, "MESSAGE_EXPIRED", "its ttl ran out while it was queued"),
        )


@dataclass(frozen=True, slots=True)
class _Failed:
    code: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class _Retry:
    outcome_unknown: bool = False


_UNKNOWN = (
    "the connection closed after the message left and before WhatsApp answered; it may have "
    "been delivered, so it is not sent again (this engine cannot resend under the same id)"
)
_UNKNOWN_UNLINKED = (
    "the connection closed after the message left and before WhatsApp answered, and the "
    "session was logged out before it could go again; it may have been delivered"
)
_LOGGED_OUT = "the session was logged out before the message was sent"
_RELINKED = "the session was relinked (the account may have changed) before the message was sent"


def _same_request(known: MessageRecord, outgoing: Outgoing) -> MessageRecord:
    asked = (
        outgoing.chat,
        outgoing.text,
        outgoing.reaction_to,
        outgoing.reaction,
        outgoing.reply_to,
        outgoing.ttl_s,
    )
    stored = (
        known.chat,
        known.text,
        known.reaction_to,
        known.reaction,
        known.reply_to,
        known.ttl_s,
    )
    if asked != stored:
        raise ServiceError(
            Status.ALREADY_EXISTS,
            "REQUEST_ID_REUSED",
            f"request_id {known.request_id!r} was used for {known.name} with other content; "
            "use a new request_id for a new message",
            metadata={"name": known.name},
        )
    return known


__all__ = ["Messages", "Outgoing", "message_not_found"]
