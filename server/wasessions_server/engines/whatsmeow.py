"""`whatsmeow`: real WhatsApp through neonize, which runs the Go library whatsmeow in-process.

What neonize 0.5.2 does, checked against the wheel's Go binary, and what this module does about it:

- `NewClient.connect()` blocks for the whole life of a connection: the Go call returns when its
  connect fails, or once `Stop` cancels it. Each connection gets its own thread for that call;
  the short calls (stop, disconnect, logout, pairing code) run on the engine's own large pool,
  never on the event loop or asyncio's small default executor.
- The Go side keeps its clients in global maps without a lock: concurrent connects and stops
  abort the process ("fatal error: concurrent map writes", reproduced here with 100 clients).
  Every call that touches those maps goes through `_GATE`; a connect holds it only until the
  library logs that it is dialling, so a 20 s handshake does not hold up other sessions.
- `Stop` before the library's event loop has started (during the handshake or the QR phase)
  makes that loop dereference the deleted client later, which crashes the process. A connection
  is stopped only once its event loop runs or its connect has returned; a QR phase is ended with
  `Disconnect`, and a connect still dialling is left to finish (it does within the 20 s
  handshake timeout) and is stopped then.
- whatsmeow reconnects by itself after a server-side disconnect and neonize offers no switch to
  turn that off. The connection reports the close at once and stops the client, which cancels
  the library's context; the keepalive give-up is taken before whatsmeow's own (see
  `KEEPALIVE_GIVE_UP_S`). The manager's retry loop is the one that reconnects.
- whatsmeow's QR channel hands out codes one at a time on its own clock; the engine shows them on
  the configured schedule and ends the window itself (408 "QR refs attempts ended").
- whatsmeow saves its device before it reports PairSuccess, but deletes it (LoggedOut: 401, 403,
  406) while the event is on its way. `has_credentials` answers from what the engine last read
  off the event loop; each connect, PairSuccess and Closed reads the store again before the
  event is handed on (after a LoggedOut, until the device is gone or `STORE_DELETE_WAIT_S`).
- Messages: `send_message` takes no message id (its Go side sends with an empty
  `SendRequestExtra`, so whatsmeow picks one) and returns it. `send_fb_message(..., extra)` does
  honour `SendRequestExtra.ID`, but it sends a `ConsumerApplication` over the v3 (Messenger /
  Instagram "armadillo") transport, not the `waE2E.Message` WhatsApp's phones read, and its
  Python wrapper drops the response. So this engine does not fix ids (`fixes_message_ids` is
  False): `Sent.whatsapp_id` is the one whatsmeow chose, and an attempt whose outcome is
  unknown is reported as such, never resent under a new id by the engine.
- Sends and read receipts go through `_GATE` like every other call into the library (the Go
  side looks the client up in its unlocked maps), so one process sends one message at a time.
- whatsmeow sends WhatsApp's delivery receipt for an inbound message once it has handed the
  event on; neonize queues events for Python, so that receipt does not wait for the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import itertools
import logging
import os
import resource
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import neonize.client as neonize_client
from google.protobuf.message import Message
from neonize._binder import ProxySettings
from neonize.client import NewClient
from neonize.events import INT_TO_EVENT
from neonize.proto.Neonize_pb2 import Device, LogEntry
from neonize.utils.enum import ClientName, ClientType, ReceiptType
from neonize.utils.log import log as neonize_log

from wasessions_server.engines.base import (
    Activity,
    Closed,
    ConnectTarget,
    EngineEvent,
    MessageReceived,
    Opened,
    OutgoingMessage,
    PairSuccess,
    Qr,
    Receipt,
    SendInterrupted,
    SendOutcomeUnknown,
    SendRefused,
    Sent,
    not_in_qr_phase,
    queued_events,
)
from wasessions_server.engines.whatsmeow_events import (
    SUBSCRIBED,
    Alive,
    Connected,
    Noted,
    Paired,
    QrCodes,
    account_of,
    build_message,
    deletes_store,
    jid_of,
    map_event,
    map_login_status,
    send_error,
)
from wasessions_server.errors import ServiceError, Status
from wasessions_server.model import Account
from wasessions_server.policy import QR_WINDOW_OVER_MESSAGE, QrSchedule
from wasessions_server.policy import codes as wa
from wasessions_server.store import CredentialVault

log = logging.getLogger(__name__)

T = TypeVar("T")

#: whatsmeow's store inside the session's credential folder (SQLite, WAL, 0600).
STORE_FILE = "whatsmeow.db"
#: Blocking library calls (not the connections themselves, which have their own threads).
CALL_WORKERS = 256
#: How long a call waits for the library's global lock before it gives up with an error.
GATE_TIMEOUT_S = 30.0
#: After pair-success whatsmeow restarts the stream itself (the 515); if it is not connected
#: this long after, the connection closes with 515 and the manager reconnects.
PAIR_RESTART_TIMEOUT_S = 60.0
#: An offline logout (no open connection) connects first; it gives up after this long.
OFFLINE_LOGOUT_TIMEOUT_S = 8.0
#: After a LoggedOut, how long a store read waits for whatsmeow's own delete to show.
STORE_DELETE_WAIT_S = 2.0
_STORE_DELETE_POLL_S = 0.05
#: Threads that read the stores: apart from the library calls, which can wait long at the gate.
STORE_READERS = 8

_SEQUENCE = itertools.count(1)
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}


class LibraryBusy(RuntimeError):
    """The library's global lock stayed taken too long."""


class _GoGate:
    """Serialises every call into neonize that touches its unlocked global maps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mark = threading.Lock()
        self._dialing: str | None = None

    @contextlib.contextmanager
    def hold(self, what: str) -> Iterator[None]:
        if not self._lock.acquire(timeout=GATE_TIMEOUT_S):
            raise LibraryBusy(
                f"the WhatsApp library stayed busy for {GATE_TIMEOUT_S:.0f} s ({what})"
            )
        try:
            yield
        finally:
            self._lock.release()

    def begin_connect(self, uuid: str) -> None:
        """Taken before a connect; released by `end_connect` once it dials (or returns)."""
        if not self._lock.acquire(timeout=GATE_TIMEOUT_S):
            raise LibraryBusy(f"the WhatsApp library stayed busy for {GATE_TIMEOUT_S:.0f} s")
        with self._mark:
            self._dialing = uuid

    def end_connect(self, uuid: str) -> None:
        with self._mark:
            if self._dialing != uuid:
                return
            self._dialing = None
        self._lock.release()


_GATE = _GoGate()


def _on_library_log(binary: int | None, size: int) -> None:
    """neonize's log callback, replaced: it also tells when a connect has left the part of the
    Go code that writes the global maps (whatsmeow logs "Dialing" on the connecting thread,
    which neonize names after the client)."""
    try:
        if not binary or size <= 0:
            return
        data = ctypes.string_at(binary, size)
        if b"Dialing " in data:
            _GATE.end_connect(threading.current_thread().name)
        entry = LogEntry.FromString(data)
        level = _LEVELS.get(entry.Level.upper(), logging.INFO)
        logger = logging.getLogger("whatsmeow." + entry.Name.replace("/", "."))
        if logger.isEnabledFor(level):
            logger.log(level, "%s", entry.Message)
    except Exception:  # NOTE: an exception must never propagate into Go
        return


def _install_log_hook() -> None:
    # NOTE: neonize reads this module attribute at every connect; the Go side logs at the level
    # of neonize's logger, which must let DEBUG through for the "Dialing" line.
    neonize_client.log_whatsmeow = _on_library_log
    neonize_log.setLevel(logging.DEBUG)
    # NOTE: ffmpeg is for media messages, which this service does not handle.
    logging.getLogger("neonize.utils.ffmpeg").setLevel(logging.ERROR)


def _raise_fd_limit() -> None:
    """neonize opens a new SQLite handle for every connect and never closes it (0.5.2): a
    long reconnect storm uses file descriptors, so the soft limit is raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def store_dsn(path: Path) -> str:
    """The store name neonize passes on as `file:<name>?_foreign_keys=on`: WAL, full fsync, a
    busy timeout. The last parameter swallows neonize's suffix (SQLite ignores unknown keys)."""
    return (
        quote(str(path))
        + "?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_foreign_keys=on&_neonize"
    )


def store_has_device(path: Path) -> bool:
    """Whether whatsmeow's store holds a device (whatsmeow deletes it on 401/403/406)."""
    if not path.is_file():
        return False
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error:
        return True  # NOTE: never report credentials as gone on a guess
    try:
        row = db.execute("SELECT EXISTS(SELECT 1 FROM whatsmeow_device)").fetchone()
        return bool(row[0])
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return False
        log.warning("reading %s failed: %s", path, error)
        return True
    except sqlite3.Error as error:
        log.warning("reading %s failed: %s", path, error)
        return True
    finally:
        db.close()


def _prepare_store(vault: CredentialVault) -> Path:
    """Creates the store file 0600 before SQLite does: its -wal and -shm files take the same
    mode. Anything already in the folder is made private too."""
    folder = vault.ensure()
    path = folder / STORE_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    for entry in folder.iterdir():
        if entry.is_file():
            os.chmod(entry, 0o600)
    return path


class Phase(enum.Enum):
    """What a connection has reported; it moves only along `_FOLLOWS`, in `_advance`."""

    #: Dialling or logging in; nothing reported yet.
    CONNECTING = "connecting"
    #: Showing QR codes on the configured schedule.
    QR = "qr"
    #: The phone scanned a code: no more codes, and the QR window no longer closes on its own;
    #: the pairing event follows once the library's event loop runs.
    SCANNED = "scanned"
    #: PairSuccess reported; whatsmeow restarts the stream itself (the 515) and connects.
    PAIRED = "paired"
    #: Logged in and open.
    OPEN = "open"
    #: Over: `Closed` (or our own close) was queued and nothing follows it.
    CLOSED = "closed"


_FOLLOWS: dict[Phase, frozenset[Phase]] = {
    Phase.CONNECTING: frozenset({Phase.QR, Phase.SCANNED, Phase.PAIRED, Phase.OPEN, Phase.CLOSED}),
    Phase.QR: frozenset({Phase.SCANNED, Phase.PAIRED, Phase.OPEN, Phase.CLOSED}),
    Phase.SCANNED: frozenset({Phase.PAIRED, Phase.OPEN, Phase.CLOSED}),
    Phase.PAIRED: frozenset({Phase.OPEN, Phase.CLOSED}),
    Phase.OPEN: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class Library(enum.Enum):
    """Where a connection's neonize client is, which decides how it may be released (see the
    module docstring)."""

    #: The connect runs with neither a QR code nor the library's event loop yet: neither Stop
    #: nor Disconnect is safe; its outcome comes back by itself (within the 20 s handshake).
    DIALING = "dialing"
    #: whatsmeow's QR channel runs and the library's event loop has not started: Disconnect only.
    QR_CHANNEL = "qr channel"
    #: Disconnect was called during the QR channel.
    DISCONNECTED = "disconnected"
    #: neonize's event loop runs: Stop is safe.
    EVENT_LOOP = "event loop"
    #: Stop was called.
    STOPPED = "stopped"
    #: The connect returned and its own thread cleaned up: nothing of the client is left.
    RETURNED = "returned"


class _LibraryState:
    """A connection's `Library` state. NOTE: library threads move it too (the event loop has
    started, the connect returned), so every move is made under a lock and none is lost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = Library.DIALING

    @property
    def now(self) -> Library:
        return self._now

    def _move(self, to: Library, *sources: Library) -> bool:
        with self._lock:
            if self._now not in sources:
                return False
            self._now = to
            return True

    def qr_channel_opened(self) -> bool:
        return self._move(Library.QR_CHANNEL, Library.DIALING)

    def event_loop_started(self) -> bool:
        return self._move(
            Library.EVENT_LOOP, Library.DIALING, Library.QR_CHANNEL, Library.DISCONNECTED
        )

    def running_again(self) -> bool:
        """A library event after Stop: whatsmeow reconnected by itself in the meantime."""
        return self._move(Library.EVENT_LOOP, Library.STOPPED)

    def returned(self) -> None:
        with self._lock:
            self._now = Library.RETURNED

    def take_release(self) -> Library | None:
        """Claims the call that releases the client now: STOPPED (call Stop) or DISCONNECTED
        (call Disconnect); None when neither is needed or safe yet."""
        with self._lock:
            if self._now is Library.EVENT_LOOP:
                self._now = Library.STOPPED
            elif self._now is Library.QR_CHANNEL:
                self._now = Library.DISCONNECTED
            else:
                return None
            return self._now


class _StoredDevices:
    """Whether each vault's whatsmeow store holds a device, as last read (off the event loop).

    NOTE: reads are numbered as they start and a read only replaces an older one, so a slow
    read that began before a wipe cannot overwrite what the read after the wipe found.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(STORE_READERS, thread_name_prefix="whatsmeow-store")
        self._reads = itertools.count(1)
        self._known: dict[Path, tuple[int, bool]] = {}

    def answer(self, vault: CredentialVault) -> bool:
        # NOTE: a stat, so a wiped vault reads as empty at once, even before a refresh.
        if not os.path.isfile(os.path.join(vault.path, STORE_FILE)):
            return False
        known = self._known.get(vault.path)
        if known is None:
            # NOTE: a vault never read before (the sessions layer refreshes each one at load):
            # the real check, here, once.
            return self._remember(vault.path, self._read(vault.path))
        return known[1]

    async def refresh(self, vault: CredentialVault, *, deleting: bool = False) -> bool:
        """Reads the store off the event loop; `deleting`: whatsmeow is deleting the device,
        so a device still there is read again until it is gone or `STORE_DELETE_WAIT_S`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STORE_DELETE_WAIT_S
        while True:
            read = await loop.run_in_executor(self._executor, self._read, vault.path)
            if not (deleting and read[1]) or loop.time() >= deadline:
                break
            await asyncio.sleep(_STORE_DELETE_POLL_S)
        if deleting and read[1]:
            log.warning("%s still holds its device after the library's logout", vault.path)
        return self._remember(vault.path, read)

    def _read(self, folder: Path) -> tuple[int, bool]:
        number = next(self._reads)
        return number, store_has_device(folder / STORE_FILE)

    def _remember(self, folder: Path, read: tuple[int, bool]) -> bool:
        known = self._known.get(folder)
        if known is None or known[0] < read[0]:
            self._known[folder] = known = read
        return known[1]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class WhatsmeowConnection:
    """One neonize client: one connect attempt and, if it opens, its life."""

    def __init__(self, engine: WhatsmeowEngine, target: ConnectTarget) -> None:
        self.engine = engine
        self.target = target
        #: Unique per connection: the Go side keys its clients by it.
        self.uuid = f"{target.session_id}.{next(_SEQUENCE)}"
        self.phase = Phase.CONNECTING
        #: Where the library's client is (moved by library threads too).
        self.library = _LibraryState()
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[EngineEvent | None] = asyncio.Queue()
        self._established = asyncio.Event()
        self._finished = asyncio.Event()
        self._connect_error = ""
        #: The close came with whatsmeow deleting its store (a LoggedOut).
        self._store_deleted = False
        self._client: Any = None
        self._me: Account | None = None
        self._qr_known: list[str] = []
        self._qr_shown = 0
        self._qr_timer: asyncio.TimerHandle | None = None
        self._restart_timer: asyncio.TimerHandle | None = None
        self._teardown: asyncio.Task[None] | None = None
        #: Messages and receipts the library reported before the connection opened.
        self._early: list[MessageReceived | Receipt] = []

    def _advance(self, to: Phase) -> bool:
        """The one place the phase changes; False (and no change) if `to` does not follow."""
        if to not in _FOLLOWS[self.phase]:
            return False
        self.phase = to
        return True

    # Start ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Returns once the connection is up (a QR code, or the library's event loop running);
        raises with the library's error text if the connect fails."""
        path = await self.engine.run(_prepare_store, self.target.vault)
        # NOTE: a store made anew (after a wipe) must not answer from what the old one held.
        await self._refresh_credentials()
        client = self._make_client(path)
        proxy = ProxySettings(proxy_address=self.target.proxy) if self.target.proxy else None
        thread = threading.Thread(
            target=self._run, args=(client, proxy), name=f"whatsmeow-{self.uuid}", daemon=True
        )
        thread.start()
        established = asyncio.ensure_future(self._established.wait())
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait({established, finished}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # NOTE: cut off by the manager's connect timeout: tear down whatever comes of it.
            self._end(None)
            raise
        finally:
            established.cancel()
            finished.cancel()
        if not self._established.is_set():
            self._advance(Phase.CLOSED)
            raise ConnectionError(self._connect_error or "the connect ended without a result")

    def _make_client(self, path: Path) -> Any:
        client = NewClient(store_dsn(path), uuid=self.uuid)
        # NOTE: its finalizer calls Stop outside the gate, at any moment; the engine stops its
        # clients itself.
        client._stop_finalizer.detach()
        post = self._post

        def on_qr(_client: Any, data: bytes) -> None:
            post(self._on_qr_code, data.decode(errors="replace"))

        def on_login_status(_uuid: int | None, status: int | None) -> None:
            text = ctypes.string_at(status).decode(errors="replace") if status else ""
            post(self._on_login_status, text)

        def on_event(_client: Any, message: Message) -> None:
            post(self._on_library_event, message)

        library_execute = client.event.execute

        def execute(uuid: int, binary: int, size: int, code: int) -> None:
            try:
                if code == 0:
                    # neonize's first message: the library's event loop has started.
                    device = Device.FromString(ctypes.string_at(binary, size))
                    self.library.event_loop_started()
                    post(self._on_event_loop_started, device)
                elif code in INT_TO_EVENT:
                    library_execute(uuid, binary, size, code)
                else:
                    log.warning("session %s: unknown library event type %d", self.uuid, code)
            except Exception:
                log.exception("session %s: handling a library event failed", self.uuid)

        client.event.qr(on_qr)
        for event_type in SUBSCRIBED:
            client.event(event_type)(on_event)
        client.event.execute = execute
        # NOTE: neonize prints the QR channel's statuses; they end the QR phase, so they are
        # taken here instead (the name-mangled callback neonize hands to Go at connect).
        setattr(client, "_NewClient__onLoginStatus", on_login_status)  # noqa: B010
        self._client = client
        return client

    def _run(self, client: Any, proxy: ProxySettings | None) -> None:
        """The connection's own thread: neonize's blocking connect, then cleanup."""
        error = ""
        try:
            _GATE.begin_connect(self.uuid)
        except LibraryBusy as busy:
            self.library.returned()
            self._post(self._on_returned, str(busy))
            return
        try:
            client.connect(proxy)
        except BaseException as failure:
            error = str(failure) or type(failure).__name__
        finally:
            _GATE.end_connect(self.uuid)
            self.library.returned()
        # NOTE: the Go side keeps a client in its maps after its connect returned; Stop removes
        # it, and is safe now that nothing of this client runs.
        try:
            with _GATE.hold("cleanup"):
                client.stop()
        except Exception as failure:
            log.warning("session %s: library cleanup failed: %s", self.uuid, failure)
        self._post(self._on_returned, error)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """From a library thread to the event loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
            self._loop.call_soon_threadsafe(callback, *args)

    # What the library reports (on the event loop) ------------------------------------------

    def _on_returned(self, error: str) -> None:
        self._finished.set()
        if self.phase is Phase.CLOSED:
            return
        if not self._established.is_set():
            self._connect_error = error
            self._advance(Phase.CLOSED)
            self.engine.forget(self)
            return
        if error:
            self._close(wa.BAD_SESSION, f"The WhatsApp library ended the connection: {error}")
        else:
            self._close(wa.CONNECTION_CLOSED, "The WhatsApp library ended the connection")

    def _on_event_loop_started(self, device: Any) -> None:
        self._me = account_of(device.JID, device.PushName)
        self._established.set()
        if self.phase is Phase.CLOSED:
            self._start_teardown()

    def _on_qr_code(self, code: str) -> None:
        self.library.qr_channel_opened()
        if self.phase is Phase.CLOSED:
            self._start_teardown()
            return
        self._advance(Phase.QR)
        self._established.set()
        self._add_qr_codes([code])

    def _on_login_status(self, status: str) -> None:
        close = map_login_status(status)
        log.debug("session %s: login status %r", self.uuid, status)
        if close is None:
            # NOTE: scanned: no more codes, and the QR window must not close on its own now;
            # the pairing event follows once the library's event loop runs.
            self._advance(Phase.SCANNED)
            self._cancel_qr()
        elif self.phase in (Phase.CONNECTING, Phase.QR, Phase.SCANNED):
            self._end(close)

    def _on_library_event(self, message: Message) -> None:
        if self.phase is Phase.CLOSED:
            # NOTE: the library may have reconnected by itself after the close: stop it again
            # (Stop of a client the Go side no longer holds does nothing).
            self.library.running_again()
            self._start_teardown()
            return
        self._established.set()
        mapped = map_event(message)
        if isinstance(mapped, Closed):
            log.info("session %s: %s -> %d", self.uuid, type(message).__name__, mapped.code)
            self._store_deleted = deletes_store(message)
            self._end(mapped)
        elif isinstance(mapped, Paired):
            self._on_paired(mapped)
        elif isinstance(mapped, Connected):
            self._on_connected()
        elif isinstance(mapped, QrCodes):
            if self.phase is Phase.QR:
                self._add_qr_codes(list(mapped.codes))
        elif isinstance(mapped, Alive):
            self._events.put_nowait(Activity(mapped.time))
        elif isinstance(mapped, MessageReceived | Receipt):
            if self.phase is Phase.OPEN:
                self._events.put_nowait(mapped)
            else:
                # NOTE: handed on right after Opened (the library may dispatch offline
                # messages before its Connected event).
                self._early.append(mapped)
        elif isinstance(mapped, Noted):
            log.info("session %s: %s", self.uuid, mapped.what)

    def _on_paired(self, paired: Paired) -> None:
        if not self._advance(Phase.PAIRED):
            return
        self._cancel_qr()
        push_name = self._me.push_name if self._me else ""
        account = Account(paired.jid, paired.phone_number, push_name or paired.business_name)
        self._me = account
        self._events.put_nowait(PairSuccess(account))
        # NOTE: whatsmeow performs the 515 restart after pairing itself; if it does not come
        # back connected, the manager's 515 rule reconnects from the stored device.
        self._restart_timer = self._loop.call_later(
            PAIR_RESTART_TIMEOUT_S,
            self._close,
            wa.RESTART_REQUIRED,
            "Stream Errored (restart required): no connection after pairing",
        )

    def _on_connected(self) -> None:
        if not self._advance(Phase.OPEN):
            return
        self._cancel_restart()
        self._cancel_qr()
        now = time.time()
        self._events.put_nowait(Opened(self._me or Account("", "", "")))
        self._events.put_nowait(Activity(now))
        for early in self._early:
            self._events.put_nowait(early)
        self._early.clear()

    # QR codes on the configured schedule -------------------------------------------------------

    def _add_qr_codes(self, codes: list[str]) -> None:
        waiting = self._qr_timer is None and self._qr_shown == len(self._qr_known)
        for code in codes:
            if code and code not in self._qr_known:
                self._qr_known.append(code)
        if waiting:
            self._show_next_qr()

    def _show_next_qr(self) -> None:
        self._qr_timer = None
        if self.phase is not Phase.QR:
            return
        schedule = self.engine.qr
        if self._qr_shown >= schedule.max_codes:
            self._close(wa.CONNECTION_LOST, QR_WINDOW_OVER_MESSAGE)
            return
        if self._qr_shown >= len(self._qr_known):
            return  # NOTE: the library hands out its next code later; shown when it comes
        lifetime = schedule.lifetime_s(self._qr_shown)
        value = self._qr_known[self._qr_shown]
        self._qr_shown += 1
        self._events.put_nowait(Qr(value, time.time() + lifetime, self._qr_shown))
        self._qr_timer = self._loop.call_later(lifetime, self._show_next_qr)

    def _cancel_qr(self) -> None:
        if self._qr_timer is not None:
            self._qr_timer.cancel()
            self._qr_timer = None

    def _cancel_restart(self) -> None:
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None

    # Ending ------------------------------------------------------------------------------------

    def _close(self, code: int, message: str) -> None:
        self._end(Closed(code, message))

    def _end(self, last: Closed | None) -> None:
        """Ends the connection with `last` as its final event (None: closed by us)."""
        if not self._advance(Phase.CLOSED):
            return
        self.engine.forget(self)
        self._cancel_qr()
        self._cancel_restart()
        self._events.put_nowait(last)
        # NOTE: at once, not when the manager gets round to it: whatsmeow's own reconnect
        # starts right after a disconnect, and stopping the client cancels it.
        self._start_teardown()

    def _start_teardown(self) -> asyncio.Task[None]:
        if self._teardown is None or self._teardown.done():
            self._teardown = self.engine.spawn(self._release_library())
        return self._teardown

    async def _release_library(self) -> None:
        """Releases the client as far as is safe now; whatever the library reports later (the
        first QR code, its event loop, the connect's return) starts this again."""
        while (step := self.library.take_release()) is not None:
            if step is Library.STOPPED:
                await self.engine.run(self._gated, "stop", self._client.stop)
            else:
                # NOTE: Stop here would crash the process later (see the module docstring).
                # neonize 0.5.2 leaves a QR phase only when whatsmeow's own QR timer ends, and
                # then waits for a device ID that never comes: this connection's two threads
                # stay until exit.
                await self.engine.run(self._gated, "disconnect", self._client.disconnect)

    @staticmethod
    def _gated(what: str, call: Callable[[], T]) -> T:
        with _GATE.hold(what):
            return call()

    # The Connection protocol -------------------------------------------------------------------

    async def events(self) -> AsyncGenerator[EngineEvent, None]:
        async with contextlib.aclosing(queued_events(self._events)) as events:
            async for event in events:
                if isinstance(event, PairSuccess | Closed):
                    # NOTE: before it is handed on, so the record committed for it says what
                    # the store holds now (whatsmeow saved or is deleting the device).
                    deleting = isinstance(event, Closed) and self._store_deleted
                    await self._refresh_credentials(deleting=deleting)
                yield event

    async def _refresh_credentials(self, *, deleting: bool = False) -> None:
        try:
            await self.engine.refresh_credentials(self.target.vault, deleting=deleting)
        except Exception as error:  # NOTE: the event matters more than the cache
            log.warning("session %s: reading the store failed: %s", self.uuid, error)

    async def request_pairing_code(self, phone_number: str) -> str:
        if self.phase is not Phase.QR:
            raise not_in_qr_phase(self.target.session_id)
        client = self._client

        def pair() -> str:
            code: str = client.PairPhone(
                phone_number.lstrip("+"), True, ClientName.CHROME, ClientType.CHROME
            )
            return code

        try:
            code: str = await self.engine.run(self._gated, "pairing code", pair)
        except Exception as error:
            raise ServiceError(
                Status.UNAVAILABLE,
                "PAIRING_CODE_FAILED",
                f"WhatsApp gave no pairing code: {error}",
            ) from error
        return code.replace("-", "").upper()

    async def logout(self) -> None:
        """Unlinks the device through the library (whatsmeow also deletes its store)."""
        if self.library.now is Library.EVENT_LOOP:
            # NOTE: only while the Go side still holds this client (Stop removes it).
            try:
                await self.engine.run(self._gated, "logout", self._client.logout)
            finally:
                await self._refresh_credentials()
        await self.close()

    async def close(self) -> None:
        if self.phase is not Phase.CLOSED:
            self._end(None)
        else:
            self._events.put_nowait(None)
        await asyncio.shield(self._start_teardown())

    async def send(self, message: OutgoingMessage) -> Sent:
        """Sends through `send_message` (whatsmeow chooses the id: see the module docstring)."""
        self._check_open()
        try:
            chat = jid_of(message.chat)
        except ValueError as error:
            raise SendRefused(str(error)) from error
        client = self._client
        built = build_message(message)

        def send() -> Any:
            return client.send_message(chat, built)

        try:
            response = await self.engine.run(self._gated, "send", send)
        except LibraryBusy as busy:
            raise SendInterrupted(str(busy)) from busy
        except Exception as error:
            failure = send_error(str(error) or type(error).__name__)
            if isinstance(failure, SendOutcomeUnknown) and self.phase is Phase.OPEN:
                log.warning("session %s: a send ended without an answer", self.uuid)
            raise failure from error
        sent_at = float(response.Timestamp) if response.Timestamp > 0 else time.time()
        return Sent(str(response.ID), sent_at)

    async def mark_read(self, chat: str, sender: str, whatsapp_ids: tuple[str, ...]) -> None:
        self._check_open()
        chat_jid, sender_jid = jid_of(chat), jid_of(sender)
        client = self._client

        def mark() -> None:
            client.mark_read(
                *whatsapp_ids, chat=chat_jid, sender=sender_jid, receipt=ReceiptType.READ
            )

        try:
            await self.engine.run(self._gated, "mark read", mark)
        except Exception as error:
            # NOTE: a read receipt is idempotent: sending it again is always safe.
            raise SendInterrupted(f"the read receipt did not go out: {error}") from error

    def _check_open(self) -> None:
        if self.phase is not Phase.OPEN or self.library.now is not Library.EVENT_LOOP:
            raise SendInterrupted(f"session {self.target.session_id}: the connection is not open")


class WhatsmeowEngine:
    """The `whatsmeow` engine: one neonize client per connection, one store per session."""

    name = "whatsmeow"
    fixes_message_ids = False

    def __init__(
        self, state_dir: Path, qr: QrSchedule, *, call_workers: int = CALL_WORKERS
    ) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.qr = qr
        self._executor = ThreadPoolExecutor(call_workers, thread_name_prefix="whatsmeow-call")
        self._stored = _StoredDevices()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[WhatsmeowConnection] = set()
        _install_log_hook()
        _raise_fd_limit()

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """A blocking library call on the engine's pool."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    def spawn(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("whatsmeow: releasing a client failed: %s", task.exception())

    async def connect(self, target: ConnectTarget) -> WhatsmeowConnection:
        connection = WhatsmeowConnection(self, target)
        self._connections.add(connection)
        try:
            await connection.start()
        except BaseException:
            self._connections.discard(connection)
            raise
        return connection

    def forget(self, connection: WhatsmeowConnection) -> None:
        self._connections.discard(connection)

    def has_credentials(self, vault: CredentialVault) -> bool:
        return self._stored.answer(vault)

    async def refresh_credentials(self, vault: CredentialVault, *, deleting: bool = False) -> bool:
        """`deleting`: whatsmeow is deleting the device (a LoggedOut); waits for it to show."""
        return await self._stored.refresh(vault, deleting=deleting)

    async def logout_offline(self, vault: CredentialVault) -> None:
        """Best effort: connects with the stored device and unlinks it."""
        if not await self.refresh_credentials(vault):
            return
        connection = await self.connect(ConnectTarget(vault.path.name, vault))
        try:
            async with asyncio.timeout(OFFLINE_LOGOUT_TIMEOUT_S):
                async for event in connection.events():
                    if isinstance(event, Opened):
                        await connection.logout()
                        return
                    if isinstance(event, Closed):
                        raise ConnectionError(f"closed with {event.code}: {event.message}")
        finally:
            await connection.close()

    async def aclose(self) -> None:
        """Closes every connection WITHOUT logging out; a client still inside the library after
        the bound is left to the process exit (see main's shutdown timeout)."""
        live = [c for c in self._connections if c.phase is not Phase.CLOSED]
        for connection in live:
            connection._end(None)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        self._connections.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._stored.close()


__all__ = [
    "STORE_FILE",
    "Library",
    "Phase",
    "WhatsmeowConnection",
    "WhatsmeowEngine",
    "store_has_device",
]
