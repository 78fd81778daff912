"""`sim`: an embedded, honest stand-in for WhatsApp as Baileys sees it.

It paces QR codes like WhatsApp, pairs on a scan or a pairing code and then closes with 515,
rejects revoked credentials with 401, keeps banned accounts banned, fails connects while the
network is down, and closes live connections with any injected code. What the "server side"
must remember across restarts (a secret, revoked credentials, blocked accounts) is persisted.

Messages: it records every copy a session sent (durably, before it acknowledges the send),
holds inbound messages and receipts for a session until its consumer has read past them (as
WhatsApp's server keeps them for an offline device), and fails sends on request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

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
    Sent,
    new_message_id,
    not_in_qr_phase,
)
from wasessions_server.errors import ServiceError, Status, invalid_argument
from wasessions_server.model import Account
from wasessions_server.policy import QR_WINDOW_OVER_MESSAGE, QrSchedule
from wasessions_server.policy import codes as wa
from wasessions_server.rates import ConnectMeter
from wasessions_server.store import CredentialVault, FileCredentialVault

log = logging.getLogger(__name__)

CREDS_FILE = "creds.json"
MESSAGES_FILE = "messages.jsonl"
USER_SERVER = "@s.whatsapp.net"
CROCKFORD = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"

DEFAULT_MESSAGES = {
    wa.RESTART_REQUIRED: "Stream Errored (restart required)",
    wa.SERVICE_UNAVAILABLE: "Stream Errored (service unavailable)",
    wa.BAD_SESSION: "Stream Errored (bad session)",
    wa.CONNECTION_REPLACED: "Stream Errored (conflict: replaced)",
    wa.CONNECTION_CLOSED: "Connection Terminated by Server",
    wa.MULTIDEVICE_MISMATCH: "Multi-device mismatch",
    wa.CONNECTION_LOST: "Connection was lost",
    wa.BANNED: "Connection Failure (banned)",
    wa.CLIENT_OUTDATED: "Connection Failure (client outdated)",
    wa.FORBIDDEN: "Connection Failure (forbidden)",
    wa.TEMPORARILY_BANNED: "Connection Failure (temporarily banned)",
    wa.LOGGED_OUT: "Stream Errored (conflict: device_removed)",
}
_UNREACHABLE = "WebSocket Error (getaddrinfo ENOTFOUND web.whatsapp.com)"
_DROP_SLICE = 10  # connections SetNetwork(false) closes per event-loop iteration
_BLOCKING_CODES = (wa.TEMPORARILY_BANNED, wa.FORBIDDEN, wa.BANNED)
_REVOKING_CODES = (wa.LOGGED_OUT, wa.MULTIDEVICE_MISMATCH)
_REFUSED = "the simulated WhatsApp refused the message"


class SendFailure(enum.Enum):
    """What `SimEngine.inject_send_failure` makes a session's next sends do."""

    #: WhatsApp refuses the message for good (SendRefused).
    REJECT = "REJECT"
    #: The connection closes with 428 before WhatsApp took the message (SendInterrupted).
    DROP_CONNECTION = "DROP_CONNECTION"
    #: WhatsApp takes the message (the delivery is recorded), then the connection closes with
    #: 428 before the acknowledgement reaches the engine (SendOutcomeUnknown).
    DROP_AFTER_ACCEPT = "DROP_AFTER_ACCEPT"


class Delivery(NamedTuple):
    """One copy of a message the simulated WhatsApp received from a session ('' text for a
    reaction)."""

    whatsapp_id: str
    chat: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    """An inbound message or receipt offered to a connection; `seq` numbers it in the world."""

    seq: int
    event: MessageReceived | Receipt


class _MessageJournal:
    """The world's message records, one JSON object a line, appended to one file.

    NOTE: each record is one `os.write` on an O_APPEND descriptor, so once `append` returns it
    is in the kernel and survives a kill -9 of this process; `sync` also fsyncs (one fsync
    serves every append made before it started: group commit), so it survives a power loss.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")  # a line torn by a power loss stays alone (and skipped)
        self._written = 0
        self._synced = 0
        self._fsync: asyncio.Future[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def append(self, record: dict[str, Any]) -> None:
        os.write(self._fd, json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self._written += 1

    async def sync(self) -> None:
        """Returns once everything appended so far is fsynced."""
        target = self._written
        while self._synced < target:
            if self._fsync is None:
                self._fsync = asyncio.ensure_future(self._sync_once())
            await asyncio.shield(self._fsync)

    def sync_soon(self) -> None:
        """Fsyncs in the background (what was appended already survives a kill -9)."""
        task = asyncio.get_running_loop().create_task(self._sync_logged())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sync_once(self) -> None:
        upto = self._written
        try:
            await asyncio.to_thread(os.fsync, self._fd)
        finally:
            self._fsync = None
        self._synced = max(self._synced, upto)

    async def _sync_logged(self) -> None:
        try:
            await self.sync()
        except OSError as error:
            log.error("cannot fsync %s: %s", self.path, error)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record so far, oldest first (a torn line is skipped)."""
        with open(self.path, "rb") as file:
            for line in file:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record

    async def aclose(self) -> None:
        if self._fd < 0:
            return
        try:
            await self.sync()
        finally:
            os.close(self._fd)
            self._fd = -1


class SimWorld:
    """WhatsApp's side: which credentials are valid, which accounts are blocked, the network."""

    def __init__(self, state_dir: Path, qr: QrSchedule) -> None:
        self.qr = qr
        self.reachable = True
        self.connects = ConnectMeter()  # every connection attempt that reached "WhatsApp"
        self._vault = FileCredentialVault(state_dir)
        state = json.loads(self._vault.read("world.json") or b"{}")
        self._secret: str = state.get("secret") or secrets.token_hex(32)
        self._revoked: set[str] = set(state.get("revoked", []))
        self._blocked: dict[str, int] = dict(state.get("blocked", {}))
        self.live: dict[str, SimConnection] = {}
        if "secret" not in state:
            self._save()
        self._journal = _MessageJournal(state_dir / MESSAGES_FILE)
        # Inbound messages and receipts not yet handled by the session's consumer, by seq.
        self._pending: dict[str, dict[int, MessageReceived | Receipt]] = {}
        self._seq = 0
        self._failures: dict[str, deque[tuple[SendFailure, str]]] = {}
        self._replay()

    def _save(self) -> None:
        state = {"secret": self._secret, "revoked": sorted(self._revoked), "blocked": self._blocked}
        self._vault.write("world.json", json.dumps(state).encode())

    def sign(self, jid: str, nonce: str) -> str:
        return hmac.new(
            self._secret.encode(), f"{jid}:{nonce}".encode(), hashlib.sha256
        ).hexdigest()

    def verdict(self, creds: dict[str, Any]) -> tuple[int, str] | None:
        """Why WhatsApp would refuse these credentials, or None if they log in."""
        try:
            jid, nonce, token = creds["jid"], creds["nonce"], creds["token"]
        except (KeyError, TypeError):
            return wa.BAD_SESSION, "Stream Errored (bad session: unreadable credentials)"
        if not hmac.compare_digest(self.sign(jid, nonce), token) or token in self._revoked:
            return wa.LOGGED_OUT, "Connection Failure (logged out)"
        if jid in self._blocked:
            code = self._blocked[jid]
            return code, DEFAULT_MESSAGES[code]
        return None

    def revoke(self, creds: dict[str, Any] | None) -> None:
        if creds and "token" in creds:
            self._revoked.add(creds["token"])
            self._save()

    def block(self, jid: str, code: int) -> None:
        self._blocked[jid] = code
        self._save()

    # Messages ---------------------------------------------------------------------------------

    def _replay(self) -> None:
        for record in self._journal.records():
            kind, seq = record.get("t"), int(record.get("seq", 0))
            self._seq = max(self._seq, seq)
            if kind == "in":
                event: MessageReceived | Receipt = MessageReceived(**record["event"])
            elif kind == "receipt":
                fields = record["event"]
                event = Receipt(
                    fields["chat"],
                    tuple(fields["whatsapp_ids"]),
                    ReceiptKind(fields["kind"]),
                    fields["time"],
                )
            elif kind == "handled":
                self._pending.get(record["s"], {}).pop(seq, None)
                continue
            else:
                continue
            self._pending.setdefault(record["s"], {})[seq] = event

    def offer(self, session_id: str, event: MessageReceived | Receipt) -> None:
        """WhatsApp's server has an inbound message or receipt for the session: recorded (it
        survives a kill -9 once this returns), then handed to the open connection, if any."""
        self._seq += 1
        seq = self._seq
        if isinstance(event, MessageReceived):
            record: dict[str, Any] = {"t": "in", "s": session_id, "seq": seq}
            record["event"] = dataclasses.asdict(event)
        else:
            record = {"t": "receipt", "s": session_id, "seq": seq}
            record["event"] = {
                "chat": event.chat,
                "whatsapp_ids": list(event.whatsapp_ids),
                "kind": event.kind.value,
                "time": event.time,
            }
        self._journal.append(record)
        self._journal.sync_soon()
        self._pending.setdefault(session_id, {})[seq] = event
        connection = self.live.get(session_id)
        if connection is not None and connection.phase == "open":
            connection.offer(_Pending(seq, event))

    def pending(self, session_id: str) -> list[_Pending]:
        return [_Pending(seq, event) for seq, event in self._pending.get(session_id, {}).items()]

    def is_pending(self, session_id: str, seq: int) -> bool:
        return seq in self._pending.get(session_id, {})

    def handled(self, session_id: str, seq: int) -> None:
        """The session's consumer read past it: WhatsApp's server forgets it."""
        pending = self._pending.get(session_id)
        if pending is None or pending.pop(seq, None) is None:
            return
        if not pending:
            del self._pending[session_id]
        # NOTE: no fsync: a lost "handled" only means one redelivery, which consumers dedupe.
        self._journal.append({"t": "handled", "s": session_id, "seq": seq})

    async def record_delivery(
        self, session_id: str, whatsapp_id: str, message: OutgoingMessage
    ) -> None:
        """WhatsApp took a copy of the message; returns once that is on disk."""
        record = {"t": "sent", "s": session_id, "time": time.time()}
        self._journal.append(record | dataclasses.asdict(message) | {"whatsapp_id": whatsapp_id})
        await self._journal.sync()

    def record_read(self, session_id: str, chat: str, sender: str, ids: Iterable[str]) -> None:
        self._journal.append(
            {"t": "read", "s": session_id, "chat": chat, "sender": sender, "ids": list(ids)}
        )

    def fail_sends(self, session_id: str, kind: SendFailure, message: str, count: int) -> None:
        self._failures.setdefault(session_id, deque()).extend([(kind, message)] * count)

    def next_failure(self, session_id: str) -> tuple[SendFailure, str] | None:
        failures = self._failures.get(session_id)
        if not failures:
            return None
        failure = failures.popleft()
        if not failures:
            del self._failures[session_id]
        return failure

    def records(self, kind: str, session_id: str) -> Iterator[dict[str, Any]]:
        return (
            r for r in self._journal.records() if r.get("t") == kind and r.get("s") == session_id
        )

    async def aclose(self) -> None:
        await self._journal.aclose()


class SimConnection:
    """One simulated WebSocket: a QR phase without credentials, else an open connection."""

    def __init__(self, world: SimWorld, target: ConnectTarget) -> None:
        self.world = world
        self.target = target
        self.creds: dict[str, Any] | None = None
        self.phase = "connecting"  # -> qr | open | closed
        self._events: asyncio.Queue[EngineEvent | _Pending | None] = asyncio.Queue()
        self._qr_timer: asyncio.TimerHandle | None = None
        self._qr_sent = 0
        self._pairing: tuple[str, str] | None = None  # (code, phone number)

    def start(self) -> None:
        world, session_id = self.world, self.target.session_id
        if not world.reachable:
            self._close(wa.CONNECTION_LOST, _UNREACHABLE)
            return
        previous = world.live.get(session_id)
        if previous is not None:
            previous._close(wa.CONNECTION_REPLACED, DEFAULT_MESSAGES[wa.CONNECTION_REPLACED])
        world.live[session_id] = self
        raw = self.target.vault.read(CREDS_FILE)
        if raw is None:
            self.phase = "qr"
            self._next_qr()
            return
        try:
            self.creds = json.loads(raw)
        except ValueError:
            self.creds = None
        refusal = world.verdict(self.creds or {})
        if refusal is not None:
            self._close(*refusal)
            return
        assert self.creds is not None
        self.phase = "open"
        self._events.put_nowait(Opened(_account(self.creds)))
        for pending in world.pending(session_id):
            self._events.put_nowait(pending)

    def offer(self, pending: _Pending) -> None:
        self._events.put_nowait(pending)

    def _next_qr(self) -> None:
        if self.phase != "qr":
            return
        schedule = self.world.qr
        if self._qr_sent >= schedule.max_codes:
            self._close(wa.CONNECTION_LOST, QR_WINDOW_OVER_MESSAGE)
            return
        lifetime = schedule.lifetime_s(self._qr_sent)
        self._qr_sent += 1
        ref = secrets.token_urlsafe(24)
        keys = ",".join(secrets.token_urlsafe(32) for _ in range(3))
        self._events.put_nowait(Qr(f"2@{ref},{keys}", time.time() + lifetime, self._qr_sent))
        self._qr_timer = asyncio.get_running_loop().call_later(lifetime, self._next_qr)

    def pair(self, phone_number: str | None = None) -> None:
        """The phone scanned the code (or accepted the pairing code)."""
        if self.phase != "qr":
            raise not_in_qr_phase(self.target.session_id)
        digits = (phone_number or _phone_for(self.target.session_id)).lstrip("+")
        nonce = secrets.token_hex(8)
        jid = f"{digits}:{secrets.randbelow(90) + 10}@s.whatsapp.net"
        creds = {
            "jid": jid,
            "phone_number": "+" + digits,
            "push_name": f"Sim {self.target.session_id}",
            "nonce": nonce,
            "token": self.world.sign(jid, nonce),
        }
        self.target.vault.write(CREDS_FILE, json.dumps(creds).encode())
        self.creds = creds
        self.phase = "paired"
        self._cancel_qr()
        self._events.put_nowait(PairSuccess(_account(creds)))
        # NOTE: WhatsApp always restarts the stream right after pair-success.
        self._close(wa.RESTART_REQUIRED, DEFAULT_MESSAGES[wa.RESTART_REQUIRED])

    def enter_pairing_code(self, code: str) -> None:
        if self._pairing is None:
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "NO_PAIRING_CODE",
                f"no pairing code was requested for session {self.target.session_id}",
            )
        if code.replace("-", "").upper() != self._pairing[0]:
            raise invalid_argument("code", "PAIRING_CODE_MISMATCH", "the pairing code is wrong")
        self.pair(self._pairing[1])

    def inject(self, code: int, message: str) -> None:
        creds = self.creds
        if code in _REVOKING_CODES:
            self.world.revoke(creds)
        elif code in _BLOCKING_CODES and creds is not None:
            self.world.block(str(creds["jid"]), code)
        self._close(code, message or DEFAULT_MESSAGES.get(code, f"Stream Errored ({code})"))

    def _close(self, code: int, message: str) -> None:
        if self.phase == "closed":
            return
        self._end()
        self._events.put_nowait(Closed(code, message))

    def _end(self) -> None:
        self.phase = "closed"
        self._cancel_qr()
        if self.world.live.get(self.target.session_id) is self:
            del self.world.live[self.target.session_id]

    def _cancel_qr(self) -> None:
        if self._qr_timer is not None:
            self._qr_timer.cancel()
            self._qr_timer = None

    async def events(self) -> AsyncGenerator[EngineEvent, None]:
        world, session_id = self.world, self.target.session_id
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, _Pending):
                # NOTE: an earlier connection's consumer may have handled it meanwhile.
                if world.is_pending(session_id, item.seq):
                    yield item.event
                    # The consumer asked for the next event: it has stored this one.
                    world.handled(session_id, item.seq)
                continue
            yield item
            if isinstance(item, Closed):
                return

    async def send(self, message: OutgoingMessage) -> Sent:
        self._check_open()
        world, session_id = self.world, self.target.session_id
        whatsapp_id = message.whatsapp_id or new_message_id()
        failure = world.next_failure(session_id)
        kind, reason = failure if failure is not None else (None, "")
        if kind is SendFailure.REJECT:
            raise SendRefused(reason or _REFUSED)
        if kind is SendFailure.DROP_CONNECTION:
            self._close(wa.CONNECTION_CLOSED, reason or DEFAULT_MESSAGES[wa.CONNECTION_CLOSED])
            raise SendInterrupted(f"session {session_id}: the connection closed before the send")
        try:
            await world.record_delivery(session_id, whatsapp_id, message)
        except OSError as error:
            # NOTE: the record was written (a kill -9 keeps it), only its fsync failed.
            log.error("session %s: cannot fsync the simulated delivery: %s", session_id, error)
            kind = SendFailure.DROP_AFTER_ACCEPT
        if kind is SendFailure.DROP_AFTER_ACCEPT or self.phase != "open":
            self._close(wa.CONNECTION_CLOSED, reason or DEFAULT_MESSAGES[wa.CONNECTION_CLOSED])
            raise SendOutcomeUnknown(
                f"session {session_id}: the connection closed before WhatsApp acknowledged"
            )
        return Sent(whatsapp_id, time.time())

    async def mark_read(self, chat: str, sender: str, whatsapp_ids: tuple[str, ...]) -> None:
        self._check_open()
        self.world.record_read(self.target.session_id, chat, sender, whatsapp_ids)

    def _check_open(self) -> None:
        """Raises SendInterrupted unless the connection is open and the network up."""
        if self.phase == "open" and not self.world.reachable:
            # NOTE: SetNetwork(false) drops connections a slice at a time; this one goes now.
            self._close(wa.CONNECTION_LOST, DEFAULT_MESSAGES[wa.CONNECTION_LOST])
        if self.phase != "open":
            raise SendInterrupted(f"session {self.target.session_id}: the connection is closed")

    async def request_pairing_code(self, phone_number: str) -> str:
        if self.phase != "qr":
            raise not_in_qr_phase(self.target.session_id)
        code = "".join(secrets.choice(CROCKFORD) for _ in range(8))
        self._pairing = (code, phone_number)
        return code

    async def logout(self) -> None:
        self.world.revoke(self.creds)
        await self.close()

    async def close(self) -> None:
        if self.phase != "closed":
            self._end()
        self._events.put_nowait(None)


class SimEngine:
    """The `sim` engine over one `SimWorld`."""

    name = "sim"
    fixes_message_ids = True

    def __init__(self, state_dir: Path, qr: QrSchedule) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.world = SimWorld(state_dir, qr)

    async def connect(self, target: ConnectTarget) -> SimConnection:
        self.world.connects.started()
        connection = SimConnection(self.world, target)
        connection.start()
        return connection

    def has_credentials(self, vault: CredentialVault) -> bool:
        """Whether the vault holds a credentials file: one stat, so there is nothing to cache."""
        return vault.exists(CREDS_FILE)

    async def refresh_credentials(self, vault: CredentialVault) -> bool:
        # NOTE: the same stat as `has_credentials`, cheaper than a hop to a thread (the whole
        # registry is refreshed at load).
        return self.has_credentials(vault)

    async def logout_offline(self, vault: CredentialVault) -> None:
        raw = vault.read(CREDS_FILE)
        if raw is not None:
            try:
                self.world.revoke(json.loads(raw))
            except ValueError:
                log.warning("unreadable sim credentials in %s", vault.path)

    async def aclose(self) -> None:
        for connection in list(self.world.live.values()):
            await connection.close()
        await self.world.aclose()

    # SimulatorService operations -------------------------------------------------------------

    def live_connection(self, session_id: str) -> SimConnection:
        connection = self.world.live.get(session_id)
        if connection is None:
            raise ServiceError(
                Status.FAILED_PRECONDITION,
                "NO_ACTIVE_CONNECTION",
                f"session {session_id} has no open connection to the simulated WhatsApp",
            )
        return connection

    def scan_qr(self, session_id: str) -> None:
        self.live_connection(session_id).pair()

    def enter_pairing_code(self, session_id: str, code: str) -> None:
        self.live_connection(session_id).enter_pairing_code(code)

    def inject_disconnect(self, session_id: str, code: int, message: str) -> None:
        self.live_connection(session_id).inject(code, message)

    def set_network(self, reachable: bool) -> None:
        self.world.reachable = reachable
        if not reachable:
            self._drop(list(self.world.live.values()))

    def receive(
        self,
        session_id: str,
        sender: str,
        text: str,
        whatsapp_id: str = "",
        *,
        reply_to: str = "",
        reaction_to: str = "",
        reaction: str = "",
    ) -> str:
        """Someone (`sender`, an E.164 number or a JID) sends the session a message; returns its
        whatsapp_id (`whatsapp_id`, or a fresh one when empty: a repeated one is a redelivery).
        Delivered on the session's open connection, else at its next one."""
        jid = _jid(sender)
        whatsapp_id = whatsapp_id or new_message_id()
        self.world.offer(
            session_id,
            MessageReceived(
                whatsapp_id, jid, jid, time.time(), text, reaction_to, reaction, reply_to
            ),
        )
        return whatsapp_id

    def acknowledge(
        self,
        session_id: str,
        chat: str,
        whatsapp_ids: Iterable[str],
        kind: ReceiptKind | str,
    ) -> None:
        """The recipient's phone reports messages of the session DELIVERED, READ or PLAYED (a
        `Receipt`, on the open connection or at the next one)."""
        receipt = Receipt(chat, tuple(whatsapp_ids), ReceiptKind(kind), time.time())
        self.world.offer(session_id, receipt)

    def inject_send_failure(
        self, session_id: str, kind: SendFailure | str, message: str = "", count: int = 1
    ) -> None:
        """The session's next `count` sends fail as `kind` says (`message` is the refusal's or
        the close's text; '' for WhatsApp's usual one)."""
        self.world.fail_sends(session_id, SendFailure(kind), message, count)

    def delivered(self, session_id: str) -> list[Delivery]:
        """Every copy the simulated WhatsApp received from the session, oldest first.

        NOTE: read from the world's file, not kept in memory (a test-only question).
        """
        return [
            Delivery(r["whatsapp_id"], r["chat"], r["text"])
            for r in self.world.records("sent", session_id)
        ]

    def recipients_view(self, session_id: str) -> list[Delivery]:
        """What the recipients' phones show: one message per (chat, whatsapp_id), the first copy."""
        seen: dict[tuple[str, str], Delivery] = {}
        for delivery in self.delivered(session_id):
            seen.setdefault((delivery.chat, delivery.whatsapp_id), delivery)
        return list(seen.values())

    def read_receipts(self, session_id: str) -> list[tuple[str, str, tuple[str, ...]]]:
        """Every read receipt the session sent: (chat, sender, whatsapp_ids), oldest first."""
        return [
            (r["chat"], r["sender"], tuple(r["ids"]))
            for r in self.world.records("read", session_id)
        ]

    def network_stats(self, reset: bool) -> tuple[int, int]:
        """(connects, most connects within one second) since the start or the last reset."""
        meter = self.world.connects
        stats = (meter.total, meter.peak_per_second)
        if reset:
            self.world.connects = ConnectMeter()
        return stats

    def _drop(self, connections: list[SimConnection]) -> None:
        """Closes `connections` with 408, one slice now and one per loop iteration after.

        NOTE: a real network loss reaches each connection on its own; closing ten thousand in
        one call would hand the event loop all their close handling in a single iteration.
        """
        for connection in connections[:_DROP_SLICE]:
            connection._close(wa.CONNECTION_LOST, DEFAULT_MESSAGES[wa.CONNECTION_LOST])
        rest = connections[_DROP_SLICE:]
        if rest:
            asyncio.get_running_loop().call_soon(self._drop, rest)


def _account(creds: dict[str, Any]) -> Account:
    return Account(str(creds["jid"]), str(creds["phone_number"]), str(creds["push_name"]))


def _jid(sender: str) -> str:
    """An E.164 number as its user JID; a JID as it is."""
    return sender[1:] + USER_SERVER if sender.startswith("+") else sender


def _phone_for(session_id: str) -> str:
    """A stable, plausible phone number for a session scanned by the simulated phone."""
    digest = int(hashlib.sha256(session_id.encode()).hexdigest(), 16)
    return f"+1555{digest % 10_000_000:07d}"


__all__ = ["Delivery", "SendFailure", "SimConnection", "SimEngine", "SimWorld"]
