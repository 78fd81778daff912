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
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
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
from neonize.utils.enum import ClientName, ClientType
from neonize.utils.log import log as neonize_log

from wasessions_server.engines.base import (
    Activity,
    Closed,
    ConnectTarget,
    EngineEvent,
    Opened,
    PairSuccess,
    Qr,
    not_in_qr_phase,
    queued_events,
)
from wasessions_server.engines.whatsmeow_events import (
    SUBSCRIBED,
    Alive,
    Close,
    Connected,
    Noted,
    Paired,
    QrCodes,
    account_of,
    map_event,
    map_login_status,
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


class WhatsmeowConnection:
    """One neonize client: one connect attempt and, if it opens, its life."""

    def __init__(self, engine: WhatsmeowEngine, target: ConnectTarget) -> None:
        self.engine = engine
        self.target = target
        #: Unique per connection: the Go side keys its clients by it.
        self.uuid = f"{target.session_id}.{next(_SEQUENCE)}"
        self.phase = "connecting"  # -> qr | paired | open | closed
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[EngineEvent | None] = asyncio.Queue()
        self._established = asyncio.Event()
        self._finished = asyncio.Event()
        self._connect_error = ""
        self._client: Any = None
        self._me: Account | None = None
        # Written by library threads, read on the loop (plain flags: assignments are atomic).
        self._event_loop_running = False
        self._returned = False
        self._socket_open = False
        self._closing = False
        self._disconnected = False
        self._stopped = False
        self._login_succeeded = False
        self._qr_known: list[str] = []
        self._qr_shown = 0
        self._qr_timer: asyncio.TimerHandle | None = None
        self._restart_timer: asyncio.TimerHandle | None = None
        self._teardown: asyncio.Task[None] | None = None

    # Start ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Returns once the connection is up (a QR code, or the library's event loop running);
        raises with the library's error text if the connect fails."""
        path = await self.engine.run(_prepare_store, self.target.vault)
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
            self.phase = "closed"
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
                    self._event_loop_running = True
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
            self._returned = True
            self._post(self._on_returned, str(busy))
            return
        try:
            client.connect(proxy)
        except BaseException as failure:
            error = str(failure) or type(failure).__name__
        finally:
            _GATE.end_connect(self.uuid)
            self._returned = True
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
        if self.phase == "closed":
            return
        if not self._established.is_set():
            self._connect_error = error
            self.phase = "closed"
            self.engine.forget(self)
            return
        if error:
            self._close(wa.BAD_SESSION, f"The WhatsApp library ended the connection: {error}")
        else:
            self._close(wa.CONNECTION_CLOSED, "The WhatsApp library ended the connection")

    def _on_event_loop_started(self, device: Any) -> None:
        self._me = account_of(device.JID, device.PushName)
        self._established.set()
        if self._closing:
            self._start_teardown()

    def _on_qr_code(self, code: str) -> None:
        self._socket_open = True
        if self._closing:
            self._start_teardown()
            return
        if self.phase == "connecting":
            self.phase = "qr"
        self._established.set()
        self._add_qr_codes([code])

    def _on_login_status(self, status: str) -> None:
        close = map_login_status(status)
        log.debug("session %s: login status %r", self.uuid, status)
        if close is None:
            # NOTE: scanned: no more codes, and the QR window must not close on its own now;
            # the pairing event follows once the library's event loop runs.
            self._login_succeeded = True
            self._cancel_qr()
        elif self.phase in ("connecting", "qr"):
            self._close(close.code, close.message)

    def _on_library_event(self, message: Message) -> None:
        if self.phase == "closed":
            if self._closing and self._event_loop_running:
                # NOTE: the library reconnected by itself after the close: stop it again.
                self._stopped = False
                self._start_teardown()
            return
        self._established.set()
        mapped = map_event(message)
        if isinstance(mapped, Close):
            log.info("session %s: %s -> %d", self.uuid, type(message).__name__, mapped.code)
            self._close(mapped.code, mapped.message)
        elif isinstance(mapped, Paired):
            self._on_paired(mapped)
        elif isinstance(mapped, Connected):
            self._on_connected()
        elif isinstance(mapped, QrCodes):
            if self.phase == "qr":
                self._add_qr_codes(list(mapped.codes))
        elif isinstance(mapped, Alive):
            if self.phase != "closed":
                self._events.put_nowait(Activity(mapped.time))
        elif isinstance(mapped, Noted):
            log.info("session %s: %s", self.uuid, mapped.what)

    def _on_paired(self, paired: Paired) -> None:
        if self.phase not in ("connecting", "qr"):
            return
        self.phase = "paired"
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
        if self.phase == "closed":
            return
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None
        self.phase = "open"
        self._cancel_qr()
        now = time.time()
        self._events.put_nowait(Opened(self._me or Account("", "", "")))
        self._events.put_nowait(Activity(now))

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
        if self.phase != "qr" or self._login_succeeded:
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

    # Ending ------------------------------------------------------------------------------------

    def _close(self, code: int, message: str) -> None:
        if self.phase == "closed":
            return
        self._end(Closed(code, message))

    def _end(self, last: EngineEvent | None) -> None:
        self.phase = "closed"
        self.engine.forget(self)
        self._cancel_qr()
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None
        self._events.put_nowait(last)
        # NOTE: at once, not when the manager gets round to it: whatsmeow's own reconnect
        # starts right after a disconnect, and stopping the client cancels it.
        self._start_teardown()

    def _start_teardown(self) -> asyncio.Task[None]:
        self._closing = True
        if self._teardown is None or self._teardown.done():
            self._teardown = self.engine.spawn(self._release_library())
        return self._teardown

    async def _release_library(self) -> None:
        if self._returned:
            return  # its thread has cleaned up already
        if self._event_loop_running and not self._stopped:
            self._stopped = True
            await self.engine.run(self._gated, "stop", self._client.stop)
        elif self._socket_open and not self._disconnected:
            self._disconnected = True
            # NOTE: Stop here would crash the process later (see the module docstring). neonize
            # 0.5.2 leaves a QR phase only when whatsmeow's own QR timer ends, and then waits for
            # a device ID that never comes: this connection's two threads stay until exit.
            await self.engine.run(self._gated, "disconnect", self._client.disconnect)
        # else: still dialling; its outcome (returned, first QR, event loop) comes back here.

    @staticmethod
    def _gated(what: str, call: Callable[[], T]) -> T:
        with _GATE.hold(what):
            return call()

    # The Connection protocol -------------------------------------------------------------------

    def events(self) -> AsyncGenerator[EngineEvent, None]:
        return queued_events(self._events)

    async def request_pairing_code(self, phone_number: str) -> str:
        if self.phase != "qr":
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
        if self._event_loop_running and not self._returned and not self._stopped:
            # NOTE: only while the Go side still holds this client (Stop removes it).
            await self.engine.run(self._gated, "logout", self._client.logout)
        await self.close()

    async def close(self) -> None:
        if self.phase != "closed":
            self._end(None)
        else:
            self._events.put_nowait(None)
        await asyncio.shield(self._start_teardown())


class WhatsmeowEngine:
    """The `whatsmeow` engine: one neonize client per connection, one store per session."""

    name = "whatsmeow"

    def __init__(
        self, state_dir: Path, qr: QrSchedule, *, call_workers: int = CALL_WORKERS
    ) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.qr = qr
        self._executor = ThreadPoolExecutor(call_workers, thread_name_prefix="whatsmeow-call")
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
        return store_has_device(vault.path / STORE_FILE)

    async def refresh_credentials(self, vault: CredentialVault) -> bool:
        return await asyncio.to_thread(self.has_credentials, vault)

    async def logout_offline(self, vault: CredentialVault) -> None:
        """Best effort: connects with the stored device and unlinks it."""
        if not self.has_credentials(vault):
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
        live = [c for c in self._connections if c.phase != "closed"]
        for connection in live:
            connection._end(None)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        self._connections.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["STORE_FILE", "WhatsmeowConnection", "WhatsmeowEngine", "store_has_device"]
