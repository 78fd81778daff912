"""Prometheus metrics (prometheus-client), served over HTTP at `metrics_listen` when set.

Everything is fed from the journal (every committed change, in order, with the record before
it) and from the api layer (RPCs and streams); values that are cheaper to read than to track are
read at scrape time, in the event loop, so they are consistent with what the server itself sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from wasessions_server.model import Cause, JournalEntry, State
from wasessions_server.sessions import SessionRegistry

log = logging.getLogger(__name__)

_RECONNECT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class ServerMetrics:
    """One server's metrics in its own registry (several servers may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions = Gauge(
            "wasessions_sessions", "Sessions by state and engine.", ["state", "engine"], registry=r
        )
        self.disconnects = Counter(
            "wasessions_disconnects", "Connection closes, by disconnect code.", ["code"], registry=r
        )
        self.reconnect_attempts = Counter(
            "wasessions_reconnect_attempts", "Reconnect attempts started (retries).", registry=r
        )
        self.reconnect_seconds = Histogram(
            "wasessions_reconnect_seconds",
            "Time from losing a connection to CONNECTED again.",
            buckets=_RECONNECT_BUCKETS,
            registry=r,
        )
        self.qr_codes = Counter("wasessions_qr_codes_issued", "QR codes shown.", registry=r)
        self.state_changes = Counter(
            "wasessions_state_changes", "State changes, by new state.", ["state"], registry=r
        )
        self.streams = Gauge(
            "wasessions_active_streams", "Open server streams, by method.", ["method"], registry=r
        )
        self.watch_streams = Gauge(
            "wasessions_watch_streams", "Open WatchSessions streams.", registry=r
        )
        self.journal_head = Gauge(
            "wasessions_journal_head_sequence", "Sequence of the last durable change.", registry=r
        )
        self.journal_entries = Gauge(
            "wasessions_journal_entries", "Changes kept in the journal for resuming.", registry=r
        )
        self.journal_lag = Gauge(
            "wasessions_journal_lag_entries",
            "Changes appended but not yet durable (waiting for the group commit).",
            registry=r,
        )
        self.watch_backlog = Gauge(
            "wasessions_watch_backlog_max_entries",
            "Committed changes queued for the slowest watcher.",
            registry=r,
        )
        self.rpcs = Counter(
            "wasessions_rpcs", "Finished RPCs by method and code.", ["method", "code"], registry=r
        )
        self.rpc_seconds = Histogram(
            "wasessions_rpc_seconds", "RPC handling time by method.", ["method"], registry=r
        )
        self.connects = Counter(
            "wasessions_connects", "Connects started (after the connect rate limit).", registry=r
        )
        self.connects_peak = Gauge(
            "wasessions_connects_peak_per_second",
            "The most connects started within any one second since the server started.",
            registry=r,
        )
        self.storage_errors = Counter(
            "wasessions_storage_errors",
            "Journal commits the store refused (disk full, I/O error).",
            registry=r,
        )
        self._connects_counted = 0
        self._storage_errors_counted = 0
        self._qr_counted = 0
        self._rpc_counters: dict[tuple[str, str], Counter] = {}
        self._rpc_timers: dict[str, Histogram] = {}
        self._sessions: SessionRegistry | None = None
        #: When each session that was CONNECTED lost its connection (until it is back).
        self._down_since: dict[str, float] = {}

    # Feeding ---------------------------------------------------------------------------------

    def attach(self, sessions: SessionRegistry) -> None:
        """Follows `sessions`' journal from now on, and reads them at scrape time."""
        self._sessions = sessions
        for engine in sessions.engine_names:
            for state in State:
                self.sessions.labels(state.value, engine)
        sessions.journal.add_listener(self.on_entry)

    def on_entry(self, entry: JournalEntry) -> None:
        sid = entry.session_id
        before, record = entry.before, entry.record
        if record is None:
            self._down_since.pop(sid, None)
            return
        if before is None or before.state is not record.state:
            self.state_changes.labels(record.state.value).inc()
        if entry.cause is Cause.RETRY_STARTED:
            self.reconnect_attempts.inc()
        closed = record.last_disconnect
        if closed is not None and (before is None or before.last_disconnect != closed):
            self.disconnects.labels(str(closed.code)).inc()
            if before is not None and before.state is State.CONNECTED:
                self._down_since[sid] = closed.time
        if record.state is State.CONNECTED:
            since = self._down_since.pop(sid, None)
            if since is not None:
                self.reconnect_seconds.observe(max(0.0, entry.time - since))
        elif not record.state.is_running:
            self._down_since.pop(sid, None)

    def rpc_done(self, method: str, code: str, seconds: float) -> None:
        # NOTE: `labels()` takes a lock and builds a key on every call: the children are kept.
        counter = self._rpc_counters.get((method, code))
        if counter is None:
            counter = self._rpc_counters[(method, code)] = self.rpcs.labels(method, code)
        timer = self._rpc_timers.get(method)
        if timer is None:
            timer = self._rpc_timers[method] = self.rpc_seconds.labels(method)
        counter.inc()
        timer.observe(seconds)

    # Reading ---------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Brings the scrape-time values up to date."""
        sessions = self._sessions
        if sessions is None:
            return
        issued = sessions.qr_codes_issued
        self.qr_codes.inc(issued - self._qr_counted)
        self._qr_counted = issued
        started = sessions.connects_started
        self.connects.inc(started - self._connects_counted)
        self._connects_counted = started
        self.connects_peak.set(sessions.peak_connects_per_second)
        counts: dict[tuple[str, str], int] = {}
        for engine in sessions.engine_names:
            for state in State:
                counts[(state.value, engine)] = 0
        for record in sessions.snapshot(None):
            key = (record.state.value, record.engine)
            counts[key] = counts.get(key, 0) + 1
        for (state_name, engine), count in counts.items():
            self.sessions.labels(state_name, engine).set(count)
        journal = sessions.journal
        self.storage_errors.inc(journal.write_failures - self._storage_errors_counted)
        self._storage_errors_counted = journal.write_failures
        self.watch_streams.set(journal.subscriber_count)
        self.journal_head.set(journal.head)
        self.journal_lag.set(journal.pending_count)
        self.watch_backlog.set(journal.max_subscriber_backlog)
        with contextlib.suppress(Exception):
            first, last = await journal.bounds()
            self.journal_entries.set(max(0, last - first + 1))

    async def exposition(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)


class MetricsHttpServer:
    """A minimal HTTP/1.0 endpoint in the event loop: GET /metrics, nothing else."""

    def __init__(self, metrics: ServerMetrics, listen: str) -> None:
        self._metrics = metrics
        self._listen = listen
        self._server: asyncio.Server | None = None
        self.host = listen.rpartition(":")[0].strip("[]")
        self.port = 0

    async def start(self) -> None:
        port = self._listen.rpartition(":")[2]
        self._server = await asyncio.start_server(self._handle, self.host, int(port))
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            method, path = _request_line(request)
            if method not in ("GET", "HEAD") or path.split("?")[0] not in ("/metrics", "/"):
                _respond(writer, "404 Not Found", b"not found; try /metrics\n", "text/plain")
            else:
                body = await self._metrics.exposition()
                _respond(writer, "200 OK", b"" if method == "HEAD" else body, CONTENT_TYPE_LATEST)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _request_line(request: bytes) -> tuple[str, str]:
    parts = request.split(b"\r\n", 1)[0].decode("latin-1").split()
    return (parts[0], parts[1]) if len(parts) >= 2 else ("", "")


def _respond(writer: asyncio.StreamWriter, status: str, body: bytes, content_type: str) -> None:
    head: Iterable[str] = (
        f"HTTP/1.0 {status}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    )
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
